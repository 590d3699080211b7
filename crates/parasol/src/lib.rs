//! Parasol: a self-hosted GPU cloud broker with a Shadeform-compatible API.
//!
//! The crate reads top-down along the path of a request:
//! - [`http`]: the axum server, authentication, the JSON error policy and one
//!   handler module per resource. Handlers validate and write the store; they
//!   never call a provider.
//! - [`console`]: the web console at `/`, server-rendered HTML over the same
//!   handlers as the API.
//! - [`store`]: the single source of truth (SQLite embedded, PostgreSQL for
//!   scale-out), with migrations and conditional (generation-checked) writes.
//! - [`lifecycle`]: the reconciler that owns every state transition, and the
//!   one cost-accrual function.
//! - [`providers`]: the `Provider` trait and its implementations (the `sim`
//!   multi-cloud is built in).
//! - [`webhooks`]: signed deliveries of the recorded events to each
//!   account's subscriptions, from a queue in the store.
//! - [`mcp`]: the MCP server at `/mcp`, whose tools are the API's operations.
//! - [`server`]: configuration and the wiring that starts all of the above.
//! - [`cli`]: the client commands of the same binary, over the HTTP API.
//! - [`agent`]: what the machines' agents report, checked and stored.

pub mod agent;
pub mod auth_sync;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod error;
pub mod event_stream;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod log_writer;
pub mod mcp;
pub mod metrics;
pub mod oidc;
pub mod openapi;
pub mod providers;
pub mod server;
pub mod store;
pub mod tls;
pub mod validate;
pub mod webhooks;

pub use parasol_api as api;
