//! Request validation shared by every endpoint: each check returns a 400
//! naming the field at fault, so no handler invents its own wording.

use base64::Engine;
use chrono::{DateTime, Utc};
use parasol_api::{AutoDelete, Env, LaunchConfiguration, LaunchType};
use uuid::Uuid;

use crate::error::ApiError;

/// Longest name accepted for instances, clusters, keys and templates.
pub const MAX_NAME: usize = 255;

/// A name: non-empty after trimming, at most [`MAX_NAME`] characters, no
/// control characters.
pub fn name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if value.chars().count() > MAX_NAME {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} is longer than {MAX_NAME} characters"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// A uuid given in a body field.
pub fn uuid_field(field: &str, value: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(value).map_err(|_| {
        ApiError::invalid_field(field, format!("{field} is not a valid uuid: {value:?}"))
    })
}

/// An RFC 3339 timestamp.
pub fn rfc3339(field: &str, value: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::invalid_field(
                field,
                format!("{field} must be an RFC 3339 timestamp such as 2026-01-02T15:04:05Z, got {value:?}"),
            )
        })
}

/// A non-negative dollar amount with at most two decimals, in cents.
pub fn dollars_to_cents(field: &str, value: &str) -> Result<i64, ApiError> {
    let bad = || {
        ApiError::invalid_field(
            field,
            format!("{field} must be a dollar amount such as \"3.14\", got {value:?}"),
        )
    };
    let v = value.trim().strip_prefix('$').unwrap_or(value.trim());
    let (whole, frac) = v.split_once('.').unwrap_or((v, ""));
    if whole.is_empty() || whole.len() > 12 || frac.len() > 2 {
        return Err(bad());
    }
    if !whole.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    if v.ends_with('.') {
        return Err(bad());
    }
    let whole: i64 = whole.parse().map_err(|_| bad())?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<2}").parse().map_err(|_| bad())?
    };
    Ok(whole * 100 + frac)
}

/// Thresholds of `auto_delete` or `alert`.
pub fn thresholds(field: &str, t: &AutoDelete) -> Result<(), ApiError> {
    if let Some(d) = &t.date_threshold {
        rfc3339(&format!("{field}.date_threshold"), d)?;
    }
    if let Some(s) = &t.spend_threshold {
        dollars_to_cents(&format!("{field}.spend_threshold"), s)?;
    }
    Ok(())
}

/// Environment variables: POSIX-style names, no duplicates.
pub fn envs(field: &str, envs: &[Env]) -> Result<(), ApiError> {
    let mut seen = std::collections::HashSet::new();
    for (i, e) in envs.iter().enumerate() {
        let f = format!("{field}[{i}].name");
        let ok = !e.name.is_empty()
            && !e.name.starts_with(|c: char| c.is_ascii_digit())
            && e.name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(ApiError::invalid_field(
                &f,
                format!("{f} must be letters, digits and underscores, not starting with a digit; got {:?}", e.name),
            ));
        }
        if !seen.insert(&e.name) {
            return Err(ApiError::invalid_field(
                &f,
                format!("{f}: {:?} is set twice", e.name),
            ));
        }
    }
    Ok(())
}

/// Tags: non-empty and reasonably short.
pub fn tags(field: &str, tags: &[String]) -> Result<(), ApiError> {
    for (i, t) in tags.iter().enumerate() {
        name(&format!("{field}[{i}]"), t)?;
    }
    Ok(())
}

/// A launch configuration: exactly the sub-configuration its `type` names,
/// a script that decodes, ports in range.
pub fn launch_configuration(lc: &LaunchConfiguration) -> Result<(), ApiError> {
    const F: &str = "launch_configuration";
    match (lc.kind, &lc.docker_configuration, &lc.script_configuration) {
        (_, Some(_), Some(_)) => Err(ApiError::invalid_field(
            F,
            "launch_configuration must have either docker_configuration or script_configuration, not both",
        )),
        (LaunchType::Docker, None, _) => Err(ApiError::invalid_field(
            format!("{F}.docker_configuration"),
            "launch_configuration.type is docker but docker_configuration is missing",
        )),
        (LaunchType::Script, _, None) => Err(ApiError::invalid_field(
            format!("{F}.script_configuration"),
            "launch_configuration.type is script but script_configuration is missing",
        )),
        (LaunchType::Docker, Some(d), None) => {
            let f = format!("{F}.docker_configuration");
            if d.image.trim().is_empty() {
                return Err(ApiError::invalid_field(format!("{f}.image"), "docker image must not be empty"));
            }
            if let Some(shm) = d.shared_memory_in_gb {
                if shm <= 0 {
                    return Err(ApiError::invalid_field(
                        format!("{f}.shared_memory_in_gb"),
                        "shared_memory_in_gb must be a positive number of gigabytes",
                    ));
                }
            }
            for (i, p) in d.port_mappings.iter().flatten().enumerate() {
                port(&format!("{f}.port_mappings[{i}].host_port"), p.host_port)?;
                port(&format!("{f}.port_mappings[{i}].container_port"), p.container_port)?;
            }
            for (i, v) in d.volume_mounts.iter().flatten().enumerate() {
                if v.host_path.is_empty() || v.container_path.is_empty() {
                    return Err(ApiError::invalid_field(
                        format!("{f}.volume_mounts[{i}]"),
                        "volume mounts need both host_path and container_path",
                    ));
                }
            }
            envs(&format!("{f}.envs"), d.envs.as_deref().unwrap_or_default())
        }
        (LaunchType::Script, None, Some(s)) => {
            let f = format!("{F}.script_configuration.base64_script");
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(s.base64_script.trim())
                .map_err(|e| ApiError::invalid_field(&f, format!("{f} is not valid base64: {e}")))?;
            if decoded.is_empty() {
                return Err(ApiError::invalid_field(&f, format!("{f} decodes to an empty script")));
            }
            Ok(())
        }
    }
}

fn port(field: &str, p: i64) -> Result<(), ApiError> {
    if !(1..=65535).contains(&p) {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must be a port from 1 to 65535, got {p}"),
        ));
    }
    Ok(())
}

/// An OpenSSH public key line: `type base64 [comment]`, where the base64
/// blob decodes to an SSH wire-format key of the same type with the fields
/// that type requires.
pub fn public_key(field: &str, line: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        ApiError::invalid_field(
            field,
            format!("{field} is not a valid OpenSSH public key: {why}"),
        )
    };
    let mut parts = line.split_ascii_whitespace();
    let (Some(kind), Some(b64)) = (parts.next(), parts.next()) else {
        return Err(bad("expected \"<type> <base64> [comment]\""));
    };
    if line.contains('\n') && line.trim_end().contains('\n') {
        return Err(bad("expected a single line"));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad("the key data is not valid base64"))?;
    let mut r = Wire(&blob);
    let inner = r.string().ok_or_else(|| bad("the key data is truncated"))?;
    if inner != kind.as_bytes() {
        return Err(bad("the key data does not match its type"));
    }
    let fields = match kind {
        "ssh-rsa" => 2,
        "ssh-dss" => 4,
        "ssh-ed25519" => 1,
        "ecdsa-sha2-nistp256" | "ecdsa-sha2-nistp384" | "ecdsa-sha2-nistp521" => 2,
        "sk-ssh-ed25519@openssh.com" => 2,
        "sk-ecdsa-sha2-nistp256@openssh.com" => 3,
        _ => return Err(bad(&format!("unsupported key type {kind:?}"))),
    };
    let mut values = Vec::new();
    for _ in 0..fields {
        values.push(r.string().ok_or_else(|| bad("the key data is truncated"))?);
    }
    if !r.0.is_empty() {
        return Err(bad("the key data has trailing bytes"));
    }
    match kind {
        "ssh-ed25519" if values[0].len() != 32 => Err(bad("an ed25519 key is 32 bytes")),
        "ssh-rsa" if values[1].len() < 128 => {
            Err(bad("RSA keys shorter than 1024 bits are refused"))
        }
        k if k.starts_with("ecdsa-")
            && Some(values[0]) != k.strip_prefix("ecdsa-sha2-").map(str::as_bytes) =>
        {
            Err(bad("the curve does not match the key type"))
        }
        _ => Ok(()),
    }
}

/// Reader of SSH wire-format length-prefixed strings.
struct Wire<'a>(&'a [u8]);

impl<'a> Wire<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return None;
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f test@host";

    #[test]
    fn ed25519_keys_with_comments_are_accepted() {
        public_key("public_key", ED25519).unwrap();
    }

    #[test]
    fn keys_with_a_mismatched_type_or_garbage_are_refused() {
        let swapped = ED25519.replacen("ssh-ed25519", "ssh-rsa", 1);
        assert!(public_key("public_key", &swapped).is_err());
        assert!(public_key("public_key", "ssh-ed25519 notbase64!!").is_err());
        assert!(public_key("public_key", "hello").is_err());
        assert!(public_key("public_key", "").is_err());
        assert!(public_key("public_key", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAAQA=").is_err());
    }

    #[test]
    fn dollar_amounts_parse_to_cents() {
        assert_eq!(dollars_to_cents("f", "3.14").unwrap(), 314);
        assert_eq!(dollars_to_cents("f", "3.1").unwrap(), 310);
        assert_eq!(dollars_to_cents("f", "12").unwrap(), 1200);
        assert_eq!(dollars_to_cents("f", "$0.05").unwrap(), 5);
        for bad in ["", "-1", "1.234", "abc", "1.", ".5", "1e3", "1,00"] {
            assert!(dollars_to_cents("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_must_be_present_and_short() {
        assert!(name("name", "ok").is_ok());
        assert!(name("name", "  ").is_err());
        assert!(name("name", &"x".repeat(MAX_NAME + 1)).is_err());
        assert!(name("name", "a\u{0}b").is_err());
    }
}
