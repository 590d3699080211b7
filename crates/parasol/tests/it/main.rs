//! Integration tests: the real server binary over real HTTP.

mod conformance;
mod fakes;
mod harness;

mod aws;
mod cli;
mod clusters;
mod crash;
mod errors;
mod hosts;
mod instances;
mod logs;
mod mcp;
mod metrics;
mod openapi;
mod placement;
mod properties;
mod provider_conformance;
mod providers;
mod robustness;
mod scaleout;
mod sshkeys;
mod templates;
mod tenancy;
mod thresholds;
mod volumes;
