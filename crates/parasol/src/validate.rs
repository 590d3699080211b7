//! Request validation shared by every endpoint: each check returns a 400
//! naming the field at fault, so no handler invents its own wording.

use base64::Engine;
use chrono::{DateTime, Utc};
use std::net::IpAddr;

use parasol_api::{
    AddSshKeyRequest, AutoDelete, CreateRequest, Env, LaunchConfiguration, LaunchType, UfwRule,
};
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

/// Longest free-text description accepted (templates).
pub const MAX_DESCRIPTION: usize = 4096;

/// Free text such as a description: at most [`MAX_DESCRIPTION`]
/// characters; line breaks and tabs are fine, other control characters not.
pub fn description(field: &str, value: &str) -> Result<(), ApiError> {
    if value.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} is longer than {MAX_DESCRIPTION} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(ApiError::invalid_field(
            field,
            format!("{field} must not contain control characters"),
        ));
    }
    Ok(())
}

/// Firewall rules (`networking.ufw_rules`), each checked by [`ufw_rule`].
pub fn ufw_rules(field: &str, rules: &[UfwRule]) -> Result<(), ApiError> {
    for (i, r) in rules.iter().enumerate() {
        ufw_rule(&format!("{field}[{i}]"), r)?;
    }
    Ok(())
}

/// One firewall rule: `rule` is `allow` or `deny`; `from_ip` and `to_ip`
/// are addresses or CIDR blocks of one family; `port` is a port or an
/// inclusive range `a:b`; `proto` is `tcp` or `udp`. As in `ufw` itself, a
/// port range needs a protocol.
pub fn ufw_rule(field: &str, r: &UfwRule) -> Result<(), ApiError> {
    let f = format!("{field}.rule");
    match r.rule.as_deref() {
        Some("allow" | "deny") => {}
        None => {
            return Err(ApiError::invalid_field(
                &f,
                format!("{f} is required: allow or deny"),
            ))
        }
        Some(other) => {
            return Err(ApiError::invalid_field(
                &f,
                format!("{f} must be allow or deny, got {other:?}"),
            ))
        }
    }
    let from = r
        .from_ip
        .as_deref()
        .map(|v| ip_or_cidr(&format!("{field}.from_ip"), v))
        .transpose()?;
    let to = r
        .to_ip
        .as_deref()
        .map(|v| ip_or_cidr(&format!("{field}.to_ip"), v))
        .transpose()?;
    if let (Some(a), Some(b)) = (from, to) {
        if a.is_ipv4() != b.is_ipv4() {
            let f = format!("{field}.to_ip");
            return Err(ApiError::invalid_field(
                &f,
                format!("{f} must be of the same address family (IPv4 or IPv6) as from_ip"),
            ));
        }
    }
    let range = r
        .port
        .as_deref()
        .map(|v| port_or_range(&format!("{field}.port"), v))
        .transpose()?;
    let f = format!("{field}.proto");
    match r.proto.as_deref() {
        Some("tcp" | "udp") => {}
        None if range.is_some_and(|(a, b)| a != b) => {
            return Err(ApiError::invalid_field(
                &f,
                format!("{f} is required for a port range: tcp or udp"),
            ))
        }
        None => {}
        Some(other) => {
            return Err(ApiError::invalid_field(
                &f,
                format!("{f} must be tcp or udp, got {other:?}"),
            ))
        }
    }
    Ok(())
}

/// An IPv4 or IPv6 address, or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`)
/// whose prefix length fits the family. Returns the address part.
pub fn ip_or_cidr(field: &str, value: &str) -> Result<IpAddr, ApiError> {
    let bad = || {
        ApiError::invalid_field(
            field,
            format!(
                "{field} must be an IPv4 or IPv6 address or CIDR block such as 192.168.1.0/24, got {value:?}"
            ),
        )
    };
    let (addr, prefix) = match value.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (value, None),
    };
    let ip: IpAddr = addr.parse().map_err(|_| bad())?;
    if let Some(p) = prefix {
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let digits_ok = !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'));
        if !digits_ok || p.parse::<u32>().map_err(|_| bad())? > max {
            return Err(bad());
        }
    }
    Ok(ip)
}

/// A port `"80"` or an inclusive range `"8000:8999"` (low end first), each
/// end from 1 to 65535. Returns both ends (equal for a single port).
pub fn port_or_range(field: &str, value: &str) -> Result<(u16, u16), ApiError> {
    let bad = |why: &str| {
        ApiError::invalid_field(
            field,
            format!("{field} must be a port from 1 to 65535 or a range such as 8000:8999 ({why}), got {value:?}"),
        )
    };
    let one = |s: &str| -> Result<u16, ApiError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("not a number"));
        }
        match s.parse::<u32>() {
            Ok(n @ 1..=65535) => Ok(n as u16),
            _ => Err(bad("out of range")),
        }
    };
    match value.split_once(':') {
        None => one(value).map(|p| (p, p)),
        Some((a, b)) => {
            let (a, b) = (one(a)?, one(b)?);
            if a > b {
                return Err(bad("the low end comes first"));
            }
            Ok((a, b))
        }
    }
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

/// A `POST /instances/create` body, parsed and checked as far as is
/// possible without a server: the HTTP layer's JSON parsing, then the name
/// and every check of [`create_fields`]. What remains for the handler needs
/// the catalog or the store (cloud, type, region, OS, key, volumes,
/// template). The entry point of the fuzz target and of the parsing
/// property tests, so both exercise exactly the server's code.
pub fn create_request(bytes: &[u8]) -> Result<CreateRequest, ApiError> {
    let req: CreateRequest = crate::http::parse_json(bytes)?;
    name("name", &req.name)?;
    create_fields(&req)?;
    Ok(req)
}

/// The checks of a create request that need neither the catalog nor the
/// store: launch configuration, environment, tags and thresholds. The
/// handler runs them after a template has filled in its fields.
pub fn create_fields(req: &CreateRequest) -> Result<(), ApiError> {
    if let Some(lc) = &req.launch_configuration {
        launch_configuration(lc)?;
    }
    envs("envs", req.envs.as_deref().unwrap_or_default())?;
    tags("tags", req.tags.as_deref().unwrap_or_default())?;
    if let Some(t) = &req.auto_delete {
        thresholds("auto_delete", t)?;
    }
    if let Some(t) = &req.alert {
        thresholds("alert", t)?;
    }
    Ok(())
}

/// A `POST /sshkeys/add` body, parsed and fully checked (the handler only
/// stores it afterwards).
pub fn ssh_key_request(bytes: &[u8]) -> Result<AddSshKeyRequest, ApiError> {
    let req: AddSshKeyRequest = crate::http::parse_json(bytes)?;
    name("name", &req.name)?;
    public_key("public_key", &req.public_key)?;
    Ok(req)
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
    fn addresses_and_cidr_blocks_of_both_families_parse() {
        for good in [
            "10.0.0.1",
            "0.0.0.0/0",
            "192.168.1.0/24",
            "10.1.2.3/32",
            "::1",
            "2001:db8::/32",
            "::/0",
            "fe80::1/128",
        ] {
            assert!(ip_or_cidr("f", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "any",
            "10.0.0",
            "256.1.1.1",
            "10.0.0.1/33",
            "10.0.0.1/",
            "10.0.0.1/08",
            "10.0.0.1/+8",
            "2001:db8::/129",
            "2001:db8::/1/2",
            " 10.0.0.1",
            "010.0.0.1",
            "example.com",
        ] {
            assert!(ip_or_cidr("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ports_and_ranges_stay_within_one_to_65535_low_end_first() {
        assert_eq!(port_or_range("f", "22").unwrap(), (22, 22));
        assert_eq!(port_or_range("f", "8000:8999").unwrap(), (8000, 8999));
        assert_eq!(port_or_range("f", "1:65535").unwrap(), (1, 65535));
        assert_eq!(port_or_range("f", "80:80").unwrap(), (80, 80));
        for bad in [
            "",
            "0",
            "65536",
            "-1",
            "+80",
            "80:",
            ":80",
            "9000:8000",
            "80,443",
            "http",
            "1:2:3",
            "999999",
        ] {
            assert!(port_or_range("f", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ufw_rules_name_the_field_at_fault() {
        let rule = |r: &str| UfwRule {
            rule: Some(r.into()),
            ..UfwRule::default()
        };
        assert!(ufw_rule("r", &rule("allow")).is_ok());
        assert!(ufw_rule("r", &rule("deny")).is_ok());
        let field = |r: UfwRule| ufw_rule("r", &r).unwrap_err().field.unwrap();
        assert_eq!(field(rule("reject")), "r.rule");
        assert_eq!(field(UfwRule::default()), "r.rule");
        let mixed = UfwRule {
            from_ip: Some("10.0.0.0/8".into()),
            to_ip: Some("::1".into()),
            ..rule("allow")
        };
        assert_eq!(field(mixed), "r.to_ip");
        let range = UfwRule {
            port: Some("8000:8100".into()),
            ..rule("allow")
        };
        assert_eq!(field(range.clone()), "r.proto");
        assert!(ufw_rule(
            "r",
            &UfwRule {
                proto: Some("udp".into()),
                ..range
            }
        )
        .is_ok());
        let icmp = UfwRule {
            proto: Some("icmp".into()),
            ..rule("allow")
        };
        assert_eq!(field(icmp), "r.proto");
    }

    #[test]
    fn names_must_be_present_and_short() {
        assert!(name("name", "ok").is_ok());
        assert!(name("name", "  ").is_err());
        assert!(name("name", &"x".repeat(MAX_NAME + 1)).is_err());
        assert!(name("name", "a\u{0}b").is_err());
    }
}
