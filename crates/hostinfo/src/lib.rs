//! Turns the text that hardware-discovery commands print on a Linux GPU server
//! into the instance configuration Parasol advertises for it, shaped like the
//! Shadeform API's `InstanceTypeConfiguration`.
//!
//! Parasol's "hosts" provider runs the commands named by the constants below
//! over SSH and hands their standard output to [`build_spec`]. This crate only
//! parses: it never spawns processes or touches the network, so it can be
//! tested against captured output and called from any runtime. Every parser
//! accepts arbitrary text and answers `Ok` or a [`ParseError`], never a panic,
//! because the text comes from machines Parasol does not control.

#![warn(missing_docs)]

mod error;
mod gpu;
mod spec;
mod system;
mod topology;

pub use error::ParseError;
pub use gpu::{normalize_gpu_type, parse_gpu_query, Gpu};
pub use spec::{build_spec, os_options, DiscoveryOutput, HostSpec};
pub use system::{parse_df_bytes, parse_free_bytes, parse_lscpu, parse_os_release, Cpu, OsRelease};
pub use topology::{parse_topology, Topology};

/// Lists every GPU as one CSV row; [`parse_gpu_query`] expects exactly these
/// nine fields in this order, so change both together.
pub const GPU_QUERY: &str = "nvidia-smi --query-gpu=index,name,uuid,memory.total,memory.used,driver_version,pci.bus_id,compute_cap,power.limit --format=csv,noheader,nounits";

/// Prints the GPU-to-GPU link matrix, the only place nvidia-smi reveals
/// whether GPUs talk over NVLink; read by [`parse_topology`].
pub const TOPO_QUERY: &str = "nvidia-smi topo -m";

/// Describes the CPUs; read by [`parse_lscpu`].
///
/// The parser matches the English field labels, so a host whose default
/// locale translates lscpu's output should be queried with `LC_ALL=C` set.
pub const LSCPU: &str = "lscpu";

/// Reports memory in bytes rather than KiB so no unit guessing is needed;
/// read by [`parse_free_bytes`].
pub const FREE: &str = "free -b";

/// Reports the root filesystem's size in bytes; the root filesystem is where
/// a tenant's workload lives, so it is what Parasol offers as storage. Read
/// by [`parse_df_bytes`].
pub const DF: &str = "df -B1 /";

/// Identifies the operating system; read by [`parse_os_release`].
pub const OS_RELEASE: &str = "cat /etc/os-release";

/// Shortens a line of foreign output for an error message, quoting it so
/// control characters (such as ANSI escapes) stay visible in logs.
pub(crate) fn excerpt(text: &str) -> String {
    const MAX_CHARS: usize = 80;
    let mut short: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        short.push_str("...");
    }
    format!("{short:?}")
}

/// Tells a plain decimal count from anything `u64::from_str` would also
/// accept, such as a leading `+`.
pub(crate) fn is_digits(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit())
}
