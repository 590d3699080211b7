//! Integration tests: the real server binary over real HTTP.

mod conformance;
mod fakes;
mod harness;

mod cli;
mod clusters;
mod console;
mod crash;
mod errors;
mod hosts;
mod instances;
mod logs;
mod metrics;
mod openapi;
mod properties;
mod providers;
mod robustness;
mod scaleout;
mod sshkeys;
mod templates;
mod tenancy;
mod thresholds;
mod volumes;
