//! Integration tests: the real server binary over real HTTP.

mod conformance;
mod fakes;
mod harness;

mod audit;
mod aws;
mod backups;
mod cli;
mod clusters;
mod compat;
mod connections;
mod console;
mod crash;
mod durability;
mod errors;
mod first_start;
mod generated_client;
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
mod rate_limits;
mod robustness;
mod scaleout;
mod sshkeys;
mod templates;
mod tenancy;
mod thresholds;
mod tls;
mod volumes;
