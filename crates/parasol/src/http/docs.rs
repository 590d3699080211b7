//! `GET /v1/openapi.json` (the document) and `GET /docs` (a self-contained
//! HTML page rendered from it: no script, nothing fetched from elsewhere).
//! Neither needs a key: they describe the API, they hold no data.

use std::fmt::Write;

use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::ok;
use crate::openapi::document;

/// `GET /v1/openapi.json`.
pub async fn openapi() -> Response {
    ok(document())
}

/// `GET /docs`.
pub async fn page() -> Response {
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        render(document()),
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A schema as a short type expression, linking named schemas.
fn type_of(v: &Value) -> String {
    if let Some(r) = v["$ref"].as_str() {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(alts) = v[key].as_array() {
            return alts.iter().map(type_of).collect::<Vec<_>>().join(" | ");
        }
    }
    let base = match &v["type"] {
        Value::String(t) if t == "array" => format!("{}[]", type_of(&v["items"])),
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(|t| {
                if t == "array" {
                    format!("{}[]", type_of(&v["items"]))
                } else {
                    t.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join(" | "),
        _ => "any".to_string(),
    };
    match v["format"].as_str() {
        Some(f) => format!("{base} ({})", esc(f)),
        None => base,
    }
}

/// The page: operations, then every schema with its fields.
pub fn render(doc: &Value) -> String {
    let mut h = String::new();
    let title = esc(doc["info"]["title"].as_str().unwrap_or("API"));
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\
         <style>body{{font:15px/1.5 system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse;width:100%;margin:.5rem 0 1.5rem}}td,th{{border-bottom:1px solid #ddd;padding:.3rem .5rem;text-align:left;vertical-align:top}}\
         code,.m{{font-family:ui-monospace,monospace}}.m{{font-weight:bold}}.get{{color:#06c}}.post{{color:#080}}</style></head><body>\
         <h1>{title} {}</h1><p>{}</p>\
         <p>Base URL: <code>/v1</code>. Every request needs the <code>X-API-KEY</code> header. \
         The machine-readable document is at <a href=\"/v1/openapi.json\"><code>/v1/openapi.json</code></a>.</p>\
         <h2>Operations</h2><table><tr><th>Method</th><th>Path</th><th>Summary</th><th>Body</th><th>Answer</th></tr>",
        esc(doc["info"]["version"].as_str().unwrap_or("")),
        esc(doc["info"]["description"].as_str().unwrap_or("")),
    );
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let body = op["requestBody"]["content"]["application/json"]["schema"].clone();
                let answer = &op["responses"]["200"]["content"]["application/json"]["schema"];
                let _ = write!(
                    h,
                    "<tr><td class=\"m {m}\">{M}</td><td><code>{p}</code></td><td>{s}</td><td>{b}</td><td>{a}</td></tr>",
                    m = esc(method),
                    M = esc(&method.to_uppercase()),
                    p = esc(path),
                    s = esc(op["summary"].as_str().unwrap_or("")),
                    b = if body.is_null() { String::new() } else { type_of(&body) },
                    a = type_of(answer),
                );
            }
        }
    }
    h.push_str("</table><h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, s) in schemas {
            let _ = write!(h, "<h3 id=\"schema-{0}\">{0}</h3>", esc(name));
            if let Some(d) = s["description"].as_str() {
                let _ = write!(h, "<p>{}</p>", esc(d));
            }
            if let Some(values) = s["enum"].as_array() {
                let vals: Vec<String> = values
                    .iter()
                    .map(|v| format!("<code>{}</code>", esc(v.as_str().unwrap_or(""))))
                    .collect();
                let _ = write!(h, "<p>One of: {}</p>", vals.join(", "));
                continue;
            }
            let Some(props) = s["properties"].as_object() else {
                let _ = write!(h, "<p><code>{}</code></p>", type_of(s));
                continue;
            };
            let required: Vec<&str> = s["required"]
                .as_array()
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            h.push_str(
                "<table><tr><th>Field</th><th>Type</th><th>Required</th><th>Description</th></tr>",
            );
            for (field, p) in props {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(field),
                    type_of(p),
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        ""
                    },
                    esc(p["description"].as_str().unwrap_or("")),
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("</body></html>\n");
    h
}
