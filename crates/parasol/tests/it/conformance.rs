//! Validates response bodies against the Shadeform OpenAPI document.
//!
//! The document is the repository's facts-only copy of Shadeform's
//! (`specs/shadeform.openapi.json`, see `specs/README.md`), its
//! component schemas are turned into JSON Schema (draft 7) by the conversion
//! the providers' documents go through ([`crate::fakes::openapi::convert`]),
//! and each operation's 200 body is checked against the schema the document
//! names for it. OpenAPI 3.0's `nullable` becomes a `null` alternative.
//! The document is used as published, unpatched: a `null` where it does not
//! allow one fails, as it would crash a client generated from it.

use std::collections::HashMap;
use std::sync::OnceLock;

use jsonschema::{Draft, Validator};
use serde_json::{json, Value};

use crate::fakes::openapi::convert;

const SPEC: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../specs/shadeform.openapi.json"
);

struct Spec {
    /// (method, path template) -> component schema of the 200 body.
    responses: HashMap<(String, String), String>,
    validators: HashMap<String, Validator>,
    error: Validator,
}

fn spec() -> &'static Spec {
    static SPEC_CELL: OnceLock<Spec> = OnceLock::new();
    SPEC_CELL.get_or_init(load)
}

fn load() -> Spec {
    let text = std::fs::read_to_string(SPEC).unwrap_or_else(|e| panic!("reading {SPEC}: {e}"));
    let doc: Value = serde_yaml::from_str(&text).expect("the spec is valid YAML");
    // OpenAPI 3.0 → JSON Schema as the providers' documents are converted.
    let components = convert(&doc["components"]);
    let mut responses = HashMap::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            let Some(r) =
                op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].as_str()
            else {
                continue;
            };
            let name = r.rsplit('/').next().unwrap().to_string();
            responses.insert((method.to_uppercase(), path.clone()), name);
        }
    }
    let mut validators = HashMap::new();
    for name in responses.values() {
        let root =
            json!({"components": components, "$ref": format!("#/components/schemas/{name}")});
        let v = jsonschema::options()
            .with_draft(Draft::Draft7)
            .should_validate_formats(true)
            .build(&root)
            .unwrap_or_else(|e| panic!("schema {name}: {e}"));
        validators.insert(name.clone(), v);
    }
    let error = jsonschema::options()
        .with_draft(Draft::Draft7)
        .build(&json!({
            "type": "object",
            "required": ["error", "message"],
            "properties": {"message": {"type": "string", "minLength": 1}, "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "pattern": "^[a-z_]+$"},
                    "message": {"type": "string", "minLength": 1},
                    "field": {"type": "string"}
                }
            }}
        }))
        .unwrap();
    Spec {
        responses,
        validators,
        error,
    }
}

/// Turns a concrete path (`/instances/<uuid>/info`) into the document's
/// template (`/instances/{id}/info`).
fn template(path: &str) -> Option<(String, String)> {
    let path = path.split('?').next().unwrap_or(path);
    let path = path.strip_prefix("/v1")?;
    let s = spec();
    let segs: Vec<&str> = path.split('/').collect();
    s.responses.keys().map(|(_, t)| t.clone()).find_map(|t| {
        let tsegs: Vec<&str> = t.split('/').collect();
        (tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(a, b)| a == b || (a.starts_with('{') && a.ends_with('}'))))
        .then(|| (t.clone(), path.to_string()))
    })
}

/// Panics unless `body` conforms: a 200 to the operation's schema, any
/// other status to the error body.
pub fn check(method: &str, path: &str, status: u16, body: &Value) {
    let s = spec();
    if status != 200 {
        if let Err(e) = s.error.validate(body) {
            panic!("{method} {path} -> {status}: error body does not conform: {e}\n{body}");
        }
        assert_eq!(
            body["message"], body["error"]["message"],
            "{method} {path}: the top-level message repeats error.message"
        );
        return;
    }
    let Some((tmpl, _)) = template(path) else {
        return;
    };
    let Some(name) = s.responses.get(&(method.to_string(), tmpl.clone())) else {
        return;
    };
    let v = &s.validators[name];
    let errors: Vec<String> = v
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    if !errors.is_empty() {
        panic!(
            "{method} {path}: response does not conform to {name}:\n{}\n{body:#}",
            errors.join("\n")
        );
    }
}

/// How many operations the document defines response schemas for.
pub fn operations_with_schemas() -> usize {
    spec().responses.len()
}

#[test]
fn the_validator_rejects_a_response_missing_required_fields() {
    let result = std::panic::catch_unwind(|| {
        check(
            "GET",
            "/v1/instances",
            200,
            &json!({"instances": [{"id": "x"}]}),
        );
    });
    assert!(result.is_err());
    check("GET", "/v1/instances", 200, &json!({"instances": []}));
    assert!(operations_with_schemas() >= 15);
}

#[test]
fn the_document_is_used_unpatched_so_a_null_ip_fails() {
    let instance = |ip: Value, deleted_at: Value| {
        json!({"instances": [{
            "id": "08bb8d26-af99-45a2-852f-3a5a1052d09b", "cloud": "c", "region": "r",
            "shade_instance_type": "A6000", "cloud_instance_type": "A6000", "cloud_assigned_id": "",
            "shade_cloud": true, "name": "n",
            "configuration": {"memory_in_gb": 1, "storage_in_gb": 1, "vcpus": 1, "num_gpus": 1,
                "gpu_type": "A6000", "interconnect": "pcie", "os": "u", "vram_per_gpu_in_gb": 48,
                "gpu_manufacturer": "nvidia"},
            "ip": ip, "ssh_user": "u", "ssh_port": 22, "status": "creating", "cost_estimate": "0.00",
            "created_at": "2026-01-01T00:00:00Z", "deleted_at": deleted_at
        }]})
    };
    check(
        "GET",
        "/v1/instances",
        200,
        &instance(json!(""), json!("0001-01-01T00:00:00Z")),
    );
    for bad in [
        instance(Value::Null, json!("0001-01-01T00:00:00Z")),
        instance(json!(""), Value::Null),
    ] {
        let result = std::panic::catch_unwind(|| check("GET", "/v1/instances", 200, &bad));
        assert!(result.is_err(), "accepted {bad}");
    }
}
