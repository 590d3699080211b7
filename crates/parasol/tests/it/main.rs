//! Integration tests: the real server binary over real HTTP.

mod conformance;
mod harness;

mod cli;
mod crash;
mod errors;
mod instances;
mod sshkeys;
mod tenancy;
