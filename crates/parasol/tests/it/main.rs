//! Integration tests: the real server binary over real HTTP.

mod conformance;
mod fakes;
mod harness;

mod cli;
mod clusters;
mod crash;
mod errors;
mod instances;
mod logs;
mod metrics;
mod providers;
mod scaleout;
mod sshkeys;
mod tenancy;
