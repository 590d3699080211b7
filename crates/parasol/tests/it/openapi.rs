//! `/v1/openapi.json` and `/docs`: Parasol's own document covers every
//! Shadeform operation with the same paths and field names, and every
//! operation it lists is really served.

use serde_json::Value;

use crate::harness::{Opts, Server, ADMIN_KEY};

const SHADEFORM: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../specs/shadeform.openapi.json"
);

/// Follows `$ref`s and steps through nullable wrappers (`oneOf` /
/// `anyOf` / `allOf` with a null alternative) to the schema that has the
/// fields.
fn resolve<'a>(doc: &'a Value, mut s: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = s["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap();
            s = &doc["components"]["schemas"][name];
            continue;
        }
        let alts = ["oneOf", "anyOf", "allOf"]
            .iter()
            .find_map(|k| s[*k].as_array());
        if let Some(alts) = alts {
            if let Some(inner) = alts.iter().find(|a| a["type"] != "null") {
                s = inner;
                continue;
            }
        }
        break;
    }
    s
}

/// Every field of Shadeform's schema exists in ours, recursively.
fn compare(shade: &Value, sv: &Value, ours: &Value, ov: &Value, at: &str, out: &mut Vec<String>) {
    if at.matches('.').count() > 8 {
        return;
    }
    let s = resolve(shade, sv);
    let o = resolve(ours, ov);
    if let Some(props) = s["properties"].as_object() {
        for (field, sp) in props {
            match o["properties"].get(field) {
                Some(op) => compare(shade, sp, ours, op, &format!("{at}.{field}"), out),
                None => out.push(format!("{at}.{field} is missing")),
            }
        }
    }
    if s["type"] == "array" {
        compare(
            shade,
            &s["items"],
            ours,
            &o["items"],
            &format!("{at}[]"),
            out,
        );
    }
}

#[tokio::test]
async fn the_document_covers_every_shadeform_operation_with_the_same_fields() {
    let s = Server::start(Opts::default());
    let res = reqwest::get(format!("{}/v1/openapi.json", s.base))
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "served without a key");
    let ours: Value = res.json().await.unwrap();
    let shade: Value = serde_yaml::from_str(&std::fs::read_to_string(SHADEFORM).unwrap()).unwrap();
    assert!(ours["openapi"].as_str().unwrap().starts_with("3."));

    let mut problems = vec![];
    let mut compared = 0;
    for (path, item) in shade["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if method == "parameters" {
                continue;
            }
            let Some(mine) = ours["paths"][path].get(method) else {
                problems.push(format!("{method} {path} is not in the document"));
                continue;
            };
            let body =
                |d: &Value| d["requestBody"]["content"]["application/json"]["schema"].clone();
            let answer =
                |d: &Value| d["responses"]["200"]["content"]["application/json"]["schema"].clone();
            if !body(op).is_null() {
                compared += 1;
                compare(
                    &shade,
                    &body(op),
                    &ours,
                    &body(mine),
                    &format!("{method} {path} body"),
                    &mut problems,
                );
            }
            if !answer(op).is_null() {
                compared += 1;
                assert!(!answer(mine).is_null(), "{method} {path} has no 200 schema");
                compare(
                    &shade,
                    &answer(op),
                    &ours,
                    &answer(mine),
                    &format!("{method} {path} 200"),
                    &mut problems,
                );
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                let listed = mine["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|q| q["name"] == name);
                if !listed {
                    problems.push(format!("{method} {path}: parameter {name} is missing"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(compared >= 25, "{compared}");
    // Parasol's own extension is there too.
    assert!(ours["paths"]["/account"]["get"].is_object());
    assert_eq!(
        ours["components"]["securitySchemes"]["ApiKeyAuth"]["name"],
        "X-API-KEY"
    );
}

#[tokio::test]
async fn every_documented_operation_is_served_and_the_docs_page_lists_them() {
    let s = Server::start(Opts::default());
    let ours: Value = reqwest::get(format!("{}/v1/openapi.json", s.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let page = http.get(format!("{}/docs", s.base)).send().await.unwrap();
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let page = page.text().await.unwrap();
    let mut n = 0;
    for (path, item) in ours["paths"].as_object().unwrap() {
        for (method, _) in item.as_object().unwrap() {
            n += 1;
            assert!(
                page.contains(&format!("<code>{path}</code>")),
                "{path} not on /docs"
            );
            // Any id will do: the route must exist (an unknown object is a
            // 404 naming the object, an unknown route names the route).
            let url = format!(
                "{}/v1{}",
                s.base,
                path.replace("{id}", "00000000-0000-0000-0000-000000000000")
                    .replace("{template_id}", "00000000-0000-0000-0000-000000000000")
            );
            let req = match method.as_str() {
                "get" => http.get(&url),
                "post" => http.post(&url).body("{}"),
                m => panic!("unexpected method {m}"),
            };
            let res = req.header("X-API-KEY", ADMIN_KEY).send().await.unwrap();
            let status = res.status().as_u16();
            // A stream (the events') never ends: its head is the answer.
            let streaming = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v == "text/event-stream");
            let body: Value = if streaming {
                Value::Null
            } else {
                res.json().await.unwrap_or(Value::Null)
            };
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !(status == 404 && body["error"]["message"] == "route not found"),
                "{method} {path} is documented but not served"
            );
        }
    }
    assert!(n >= 30, "{n}");
    for schema in ["Instance", "CreateRequest", "ErrorBody"] {
        assert!(
            page.contains(&format!("id=\"schema-{schema}\"")),
            "{schema}"
        );
    }
}
