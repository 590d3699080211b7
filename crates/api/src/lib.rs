//! Wire types of the Shadeform v1 API as Parasol serves it.
//!
//! The field names, JSON types and optionality follow
//! `specs/shadeform.openapi.json` (the facts of Shadeform's published
//! document, derived by `scripts/derive-specs.py`) exactly; the server serialises
//! these types and the CLI deserialises them, so there is one copy of the
//! contract. Request types are lenient where real clients are (unknown fields
//! are ignored, `null` is accepted where a field is optional); response types
//! always emit every field the document marks required.

pub mod account;
pub mod cluster;
pub mod error;
pub mod instance;
pub mod launch;
pub mod metrics;
pub mod policy;
pub mod sshkey;
pub mod template;
pub mod types;
pub mod volume;
pub mod webhook;
pub mod wire;

pub use account::*;
pub use cluster::*;
pub use error::{ErrorBody, ErrorDetail};
pub use instance::*;
pub use launch::*;
pub use metrics::*;
pub use policy::*;
pub use sshkey::*;
pub use template::*;
pub use types::*;
pub use volume::*;
pub use webhook::*;

use serde::{Deserialize, Deserializer};

/// Deserialises a field that distinguishes "absent" from "null": absent stays
/// `None` (through `#[serde(default)]`), `null` becomes `Some(None)`.
///
/// The update endpoints need this: the spec says a field set to null is
/// removed while an omitted field is kept.
pub fn double_option<'de, T, D>(de: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(de).map(Some)
}

/// Formats an amount of cents as a decimal dollar string, `"12.34"`.
pub fn dollars(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollars_pads_cents_and_keeps_sign() {
        assert_eq!(dollars(0), "0.00");
        assert_eq!(dollars(5), "0.05");
        assert_eq!(dollars(1500), "15.00");
        assert_eq!(dollars(123456), "1234.56");
        assert_eq!(dollars(-7), "-0.07");
    }
}
