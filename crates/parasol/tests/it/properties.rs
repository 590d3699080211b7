//! Property tests of request validation and of cost accrual: generated
//! inputs, from well-formed to arbitrary bytes, against the library
//! functions the server itself calls. No server is started.

use base64::Engine;
use chrono::{DateTime, FixedOffset, SecondsFormat, TimeZone, Utc};
use parasol::api::{
    DockerConfiguration, Env, LaunchConfiguration, LaunchType, PortMappings, ScriptConfiguration,
    VolumeMounts,
};
use parasol::error::ApiError;
use parasol::lifecycle::cost::accrued_cents;
use parasol::validate;
use proptest::prelude::*;
use serde_json::json;

const MS_PER_HOUR: i64 = 3_600_000;

/// A validation error is always a 400 with a code and a message.
fn is_clean_400(e: &ApiError) -> bool {
    e.status.as_u16() == 400 && !e.code.is_empty() && !e.message.is_empty()
}

// ---- names

proptest! {
    #[test]
    fn a_name_is_accepted_exactly_when_present_short_and_free_of_control_characters(
        s in any::<String>()
    ) {
        let expected = !s.trim().is_empty()
            && s.chars().count() <= validate::MAX_NAME
            && !s.chars().any(char::is_control);
        match validate::name("name", &s) {
            Ok(()) => prop_assert!(expected),
            Err(e) => {
                prop_assert!(!expected);
                prop_assert!(is_clean_400(&e));
                prop_assert_eq!(e.field.as_deref(), Some("name"));
            }
        }
    }
}

// ---- dollar amounts

proptest! {
    #[test]
    fn every_dollar_amount_with_two_decimals_parses_to_its_cents(
        cents in 0i64..100_000_000_000_000,
        dollar_sign in any::<bool>(),
    ) {
        let text = format!("{}{}.{:02}", if dollar_sign { "$" } else { "" }, cents / 100, cents % 100);
        prop_assert_eq!(validate::dollars_to_cents("f", &text).unwrap(), cents);
        if cents % 100 == 0 {
            prop_assert_eq!(validate::dollars_to_cents("f", &(cents / 100).to_string()).unwrap(), cents);
        }
        if cents % 10 == 0 {
            let one = format!("{}.{}", cents / 100, (cents % 100) / 10);
            prop_assert_eq!(validate::dollars_to_cents("f", &one).unwrap(), cents);
        }
    }

    #[test]
    fn any_text_parses_to_a_non_negative_amount_that_round_trips_or_is_refused(s in any::<String>()) {
        match validate::dollars_to_cents("spend", &s) {
            Ok(c) => {
                prop_assert!(c >= 0);
                let canonical = format!("{}.{:02}", c / 100, c % 100);
                prop_assert_eq!(validate::dollars_to_cents("spend", &canonical).unwrap(), c);
            }
            Err(e) => {
                prop_assert!(is_clean_400(&e));
                prop_assert_eq!(e.field.as_deref(), Some("spend"));
            }
        }
    }

    #[test]
    fn number_like_text_never_panics_the_dollar_parser(s in "[-+$ ]?[0-9]{0,20}[.,]?[0-9]{0,4}[eE]?[0-9]?") {
        let _ = validate::dollars_to_cents("f", &s);
    }
}

// ---- RFC 3339

proptest! {
    #[test]
    fn every_rfc3339_rendering_of_an_instant_parses_back_to_it(
        secs in -62_135_596_800i64..253_402_300_799,
        nanos in 0u32..1_000_000_000,
        offset_minutes in -1439i32..1440,
        z in any::<bool>(),
    ) {
        let instant = Utc.timestamp_opt(secs, nanos).unwrap();
        let offset = FixedOffset::east_opt(offset_minutes * 60).unwrap();
        let text = instant
            .with_timezone(&offset)
            .to_rfc3339_opts(SecondsFormat::AutoSi, z);
        // Offsets that push a year outside 0000-9999 cannot be written.
        if DateTime::parse_from_rfc3339(&text).is_ok() {
            prop_assert_eq!(validate::rfc3339("date_threshold", &text).unwrap(), instant);
        }
    }

    #[test]
    fn any_text_is_a_valid_timestamp_or_a_400_naming_the_field(s in any::<String>()) {
        if let Err(e) = validate::rfc3339("date_threshold", &s) {
            prop_assert!(is_clean_400(&e));
            prop_assert_eq!(e.field.as_deref(), Some("date_threshold"));
        }
    }
}

// ---- launch configuration

fn env_name() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z_][A-Za-z0-9_]{0,12}", any::<String>(),]
}

fn docker() -> impl Strategy<Value = DockerConfiguration> {
    (
        prop_oneof!["[a-z0-9./:-]{1,30}", any::<String>()],
        proptest::option::of(any::<i64>()),
        proptest::option::of(proptest::collection::vec(
            (env_name(), any::<String>()),
            0..4,
        )),
        proptest::option::of(proptest::collection::vec(
            (
                prop_oneof![1i64..65536, any::<i64>()],
                prop_oneof![1i64..65536, any::<i64>()],
            ),
            0..4,
        )),
        proptest::option::of(proptest::collection::vec(
            (any::<String>(), any::<String>()),
            0..3,
        )),
    )
        .prop_map(|(image, shm, envs, ports, mounts)| DockerConfiguration {
            image,
            args: None,
            shared_memory_in_gb: shm,
            envs: envs.map(|v| {
                v.into_iter()
                    .map(|(name, value)| Env { name, value })
                    .collect()
            }),
            port_mappings: ports.map(|v| {
                v.into_iter()
                    .map(|(host_port, container_port)| PortMappings {
                        host_port,
                        container_port,
                    })
                    .collect()
            }),
            volume_mounts: mounts.map(|v| {
                v.into_iter()
                    .map(|(host_path, container_path)| VolumeMounts {
                        host_path,
                        container_path,
                    })
                    .collect()
            }),
            registry_credentials: None,
        })
}

fn script() -> impl Strategy<Value = ScriptConfiguration> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64)
            .prop_map(|b| base64::engine::general_purpose::STANDARD.encode(b)),
        any::<String>(),
    ]
    .prop_map(|base64_script| ScriptConfiguration { base64_script })
}

fn launch_configuration() -> impl Strategy<Value = LaunchConfiguration> {
    (
        prop_oneof![Just(LaunchType::Docker), Just(LaunchType::Script)],
        proptest::option::of(docker()),
        proptest::option::of(script()),
    )
        .prop_map(
            |(kind, docker_configuration, script_configuration)| LaunchConfiguration {
                kind,
                docker_configuration,
                script_configuration,
            },
        )
}

/// What the validator should say, written independently of it.
fn launch_configuration_is_valid(lc: &LaunchConfiguration) -> bool {
    match (lc.kind, &lc.docker_configuration, &lc.script_configuration) {
        (LaunchType::Docker, Some(d), None) => {
            let port_ok = |p: i64| (1..=65535).contains(&p);
            let mut names = std::collections::HashSet::new();
            !d.image.trim().is_empty()
                && d.shared_memory_in_gb.is_none_or(|s| s > 0)
                && d.port_mappings
                    .iter()
                    .flatten()
                    .all(|p| port_ok(p.host_port) && port_ok(p.container_port))
                && d.volume_mounts
                    .iter()
                    .flatten()
                    .all(|v| !v.host_path.is_empty() && !v.container_path.is_empty())
                && d.envs.iter().flatten().all(|e| {
                    let n = &e.name;
                    !n.is_empty()
                        && !n.starts_with(|c: char| c.is_ascii_digit())
                        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        && names.insert(n.clone())
                })
        }
        (LaunchType::Script, None, Some(s)) => base64::engine::general_purpose::STANDARD
            .decode(s.base64_script.trim())
            .is_ok_and(|b| !b.is_empty()),
        _ => false,
    }
}

proptest! {
    #[test]
    fn a_launch_configuration_is_accepted_exactly_when_it_is_well_formed(
        lc in launch_configuration()
    ) {
        match validate::launch_configuration(&lc) {
            Ok(()) => prop_assert!(launch_configuration_is_valid(&lc), "{lc:?}"),
            Err(e) => {
                prop_assert!(!launch_configuration_is_valid(&lc), "{lc:?}: {e:?}");
                prop_assert!(is_clean_400(&e));
                let field = e.field.unwrap_or_default();
                prop_assert!(field.starts_with("launch_configuration"), "{field}");
            }
        }
    }
}

// ---- OpenSSH public keys

/// One SSH wire-format string: a big-endian length, then the bytes.
fn wire(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s);
}

fn bytes(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), len)
}

/// A key of every type the validator knows, as `(type, blob)`, with the
/// fields that type's wire format has.
fn key_blob() -> impl Strategy<Value = (String, Vec<u8>)> {
    let with = |kind: &'static str, fields: Vec<Vec<u8>>| {
        let mut blob = Vec::new();
        wire(&mut blob, kind.as_bytes());
        for f in &fields {
            wire(&mut blob, f);
        }
        (kind.to_string(), blob)
    };
    prop_oneof![
        bytes(32..33).prop_map(move |k| with("ssh-ed25519", vec![k])),
        (bytes(1..5), bytes(128..520)).prop_map(move |(e, n)| with("ssh-rsa", vec![e, n])),
        (bytes(1..200), bytes(1..40), bytes(1..200), bytes(1..200))
            .prop_map(move |(p, q, g, y)| with("ssh-dss", vec![p, q, g, y])),
        (
            prop_oneof![Just("nistp256"), Just("nistp384"), Just("nistp521")],
            bytes(1..140)
        )
            .prop_map(move |(curve, point)| {
                let kind: &'static str = match curve {
                    "nistp256" => "ecdsa-sha2-nistp256",
                    "nistp384" => "ecdsa-sha2-nistp384",
                    _ => "ecdsa-sha2-nistp521",
                };
                with(kind, vec![curve.as_bytes().to_vec(), point])
            }),
        bytes(32..33)
            .prop_map(move |k| with("sk-ssh-ed25519@openssh.com", vec![k, b"ssh:".to_vec()])),
        bytes(65..66).prop_map(move |p| with(
            "sk-ecdsa-sha2-nistp256@openssh.com",
            vec![b"nistp256".to_vec(), p, b"ssh:".to_vec()]
        )),
    ]
}

proptest! {
    #[test]
    fn every_well_formed_openssh_key_is_accepted_with_or_without_a_comment(
        (kind, blob) in key_blob(),
        comment in proptest::option::of("[A-Za-z0-9@._ -]{0,40}"),
    ) {
        let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
        let line = match comment {
            Some(c) => format!("{kind} {b64} {c}"),
            None => format!("{kind} {b64}"),
        };
        prop_assert!(validate::public_key("public_key", &line).is_ok(), "{line}");
    }

    #[test]
    fn a_truncated_or_extended_key_blob_is_refused(
        (kind, blob) in key_blob(),
        cut in 1usize..16,
        extra in bytes(1..8),
    ) {
        let enc = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
        let short = &blob[..blob.len().saturating_sub(cut)];
        let short_line = format!("{kind} {}", enc(short));
        prop_assert!(validate::public_key("k", &short_line).is_err());
        let mut long = blob.clone();
        long.extend_from_slice(&extra);
        let long_line = format!("{kind} {}", enc(&long));
        prop_assert!(validate::public_key("k", &long_line).is_err());
    }

    #[test]
    fn any_text_is_a_key_or_a_400_naming_the_field(s in any::<String>()) {
        if let Err(e) = validate::public_key("public_key", &s) {
            prop_assert!(is_clean_400(&e));
            prop_assert_eq!(e.field.as_deref(), Some("public_key"));
        }
    }

    #[test]
    fn any_base64_blob_after_a_known_type_never_panics_the_key_parser(
        kind in prop_oneof![Just("ssh-ed25519"), Just("ssh-rsa"), Just("ecdsa-sha2-nistp256"), Just("ssh-dss")],
        blob in bytes(0..300),
    ) {
        let line = format!("{kind} {}", base64::engine::general_purpose::STANDARD.encode(&blob));
        let _ = validate::public_key("public_key", &line);
    }
}

// ---- whole request bodies (the fuzz target's entry points)

proptest! {
    #[test]
    fn arbitrary_bytes_are_a_create_request_or_a_400(body in bytes(0..512)) {
        if let Err(e) = validate::create_request(&body) {
            prop_assert!(is_clean_400(&e));
        }
        if let Err(e) = validate::ssh_key_request(&body) {
            prop_assert!(is_clean_400(&e));
        }
    }

    #[test]
    fn a_mutated_valid_create_body_is_accepted_or_refused_with_a_400(
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        lc in proptest::option::of(launch_configuration()),
    ) {
        let mut body = json!({
            "cloud": "massedcompute",
            "region": "us-central-1",
            "shade_instance_type": "A6000",
            "shade_cloud": true,
            "name": "fuzzed",
            "envs": [{"name": "A", "value": "1"}],
            "tags": ["t"],
            "auto_delete": {"date_threshold": "2030-01-02T03:04:05Z", "spend_threshold": "12.50"},
        });
        if let Some(lc) = &lc {
            body["launch_configuration"] = serde_json::to_value(lc).unwrap();
        }
        let clean = serde_json::to_vec(&body).unwrap();
        let parsed = validate::create_request(&clean);
        match &lc {
            Some(lc) if !launch_configuration_is_valid(lc) => prop_assert!(parsed.is_err()),
            _ => prop_assert!(parsed.is_ok(), "{parsed:?}"),
        }
        let mut mutated = clean.clone();
        let i = at.index(mutated.len());
        mutated[i] = byte;
        if let Err(e) = validate::create_request(&mutated) {
            prop_assert!(is_clean_400(&e));
        }
    }
}

// ---- cost accrual

proptest! {
    #[test]
    fn accrual_never_decreases_as_time_passes(
        price in 0i64..10_000_000,
        start in -1_000_000_000_000i64..1_000_000_000_000,
        a in 0i64..1_000_000_000_000,
        b in 0i64..1_000_000_000_000,
    ) {
        let (early, late) = (a.min(b), a.max(b));
        prop_assert!(
            accrued_cents(price, start, start + early) <= accrued_cents(price, start, start + late)
        );
    }

    #[test]
    fn accrual_over_a_split_interval_adds_up_within_one_cent_of_rounding(
        price in 0i64..10_000_000,
        start in -1_000_000_000_000i64..1_000_000_000_000,
        first in 0i64..100_000_000_000,
        second in 0i64..100_000_000_000,
    ) {
        let mid = start + first;
        let end = mid + second;
        let parts = accrued_cents(price, start, mid) + accrued_cents(price, mid, end);
        let whole = accrued_cents(price, start, end);
        prop_assert!(parts <= whole && whole <= parts + 1, "{parts} vs {whole}");
    }

    #[test]
    fn accrual_is_never_negative(price in any::<i64>(), from in any::<i64>(), to in any::<i64>()) {
        prop_assert!(accrued_cents(price, from, to) >= 0);
    }

    #[test]
    fn whole_hours_cost_exactly_the_hourly_price_times_the_hours(
        price in 0i64..100_000_000,
        hours in 0i64..100_000,
        start in -1_000_000_000_000i64..1_000_000_000_000,
    ) {
        prop_assert_eq!(accrued_cents(price, start, start + hours * MS_PER_HOUR), price * hours);
    }
}
