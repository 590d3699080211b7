//! Holds the fakes to their providers' published API documents.
//!
//! A fake names the documents it answers for: the repository's facts-only
//! copies in `specs/` (see `specs/README.md`). Every request it receives is
//! checked against them: the operation (method and templated path), the
//! path and query parameters (presence, types, enums, bounds) and the JSON
//! body against the request schema; every answer it serves is checked
//! against the document's response schema for its status. A mismatch comes
//! back as a sentence naming the request and the rule it broke, which
//! [`super::FakeServer`] records and fails the test with.
//!
//! OpenAPI 3.0 schemas are JSON Schema draft 4 plus `nullable`, which
//! becomes a `null` alternative here (as in `tests/it/conformance.rs`);
//! 3.1 documents are JSON Schema 2020-12 as they stand. Some 3.1 documents
//! still write 3.0's `nullable: true`; their authors mean it, so it is
//! honoured there too. Validation itself is the `jsonschema` crate's.
//!
//! Google publishes Compute Engine as a discovery document, not OpenAPI;
//! `scripts/derive-specs.py` turns the methods Parasol uses into OpenAPI
//! 3.0 operations (`specs/gcp-compute.openapi.json`), so one validator
//! reads every provider.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use jsonschema::{Draft, Validator};
use serde_json::{json, Map, Value};

use super::Recorded;

/// A provider document, loaded from `specs/`.
pub struct Document {
    /// The file under `specs/`.
    pub file: &'static str,
    /// The path of the document's server URL, which every path sits under.
    base: String,
    draft: Draft,
    /// The converted `components`, the root every `$ref` resolves in.
    components: Value,
    ops: Vec<Operation>,
    /// The provider accepts each path with a trailing slash too (Vast.ai's
    /// official client adds one to nearly every path).
    trailing_slash: bool,
    validators: Mutex<HashMap<String, Arc<Validator>>>,
}

struct Operation {
    id: String,
    method: String,
    template: String,
    segs: Vec<String>,
    params: Vec<Param>,
    /// `None`: the operation takes no body.
    body: Option<Body>,
    /// Status (`"200"`, `"4XX"`, `"default"`) and its JSON schema; `None`
    /// when the answer has no JSON content.
    responses: Vec<(String, Option<Value>)>,
}

impl Operation {
    /// What its compiled schemas are cached under: the method and path,
    /// since an operationId may name two (RunPod's `UpdatePod`).
    fn key(&self) -> String {
        format!("{} {}", self.method, self.template)
    }
}

struct Param {
    name: String,
    location: String,
    required: bool,
    schema: Value,
}

struct Body {
    required: bool,
    /// The JSON schema; `None` when the body is not JSON.
    schema: Option<Value>,
}

/// The providers' documents, each loaded once per test process.
pub mod docs {
    use super::Document;

    macro_rules! doc {
        ($fn:ident, $file:literal, $slash:expr) => {
            #[doc = concat!("`specs/", $file, "`.")]
            pub fn $fn() -> &'static Document {
                static CELL: std::sync::OnceLock<Document> = std::sync::OnceLock::new();
                CELL.get_or_init(|| {
                    Document::parse(
                        $file,
                        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../specs/", $file)),
                        $slash,
                    )
                })
            }
        };
    }

    doc!(digitalocean, "digitalocean.openapi.json", false);
    doc!(runpod_v1, "runpod-v1.openapi.json", false);
    doc!(runpod_v2, "runpod-v2.openapi.json", false);
    doc!(lambda, "lambda.openapi.json", false);
    doc!(hyperstack, "hyperstack.openapi.json", false);
    doc!(vastai, "vastai.openapi.json", true);
    doc!(gcp, "gcp-compute.openapi.json", false);
    doc!(gcp_billing, "gcp-billing.openapi.json", false);
    doc!(azure_compute, "azure-compute.openapi.json", false);
    doc!(azure_network, "azure-network.openapi.json", false);
}

/// Which operation of which document a request was, so its answer can be
/// checked against the same operation.
pub struct Matched {
    doc: &'static Document,
    op: usize,
}

impl Document {
    fn parse(file: &'static str, text: &str, trailing_slash: bool) -> Document {
        let doc: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("specs/{file}: {e}"));
        let draft = if doc["openapi"].as_str().unwrap_or("").starts_with("3.0") {
            Draft::Draft4
        } else {
            Draft::Draft202012
        };
        let base = doc["servers"][0]["url"]
            .as_str()
            .and_then(|u| u.split_once("://").map(|(_, rest)| rest))
            .map(|rest| rest.find('/').map(|i| &rest[i..]).unwrap_or(""))
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        let components = convert(&doc["components"]);
        let mut ops = Vec::new();
        for (template, item) in doc["paths"].as_object().expect("paths") {
            let shared: Vec<Value> = item["parameters"].as_array().cloned().unwrap_or_default();
            for (method, op) in item.as_object().expect("path item") {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
                ) {
                    continue;
                }
                // Operation-level parameters override path-level ones of
                // the same name and place.
                let mut params: BTreeMap<(String, String), Param> = BTreeMap::new();
                let own = op["parameters"].as_array().cloned().unwrap_or_default();
                for p in shared.iter().chain(own.iter()) {
                    let p = deref(&doc, p);
                    let p = Param {
                        name: p["name"].as_str().unwrap_or("").to_string(),
                        location: p["in"].as_str().unwrap_or("").to_string(),
                        required: p["required"] == json!(true),
                        schema: convert(&p["schema"]),
                    };
                    params.insert((p.location.clone(), p.name.clone()), p);
                }
                let body = op.get("requestBody").map(|b| {
                    let b = deref(&doc, b);
                    Body {
                        required: b["required"] == json!(true),
                        schema: json_content(&b["content"]).map(convert),
                    }
                });
                let responses = op["responses"]
                    .as_object()
                    .map(|rs| {
                        rs.iter()
                            .map(|(status, r)| {
                                let r = deref(&doc, r);
                                (status.clone(), json_content(&r["content"]).map(convert))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                ops.push(Operation {
                    id: op["operationId"].as_str().unwrap_or("").to_string(),
                    method: method.to_uppercase(),
                    template: template.clone(),
                    segs: template
                        .trim_matches('/')
                        .split('/')
                        .map(str::to_string)
                        .collect(),
                    params: params.into_values().collect(),
                    body,
                    responses,
                });
            }
        }
        Document {
            file,
            base,
            draft,
            components,
            ops,
            trailing_slash,
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `path` lies under this document's server URL.
    fn covers(&self, path: &str) -> bool {
        self.base.is_empty()
            || path == self.base
            || path
                .strip_prefix(&self.base)
                .is_some_and(|r| r.starts_with('/'))
    }

    /// The operation whose template `path` fills, and its path parameters.
    fn route(&self, method: &str, path: &str) -> Result<(usize, Vec<(String, String)>), String> {
        let rel = &path[self.base.len()..];
        let rel = match rel.strip_suffix('/') {
            Some(r) if self.trailing_slash && !r.is_empty() => r,
            _ => rel,
        };
        let segs: Vec<&str> = rel.trim_start_matches('/').split('/').collect();
        let fill = |op: &Operation| -> Option<Vec<(String, String)>> {
            if op.segs.len() != segs.len() {
                return None;
            }
            let mut vars = Vec::new();
            for (t, s) in op.segs.iter().zip(&segs) {
                match t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    Some(name) if !s.is_empty() => vars.push((name.to_string(), decode(s))),
                    Some(_) => return None,
                    None if t == s => {}
                    None => return None,
                }
            }
            Some(vars)
        };
        // A literal segment beats a variable one (`/volumes/actions` is not
        // `/volumes/{volume_id}`).
        let literal = |op: &Operation| op.segs.iter().filter(|s| !s.starts_with('{')).count();
        let mut found: Vec<(usize, Vec<(String, String)>)> = self
            .ops
            .iter()
            .enumerate()
            .filter_map(|(i, op)| fill(op).map(|v| (i, v)))
            .collect();
        found.sort_by_key(|(i, _)| std::cmp::Reverse(literal(&self.ops[*i])));
        let Some(best) = found.first().map(|(i, _)| literal(&self.ops[*i])) else {
            return Err(format!(
                "no path of {} matches {path} (under server path {:?})",
                self.file, self.base
            ));
        };
        let same: Vec<&(usize, Vec<(String, String)>)> = found
            .iter()
            .filter(|(i, _)| literal(&self.ops[*i]) == best)
            .collect();
        if let Some((i, vars)) = same.iter().find(|(i, _)| self.ops[*i].method == method) {
            return Ok((*i, vars.clone()));
        }
        let allowed: Vec<&str> = same
            .iter()
            .map(|(i, _)| self.ops[*i].method.as_str())
            .collect();
        Err(format!(
            "{} documents {} for {} only, not {method}",
            self.file,
            self.ops[same[0].0].template,
            allowed.join(", ")
        ))
    }

    fn validator(&self, key: &str, schema: &Value) -> Arc<Validator> {
        let mut cache = self.validators.lock().unwrap();
        if let Some(v) = cache.get(key) {
            return v.clone();
        }
        let root = json!({"components": self.components, "allOf": [schema]});
        let v = Arc::new(
            jsonschema::options()
                .with_draft(self.draft)
                .should_validate_formats(true)
                .should_ignore_unknown_formats(true)
                .build(&root)
                .unwrap_or_else(|e| panic!("specs/{}: schema of {key}: {e}", self.file)),
        );
        cache.insert(key.to_string(), v.clone());
        v
    }

    /// Every way `value` breaks `schema`, as one line each.
    fn errors(&self, key: &str, schema: &Value, value: &Value) -> Vec<String> {
        self.validator(key, schema)
            .iter_errors(value)
            .map(|e| {
                let at = e.instance_path.to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("at {at}: {e}")
                }
            })
            .collect()
    }

    fn check_request(&self, op_i: usize, vars: &[(String, String)], req: &Recorded) -> Vec<String> {
        let op = &self.ops[op_i];
        let mut out = Vec::new();
        for (name, raw) in vars {
            match op
                .params
                .iter()
                .find(|p| p.location == "path" && &p.name == name)
            {
                Some(p) => out.extend(
                    self.errors(
                        &format!("{} path {name}", op.key()),
                        &p.schema,
                        &typed(raw, &p.schema),
                    )
                    .into_iter()
                    .map(|e| format!("path parameter {name}={raw:?}: {e}")),
                ),
                None => out.push(format!("path parameter {name} is not declared")),
            }
        }
        let mut query: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(req.query.as_bytes()) {
            query
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
        for (name, values) in &query {
            let Some(p) = op
                .params
                .iter()
                .find(|p| p.location == "query" && &p.name == name)
            else {
                let known: Vec<&str> = op
                    .params
                    .iter()
                    .filter(|p| p.location == "query")
                    .map(|p| p.name.as_str())
                    .collect();
                out.push(format!(
                    "query parameter {name} is not documented (documented: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
                continue;
            };
            let value = if p.schema["type"] == "array" {
                Value::Array(
                    values
                        .iter()
                        .flat_map(|v| v.split(','))
                        .map(|v| typed(v, &p.schema["items"]))
                        .collect(),
                )
            } else if values.len() > 1 {
                out.push(format!(
                    "query parameter {name} is given {} times",
                    values.len()
                ));
                continue;
            } else {
                typed(&values[0], &p.schema)
            };
            out.extend(
                self.errors(&format!("{} query {name}", op.key()), &p.schema, &value)
                    .into_iter()
                    .map(|e| format!("query parameter {name}={:?}: {e}", values.join(","))),
            );
        }
        for p in op.params.iter().filter(|p| p.required) {
            let present = match p.location.as_str() {
                "query" => query.contains_key(&p.name),
                "header" => req.headers.contains_key(&p.name.to_ascii_lowercase()),
                _ => true,
            };
            if !present {
                out.push(format!(
                    "required {} parameter {} is missing",
                    p.location, p.name
                ));
            }
        }
        match (&op.body, &req.body) {
            (None, Value::Null) => {}
            (None, b) => out.push(format!("{} takes no body, but got {b}", op.id)),
            (Some(b), Value::Null) if b.required => {
                out.push("the request body is required but missing".to_string())
            }
            (Some(_), Value::Null) => {}
            (
                Some(Body {
                    schema: Some(s), ..
                }),
                body,
            ) => {
                if let Value::String(text) = body {
                    if req
                        .header("content-type")
                        .is_some_and(|c| !c.contains("json"))
                    {
                        out.push(format!("the body is not JSON: {text:?}"));
                    }
                }
                out.extend(
                    self.errors(&format!("{} body", op.key()), s, body)
                        .into_iter()
                        .map(|e| format!("request body {e}")),
                );
            }
            (Some(Body { schema: None, .. }), _) => {}
        }
        out
    }

    fn check_response(&self, op_i: usize, status: u16, body: &str) -> Vec<String> {
        let op = &self.ops[op_i];
        let code = status.to_string();
        let range = format!("{}XX", status / 100);
        let entry = op
            .responses
            .iter()
            .find(|(s, _)| *s == code)
            .or_else(|| {
                op.responses
                    .iter()
                    .find(|(s, _)| s.eq_ignore_ascii_case(&range))
            })
            .or_else(|| op.responses.iter().find(|(s, _)| s == "default"));
        let Some((_, schema)) = entry else {
            // A success the operation does not list, where it lists others
            // (an operation listing none leaves its success undocumented).
            let lists_success = op.responses.iter().any(|(s, _)| s.starts_with('2'));
            if (200..300).contains(&status) && lists_success {
                let documented: Vec<&str> = op.responses.iter().map(|(s, _)| s.as_str()).collect();
                return vec![format!(
                    "answered {status}, which {} does not document (it documents {})",
                    op.id,
                    documented.join(", ")
                )];
            }
            // The document says nothing about this failure; nothing to hold
            // the answer to.
            return Vec::new();
        };
        let Some(schema) = schema else {
            return if body.trim().is_empty() || status >= 300 {
                Vec::new()
            } else {
                vec![format!(
                    "answered {status} with a body, where {} documents none",
                    op.id
                )]
            };
        };
        let value: Value = match serde_json::from_str(body) {
            Ok(v) => v,
            Err(e) => {
                return vec![format!(
                    "answered {status} with a body that is not JSON ({e}): {body:?}"
                )]
            }
        };
        self.errors(&format!("{} {code}", op.key()), schema, &value)
            .into_iter()
            .map(|e| format!("answer {status} {e}"))
            .collect()
    }
}

/// Checks a request against the documents a fake answers for: the
/// operation it is, or every rule it breaks.
pub fn check_request(docs: &[&'static Document], req: &Recorded) -> Result<Matched, Vec<String>> {
    let mut misses = Vec::new();
    for &doc in docs.iter().filter(|d| d.covers(&req.path)) {
        match doc.route(&req.method, &req.path) {
            Ok((op, vars)) => {
                let errors = doc.check_request(op, &vars, req);
                return if errors.is_empty() {
                    Ok(Matched { doc, op })
                } else {
                    let op = &doc.ops[op];
                    Err(errors
                        .into_iter()
                        .map(|e| {
                            format!(
                                "{} ({} {} {}): {e}",
                                doc.file, op.id, op.method, op.template
                            )
                        })
                        .collect())
                };
            }
            Err(e) => misses.push(e),
        }
    }
    if misses.is_empty() {
        let files: Vec<&str> = docs.iter().map(|d| d.file).collect();
        misses.push(format!(
            "no document covers this path ({})",
            files.join(", ")
        ));
    }
    Err(misses)
}

/// Checks an answer against the operation its request was.
pub fn check_response(m: &Matched, status: u16, body: &str) -> Vec<String> {
    let op = &m.doc.ops[m.op];
    m.doc
        .check_response(m.op, status, body)
        .into_iter()
        .map(|e| format!("{} ({}): {e}", m.doc.file, op.id))
        .collect()
}

/// The operation a request matched, for a fake's own use.
pub fn operation_id(m: &Matched) -> &str {
    &m.doc.ops[m.op].id
}

/// A parameter's string as the JSON value its schema types it as, so the
/// schema can judge it (a query `per_page=abc` is a string where an integer
/// is wanted, and fails).
fn typed(raw: &str, schema: &Value) -> Value {
    let ty = schema["type"]
        .as_str()
        .or_else(|| schema["anyOf"][0]["type"].as_str())
        .unwrap_or("string");
    match ty {
        "integer" => raw
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| json!(raw)),
        "number" => raw
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| json!(raw)),
        "boolean" => match raw {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(raw),
        },
        _ => json!(raw),
    }
}

fn decode(seg: &str) -> String {
    form_urlencoded::parse(format!("x={}", seg.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| seg.to_string())
}

/// A parameter, request body or response, with a `#/components/...` `$ref`
/// followed.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut v = v;
    for _ in 0..8 {
        let Some(r) = v["$ref"].as_str().and_then(|r| r.strip_prefix('#')) else {
            break;
        };
        v = doc.pointer(r).unwrap_or(&Value::Null);
    }
    v
}

/// The JSON schema of a `content` map: `application/json` or any `+json` or
/// `*/*` media type.
fn json_content(content: &Value) -> Option<&Value> {
    let map = content.as_object()?;
    map.iter()
        .find(|(k, _)| k.starts_with("application/json"))
        .or_else(|| map.iter().find(|(k, _)| k.contains("json") || *k == "*/*"))
        .map(|(_, m)| m.get("schema").unwrap_or(&Value::Bool(true)))
}

/// An OpenAPI schema (or a map of them) as JSON Schema: `nullable: true`
/// becomes a `null` alternative (and joins an enum's values), the
/// OpenAPI-only `discriminator` and `xml` go; everything else is unchanged.
pub fn convert(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, val) in map {
                match k.as_str() {
                    "nullable" | "discriminator" | "xml" => {}
                    // Values of name maps are schemas; their keys are names.
                    "properties" | "patternProperties" | "schemas" | "$defs" => {
                        let m = val
                            .as_object()
                            .map(|m| m.iter().map(|(n, s)| (n.clone(), convert(s))).collect())
                            .unwrap_or_default();
                        out.insert(k.clone(), Value::Object(m));
                    }
                    "enum" | "default" | "const" | "required" => {
                        out.insert(k.clone(), val.clone());
                    }
                    _ => {
                        out.insert(k.clone(), convert(val));
                    }
                }
            }
            let obj = Value::Object(out);
            if map.get("nullable") == Some(&json!(true)) {
                // A nullable enum lists its values; null must join them.
                let mut obj = obj;
                if let Some(e) = obj.get_mut("enum").and_then(Value::as_array_mut) {
                    if !e.contains(&Value::Null) {
                        e.push(Value::Null);
                    }
                }
                json!({"anyOf": [obj, {"type": "null"}]})
            } else {
                obj
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(convert).collect()),
        other => other.clone(),
    }
}

/// Every document loads, and each operation's schemas compile.
#[test]
fn every_provider_document_loads_and_compiles() {
    for doc in [
        docs::digitalocean(),
        docs::runpod_v1(),
        docs::runpod_v2(),
        docs::lambda(),
        docs::hyperstack(),
        docs::vastai(),
        docs::gcp(),
        docs::azure_compute(),
        docs::azure_network(),
    ] {
        assert!(!doc.ops.is_empty(), "{} has no operations", doc.file);
        for op in &doc.ops {
            for p in &op.params {
                doc.validator(
                    &format!("{} {} {}", op.key(), p.location, p.name),
                    &p.schema,
                );
            }
            if let Some(Body {
                schema: Some(s), ..
            }) = &op.body
            {
                doc.validator(&format!("{} body", op.key()), s);
            }
            for (status, s) in &op.responses {
                if let Some(s) = s {
                    doc.validator(&format!("{} {status}", op.key()), s);
                }
            }
        }
    }
}

#[cfg(test)]
fn recorded(method: &str, path: &str, query: &str, body: Value) -> Recorded {
    Recorded {
        at: std::time::Instant::now(),
        method: method.into(),
        path: path.into(),
        query: query.into(),
        headers: BTreeMap::new(),
        body,
    }
}

/// The checks catch what a document forbids, and name it.
#[test]
fn requests_and_answers_that_break_the_document_are_named() {
    let d = &[docs::digitalocean()];
    let ok = check_request(
        d,
        &recorded("GET", "/v2/droplets", "per_page=200&type=gpus", Value::Null),
    );
    let m = ok.unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(operation_id(&m), "droplets_list");
    for (req, rule) in [
        (
            recorded("GET", "/v2/droplets", "per_page=201", Value::Null),
            "per_page",
        ),
        (
            recorded("GET", "/v2/droplets", "per_page=abc", Value::Null),
            "per_page",
        ),
        (
            recorded("GET", "/v2/droplets", "type=gpu", Value::Null),
            "type",
        ),
        (
            recorded("GET", "/v2/droplets", "colour=red", Value::Null),
            "colour",
        ),
        (recorded("PUT", "/v2/droplets", "", json!({})), "PUT"),
        (recorded("GET", "/v2/nothing", "", Value::Null), "no path"),
        (
            recorded("POST", "/v2/droplets", "", json!({"name": "x"})),
            "request body",
        ),
        (
            recorded("DELETE", "/v2/droplets/abc", "", Value::Null),
            "droplet_id",
        ),
    ] {
        let errors = check_request(d, &req)
            .err()
            .unwrap_or_else(|| panic!("accepted {}", req.line()));
        assert!(
            errors.iter().any(|e| e.contains(rule)),
            "{} {}: {errors:?} does not name {rule}",
            req.line(),
            req.query
        );
    }
    // `/v2/volumes/actions` is its own operation, not a volume id.
    let m = check_request(
        d,
        &recorded(
            "POST",
            "/v2/volumes/actions",
            "",
            json!({"type": "attach", "volume_name": "v", "droplet_id": 1}),
        ),
    );
    assert_eq!(
        operation_id(&m.unwrap_or_else(|e| panic!("{e:?}"))),
        "volumeActions_post"
    );
    let m = check_request(d, &recorded("GET", "/v2/droplets/12", "", Value::Null)).unwrap();
    assert!(check_response(&m, 404, r#"{"id":"not_found","message":"gone"}"#).is_empty());
    let bad = check_response(&m, 404, r#"{"message":"gone"}"#);
    assert!(bad.iter().any(|e| e.contains("id")), "{bad:?}");
    // DigitalOcean documents a `default` answer: an unlisted status is
    // held to it.
    assert!(!check_response(&m, 202, "{}").is_empty());
    // RunPod documents 204 for a delete, and nothing else that succeeds.
    let rp = &[docs::runpod_v1(), docs::runpod_v2()];
    let m = check_request(rp, &recorded("DELETE", "/v1/pods/abc", "", Value::Null)).unwrap();
    assert!(check_response(&m, 204, "").is_empty());
    let bad = check_response(&m, 200, "");
    assert!(
        bad.iter().any(|e| e.contains("does not document")),
        "{bad:?}"
    );
    // Its v2 API sits beside v1 in the same fake.
    let m = check_request(rp, &recorded("GET", "/v2/catalog/gpus", "", Value::Null)).unwrap();
    assert_eq!(operation_id(&m), "listGpuTypes");
}
