//! Encodings of "not yet" for fields the contract makes required and
//! non-nullable.
//!
//! Parasol keeps these as `Option`s, but a `null` on the wire crashes
//! clients generated from the document (openapi-python-client, and typed
//! clients in Rust, Kotlin or Swift). So an absent ip is sent as `""` and
//! an absent `deleted_at` as the zero time `0001-01-01T00:00:00Z`, which
//! Shadeform's own Go client decodes as unset. Both read back as `None`,
//! and so does the `null` that stored documents of older versions hold.

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The zero time Go's `time.Time{}` marshals to.
pub fn zero_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
        .single()
        .expect("year 1 is representable")
}

/// `Option<String>` as a string, empty for `None`.
pub mod empty_string {
    use super::*;

    /// Writes `""` for `None`.
    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    /// Reads `null` and `""` as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.filter(|s| !s.is_empty()))
    }
}

/// `Option<DateTime<Utc>>` as a date-time, the zero time for `None`.
pub mod zero_time_as_none {
    use super::*;

    /// Writes the zero time for `None`.
    pub fn serialize<S: Serializer>(v: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        v.unwrap_or_else(zero_time).serialize(s)
    }

    /// Reads `null` and the zero time as `None`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Ok(Option::<DateTime<Utc>>::deserialize(d)?.filter(|t| *t != zero_time()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct T {
        #[serde(with = "empty_string")]
        ip: Option<String>,
        #[serde(with = "zero_time_as_none")]
        at: Option<DateTime<Utc>>,
    }

    #[test]
    fn none_goes_out_as_a_value_and_comes_back_as_none() {
        let none = T { ip: None, at: None };
        let text = serde_json::to_string(&none).unwrap();
        assert_eq!(text, r#"{"ip":"","at":"0001-01-01T00:00:00Z"}"#);
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), none);
        let old: T = serde_json::from_str(r#"{"ip":null,"at":null}"#).unwrap();
        assert_eq!(old, none);
        let some = T {
            ip: Some("10.0.0.1".into()),
            at: Some("2026-11-27T10:00:00Z".parse().unwrap()),
        };
        let text = serde_json::to_string(&some).unwrap();
        assert_eq!(serde_json::from_str::<T>(&text).unwrap(), some);
    }
}
