//! The web console through the real binary: sign-in and sessions, every
//! page and form, errors beside their fields, cross-site POSTs refused and
//! another account's objects not found.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::Opts;
use crate::harness::{advance_clock, concrete, public_key, wait_for_samples, Server, ADMIN_KEY};

/// A browser-like client: follows no redirects, keeps the session cookie.
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
    csrf: Option<String>,
}

/// A console answer: status, `Location`, `Set-Cookie` and the HTML.
struct Page {
    status: u16,
    location: Option<String>,
    set_cookie: Option<String>,
    html: String,
}

impl Page {
    fn expect(self, status: u16) -> Page {
        assert_eq!(self.status, status, "body: {}", self.html);
        self
    }

    fn redirects_to(&self, prefix: &str) -> String {
        assert!(
            (300..400).contains(&self.status),
            "expected a redirect, got {}: {}",
            self.status,
            self.html
        );
        let l = self.location.clone().unwrap();
        assert!(l.starts_with(prefix), "redirect to {l}, expected {prefix}");
        l
    }

    /// The message shown beside `field`.
    fn field_error(&self, field: &str) -> Option<String> {
        let marker = format!("data-field=\"{field}\">");
        let at = self.html.find(&marker)? + marker.len();
        Some(self.html[at..].split('<').next().unwrap().to_string())
    }

    /// How many table rows carry `data-id`.
    fn rows(&self, table: &str) -> usize {
        let at = self
            .html
            .find(&format!("id=\"{table}\""))
            .unwrap_or_else(|| panic!("no table {table} in {}", self.html));
        let end = self.html[at..].find("</table>").unwrap() + at;
        self.html[at..end].matches("<tr data-id=").count()
    }
}

impl Browser {
    fn new(s: &Server) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            cookie: None,
            csrf: None,
        }
    }

    async fn signed_in(s: &Server, key: &str) -> Browser {
        let mut b = Browser::new(s);
        b.sign_in(key).await.redirects_to("/instances");
        b
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = match &self.cookie {
            Some(c) => req.header("cookie", format!("parasol_session={c}")),
            None => req,
        };
        let res = req.send().await.expect("request");
        let header = |n: &str| {
            res.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let location = header("location");
        let set_cookie = header("set-cookie");
        let status = res.status().as_u16();
        let html = res.text().await.unwrap();
        if let Some(t) = html.split("name=\"csrf\" value=\"").nth(1) {
            self.csrf = Some(t.split('"').next().unwrap().to_string());
        }
        Page {
            status,
            location,
            set_cookie,
            html,
        }
    }

    async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    /// POSTs a form with the session's CSRF token, as the page would.
    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        if self.csrf.is_none() {
            self.get("/instances").await;
        }
        let mut fields: Vec<(&str, &str)> = form.to_vec();
        let csrf = self.csrf.clone().unwrap_or_default();
        fields.push(("csrf", &csrf));
        self.post_raw(path, &fields, &[]).await
    }

    async fn post_raw(
        &mut self,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    async fn sign_in(&mut self, key: &str) -> Page {
        let p = self.post_raw("/login", &[("api_key", key)], &[]).await;
        if let Some(c) = &p.set_cookie {
            let v = c
                .split(';')
                .next()
                .unwrap()
                .trim_start_matches("parasol_session=");
            self.cookie = Some(v.to_string());
        }
        p
    }
}

fn id_from(location: &str) -> String {
    location.rsplit('/').next().unwrap().to_string()
}

async fn launch(b: &mut Browser, name: &str) -> String {
    let p = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "us-central-1"),
                ("type", "A6000"),
                ("name", name),
            ],
        )
        .await;
    id_from(&p.redirects_to("/instances/"))
}

async fn wait_page(b: &mut Browser, path: &str, what: &str) -> Page {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let p = b.get(path).await;
        if p.html.contains(what) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed {what:?}: {}",
            p.html
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sign_in_gives_a_strict_http_only_cookie_and_sign_out_forgets_it() {
    let s = Server::start(Opts::default());
    let mut b = Browser::new(&s);
    b.get("/").await.redirects_to("/login");
    b.get("/instances").await.redirects_to("/login");
    // An htmx refresh without a session is told to load the sign-in page.
    let hx = b
        .http
        .get(format!("{}/instances/rows", s.base))
        .header("hx-request", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(hx.status(), 200);
    assert_eq!(hx.headers()["hx-redirect"], "/login");
    assert!(hx.text().await.unwrap().is_empty());
    let p = b.get("/login").await.expect(200);
    assert!(
        p.html.contains("Capacity is simulated"),
        "the sim banner is shown"
    );
    let bad = b.sign_in("psl_wrong").await.expect(401);
    assert!(bad.html.contains("That API key is not valid."));
    assert!(bad.set_cookie.is_none());
    let ok = b.sign_in(ADMIN_KEY).await;
    ok.redirects_to("/instances");
    let cookie = ok.set_cookie.clone().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attr), "{cookie} lacks {attr}");
    }
    assert!(
        !cookie.contains("Secure"),
        "no Secure flag over plain HTTP: {cookie}"
    );
    assert!(
        !cookie.contains(ADMIN_KEY),
        "the key never goes into the cookie"
    );
    let home = b.get("/instances").await.expect(200);
    assert!(home.html.contains("No instances yet: pick an offer"));
    assert!(home.html.contains("admin (admin)"));
    // A tampered token is no session.
    let good = b.cookie.clone().unwrap();
    let last = if good.ends_with('0') { '1' } else { '0' };
    b.cookie = Some(format!("{}{last}", &good[..good.len() - 1]));
    b.get("/instances").await.redirects_to("/login");
    b.cookie = Some(good.clone());
    let out = b.post("/logout", &[]).await;
    out.redirects_to("/login");
    assert!(out.set_cookie.unwrap().contains("Max-Age=0"));
    // Signing out ended the session itself: the old cookie, replayed, is
    // no session any more (a browser that kept it gets nowhere).
    b.cookie = Some(good);
    b.get("/instances").await.redirects_to("/login");
}

#[tokio::test]
async fn every_page_renders_and_the_assets_are_embedded() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    for (path, heading) in [
        ("/offers", "<h1>Offers</h1>"),
        (
            "/launch?cloud=massedcompute&region=us-central-1&type=A6000",
            "Launch an instance",
        ),
        ("/instances", "<h1>Instances</h1>"),
        ("/clusters", "No clusters yet"),
        ("/clusters/new", "Cluster shapes"),
        ("/keys", "No SSH keys yet"),
        ("/volumes", "No volumes yet"),
        ("/webhooks", "No webhooks yet"),
        ("/templates", "Featured"),
        ("/events", "Nothing has happened yet"),
        ("/spend", "Month to date"),
        ("/system", "Reconciler"),
    ] {
        let p = b.get(path).await.expect(200);
        assert!(p.html.contains(heading), "{path} lacks {heading:?}");
        assert!(
            p.html.contains("name=\"csrf\""),
            "{path} has the sign-out form with its token"
        );
    }
    let js = reqwest::get(format!("{}/assets/htmx.min.js", s.base))
        .await
        .unwrap();
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(js.text().await.unwrap().starts_with("/* htmx 2.0."));
    // The console's own script, with the stream's event names first.
    let live = reqwest::get(format!("{}/assets/live.js", s.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(live.starts_with("var EVENT_TYPES = [\"instance.created\","));
    assert!(live.contains("new EventSource(\"/events/stream\")"));
    let css = reqwest::get(format!("{}/assets/console.css", s.base))
        .await
        .unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
    // The API is unchanged beside it.
    let api = reqwest::get(format!("{}/v1/instances", s.base))
        .await
        .unwrap();
    assert_eq!(api.status(), 401);
}

#[tokio::test]
async fn offers_filter_through_the_catalog_query_and_sort_by_price() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let p = b
        .get("/offers?gpu_type=A6000&available=true&sort=price")
        .await
        .expect(200);
    let api = s
        .admin()
        .get("/v1/instances/types?gpu_type=A6000&available=true&sort=price")
        .await
        .expect(200);
    let want = api["instance_types"].as_array().unwrap();
    assert!(!want.is_empty());
    assert_eq!(p.html.matches("<tr data-cloud=").count(), want.len());
    // Same order as the API's price sort.
    let mut at = 0;
    for t in want {
        let marker = format!(
            "data-cloud=\"{}\" data-type=\"{}\"",
            t["cloud"].as_str().unwrap(),
            t["shade_instance_type"].as_str().unwrap()
        );
        let found = p.html[at..]
            .find(&marker)
            .unwrap_or_else(|| panic!("{marker} missing or out of order"));
        at += found + 1;
    }
    assert!(
        p.html.contains("/launch?cloud="),
        "each row has a Launch link"
    );
    let vram = b.get("/offers?min_vram=80").await.expect(200);
    assert!(
        !vram.html.contains("data-type=\"A6000\""),
        "48 GB cards are filtered out"
    );
    assert!(vram.html.contains(">H100"));
    let bad = b.get("/offers?num_gpus=lots").await.expect(400);
    assert!(bad
        .field_error("num_gpus")
        .unwrap()
        .contains("whole number"));
    let none = b.get("/offers?gpu_type=NOPE").await.expect(200);
    assert!(none.html.contains("No offer matches these filters"));
}

#[tokio::test]
async fn launch_creates_the_instance_and_shows_api_errors_beside_their_fields() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let form = b
        .get("/launch?cloud=massedcompute&region=us-central-1&type=A6000")
        .await
        .expect(200);
    assert!(
        form.html.contains("value=\"massedcompute\""),
        "prefilled from the offer"
    );
    let p = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "nowhere"),
                ("type", "A6000"),
                ("name", "x"),
            ],
        )
        .await
        .expect(400);
    assert!(p
        .field_error("region")
        .unwrap()
        .contains("not available in region"));
    assert!(
        p.html.contains("value=\"x\""),
        "the form keeps what was typed"
    );
    let p = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "us-central-1"),
                ("type", "A6000"),
                ("name", ""),
            ],
        )
        .await
        .expect(400);
    assert!(p.field_error("name").is_some(), "{}", p.html);
    let p = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "us-central-1"),
                ("type", "A6000"),
                ("name", "e"),
                ("envs", "no equals sign"),
            ],
        )
        .await
        .expect(400);
    assert!(p.field_error("envs").unwrap().contains("NAME=value"));
    let p = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "us-central-1"),
                ("type", "A6000"),
                ("name", "e"),
                ("auto_delete_spend", "lots"),
            ],
        )
        .await
        .expect(400);
    assert!(p.field_error("auto_delete").is_some(), "{}", p.html);
    assert!(
        s.admin().get("/v1/instances").await.expect(200)["instances"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let p = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "us-central-1"),
                ("type", "A6000"),
                ("name", "web-box"),
                ("launch", "docker"),
                ("docker_image", "nginx:latest"),
                ("envs", "A=1\nB=two"),
                ("alert_spend", "5.00"),
                ("save_template", "my nginx"),
            ],
        )
        .await;
    let id = id_from(&p.redirects_to("/instances/"));
    let info = s
        .admin()
        .get(&format!("/v1/instances/{id}/info"))
        .await
        .expect(200);
    assert_eq!(info["name"], "web-box");
    assert_eq!(
        info["launch_configuration"]["docker_configuration"]["image"],
        "nginx:latest"
    );
    assert_eq!(info["envs"][1]["value"], "two");
    assert_eq!(info["alert"]["spend_threshold"], "5.00");
    let t = s.admin().get("/v1/templates").await.expect(200);
    assert_eq!(t["templates"][0]["name"], "my nginx");
    let page = wait_page(&mut b, &format!("/instances/{id}"), "id=\"ssh-command\"").await;
    assert!(page.html.contains("ssh -p 22 shadeform@"), "{}", page.html);
    assert!(page.html.contains("data-copy=\"ssh-command\""));
    assert!(page.html.contains("st-active"));
    assert!(page.html.contains("docker nginx:latest"));
    assert!(
        page.html.contains("</span> active</li>"),
        "the timeline shows when it went active"
    );
    let live = b.get(&format!("/instances/{id}/live")).await.expect(200);
    assert!(
        live.html.starts_with("<div id=\"live\""),
        "a fragment, not a page"
    );
}

#[tokio::test]
async fn cross_site_and_tokenless_posts_are_refused() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let form = [
        ("cloud", "massedcompute"),
        ("region", "us-central-1"),
        ("type", "A6000"),
        ("name", "evil"),
    ];
    let p = b.post_raw("/launch", &form, &[]).await.expect(403);
    assert!(p.html.contains("CSRF token"));
    let mut with_token: Vec<(&str, &str)> = form.to_vec();
    with_token.push(("csrf", "0000"));
    b.post_raw("/launch", &with_token, &[]).await.expect(403);
    b.get("/instances").await;
    let token = b.csrf.clone().unwrap();
    let mut good: Vec<(&str, &str)> = form.to_vec();
    good.push(("csrf", &token));
    let p = b
        .post_raw("/launch", &good, &[("origin", "http://evil.example")])
        .await
        .expect(403);
    assert!(p.html.contains("cross-site request refused"));
    b.post_raw("/launch", &good, &[("sec-fetch-site", "cross-site")])
        .await
        .expect(403);
    b.post_raw(
        "/login",
        &[("api_key", ADMIN_KEY)],
        &[("origin", "http://evil.example")],
    )
    .await
    .expect(403);
    // Another session's token is not this one's.
    let mut other = Browser::signed_in(&s, ADMIN_KEY).await;
    other.get("/instances").await;
    assert_ne!(other.csrf, b.csrf);
    let stolen = other.csrf.clone().unwrap();
    let mut crossed: Vec<(&str, &str)> = form.to_vec();
    crossed.push(("csrf", &stolen));
    b.post_raw("/launch", &crossed, &[]).await.expect(403);
    assert!(
        s.admin().get("/v1/instances").await.expect(200)["instances"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // A body that is not a form is a page saying so, never a 500.
    let res = b
        .http
        .post(format!("{}/launch", s.base))
        .header(
            "cookie",
            format!("parasol_session={}", b.cookie.clone().unwrap()),
        )
        .header("x-csrf-token", &token)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("the form could not be read"));
    // The same page's own token, sent as htmx sends it, works.
    let host = s.base.trim_start_matches("http://").to_string();
    let origin = format!("http://{host}");
    b.post_raw(
        "/launch",
        &form,
        &[("x-csrf-token", &token), ("origin", &origin)],
    )
    .await
    .redirects_to("/instances/");
}

#[tokio::test]
async fn another_accounts_objects_are_not_found_and_admin_pages_are_admin_only() {
    let s = Server::start(Opts::default());
    let mut admin = Browser::signed_in(&s, ADMIN_KEY).await;
    let id = launch(&mut admin, "mine").await;
    let key = s.new_account("bob");
    let mut bob = Browser::signed_in(&s, &key).await;
    let list = bob.get("/instances").await.expect(200);
    assert!(!list.html.contains(&id));
    assert!(list.html.contains("bob"));
    assert!(
        !list.html.contains("href=\"/system\""),
        "no admin link for a non-admin"
    );
    let p = bob.get(&format!("/instances/{id}")).await.expect(404);
    assert!(p.html.contains("instance not found"));
    bob.post(&format!("/instances/{id}/delete"), &[])
        .await
        .expect(404);
    bob.post(&format!("/instances/{id}/rename"), &[("name", "stolen")])
        .await
        .expect(404);
    bob.get("/instances/not-a-uuid").await.expect(404);
    bob.get("/system").await.expect(403);
    let info = s
        .admin()
        .get(&format!("/v1/instances/{id}/info"))
        .await
        .expect(200);
    assert_eq!(info["name"], "mine");
    assert_eq!(info["status"].as_str().map(|s| s != "deleting"), Some(true));
}

#[tokio::test]
async fn instance_rename_restart_delete_and_bulk_delete() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let a = launch(&mut b, "a").await;
    let c = s.admin();
    c.wait_status(&a, "active").await;
    b.post(&format!("/instances/{a}/rename"), &[("name", "renamed")])
        .await
        .redirects_to(&format!("/instances/{a}"));
    assert_eq!(
        c.get(&format!("/v1/instances/{a}/info")).await.expect(200)["name"],
        "renamed"
    );
    let bad = b
        .post(&format!("/instances/{a}/rename"), &[("name", "")])
        .await
        .expect(400);
    assert!(bad.field_error("name").is_some());
    b.post(&format!("/instances/{a}/restart"), &[])
        .await
        .redirects_to(&format!("/instances/{a}"));
    let x = launch(&mut b, "x").await;
    let y = launch(&mut b, "y").await;
    let list = b.get("/instances").await.expect(200);
    assert_eq!(list.rows("instances"), 3);
    let rows = b.get("/instances/rows").await.expect(200);
    assert!(rows.html.starts_with("<tbody id=\"rows\""));
    // Refreshed by the stream's instance events, with a slow fallback poll.
    assert!(rows.html.contains("hx-trigger=\"live, every 30s\""));
    assert!(rows.html.contains("data-live=\"instance.\""));
    let none = b.post("/instances/delete", &[]).await.expect(400);
    assert!(none.html.contains("select the instances to delete first"));
    b.post(
        "/instances/delete",
        &[("ids", x.as_str()), ("ids", y.as_str())],
    )
    .await
    .redirects_to("/instances");
    c.wait_gone(&x).await;
    c.wait_gone(&y).await;
    b.post(&format!("/instances/{a}/delete"), &[])
        .await
        .redirects_to("/instances");
    c.wait_gone(&a).await;
    let after = b.get("/instances").await.expect(200);
    assert!(after.html.contains("No instances yet"));
}

#[tokio::test]
async fn the_instances_page_is_paginated() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    for n in 0..53 {
        c.create_instance(&format!("n{n}")).await;
    }
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let p1 = b.get("/instances").await.expect(200);
    assert_eq!(p1.rows("instances"), 50);
    assert!(p1.html.contains("Page 1 of 2"));
    assert!(p1.html.contains("data-name=\"n52\""), "newest first");
    let p2 = b.get("/instances?page=2").await.expect(200);
    assert_eq!(p2.rows("instances"), 3);
    assert!(p2.html.contains("data-name=\"n0\""));
    assert!(
        p2.html.contains("/instances/rows?page=2"),
        "the live refresh keeps its page"
    );
}

#[tokio::test]
async fn keys_volumes_and_templates_forms() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let bad = b
        .post("/keys", &[("name", "laptop"), ("public_key", "not a key")])
        .await
        .expect(400);
    assert!(bad.field_error("public_key").is_some(), "{}", bad.html);
    b.post(
        "/keys",
        &[("name", "laptop"), ("public_key", &public_key())],
    )
    .await
    .redirects_to("/keys");
    b.post(
        "/keys",
        &[("name", "desktop"), ("public_key", &public_key())],
    )
    .await
    .redirects_to("/keys");
    let keys = s.admin().get("/v1/sshkeys").await.expect(200)["ssh_keys"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(keys.len(), 2);
    let second = keys.iter().find(|k| k["name"] == "desktop").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let page = b.get("/keys").await.expect(200);
    assert_eq!(page.rows("keys"), 2);
    b.post(&format!("/keys/{second}/default"), &[])
        .await
        .redirects_to("/keys");
    let launch_form = b
        .get("/launch?cloud=massedcompute&region=us-central-1&type=A6000")
        .await
        .expect(200);
    assert!(
        launch_form
            .html
            .contains(&format!("value=\"{second}\" selected")),
        "the default key is preselected"
    );
    let refused = b
        .post(&format!("/keys/{second}/delete"), &[])
        .await
        .expect(409);
    assert!(refused.html.contains("make another key the default"));
    let first = keys.iter().find(|k| k["name"] == "laptop").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.post(&format!("/keys/{first}/delete"), &[])
        .await
        .redirects_to("/keys");
    assert_eq!(b.get("/keys").await.rows("keys"), 1);

    let bad = b
        .post(
            "/volumes",
            &[
                ("name", "data"),
                ("place", "massedcompute/us-central-1"),
                ("size_in_gb", "big"),
            ],
        )
        .await
        .expect(400);
    assert!(bad.field_error("size_in_gb").is_some());
    let types = s.admin().get("/v1/volumes/types").await.expect(200);
    let t = &types["volume_types"][0];
    let place = format!(
        "{}/{}",
        t["cloud"].as_str().unwrap(),
        t["region"].as_str().unwrap()
    );
    b.post(
        "/volumes",
        &[("name", "data"), ("place", &place), ("size_in_gb", "100")],
    )
    .await
    .redirects_to("/volumes");
    let vols = b.get("/volumes").await.expect(200);
    assert_eq!(vols.rows("volumes"), 1);
    assert!(vols.html.contains("no instance"));
    let vid = s.admin().get("/v1/volumes").await.expect(200)["volumes"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.post(&format!("/volumes/{vid}/delete"), &[])
        .await
        .redirects_to("/volumes");
    assert!(b.get("/volumes").await.html.contains("No volumes yet"));

    let bad = b.post("/templates", &[("name", "")]).await.expect(400);
    assert!(bad.field_error("name").is_some());
    b.post(
        "/templates",
        &[
            ("name", "jupyter"),
            ("docker_image", "jupyter/base-notebook"),
            ("envs", "TOKEN=x"),
        ],
    )
    .await
    .redirects_to("/templates");
    let tpl = s.admin().get("/v1/templates").await.expect(200)["templates"][0].clone();
    assert_eq!(
        tpl["launch_configuration"]["docker_configuration"]["image"],
        "jupyter/base-notebook"
    );
    let tid = tpl["id"].as_str().unwrap().to_string();
    assert!(
        b.get("/launch?cloud=massedcompute&region=us-central-1&type=A6000")
            .await
            .html
            .contains(&tid),
        "own templates on the launch form"
    );
    b.post(&format!("/templates/{tid}/delete"), &[])
        .await
        .redirects_to("/templates");
    assert!(b
        .get("/templates")
        .await
        .html
        .contains("No templates of your own yet"));
}

#[tokio::test]
async fn a_cluster_launches_from_the_console_and_is_deleted() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let bad = b
        .post(
            "/clusters/new",
            &[
                ("name", "c"),
                ("cloud", "denvr"),
                ("region", "houston-usa-1"),
                ("cluster_type", "H100_sxm5x8"),
                ("num_instances", "two"),
            ],
        )
        .await
        .expect(400);
    assert!(bad.field_error("num_instances").is_some());
    let p = b
        .post(
            "/clusters/new",
            &[
                ("name", "train"),
                ("cloud", "denvr"),
                ("region", "houston-usa-1"),
                ("cluster_type", "H100_sxm5x8"),
                ("num_instances", "2"),
            ],
        )
        .await;
    let id = id_from(&p.redirects_to("/clusters/"));
    let page = wait_page(
        &mut b,
        &format!("/clusters/{id}"),
        "st-active\">active</span></div>",
    )
    .await;
    assert_eq!(
        page.html.matches("href=\"/instances/").count(),
        2,
        "both nodes listed"
    );
    assert_eq!(b.get("/clusters").await.rows("clusters"), 1);
    b.post(&format!("/clusters/{id}/delete"), &[])
        .await
        .redirects_to("/clusters");
    let c = s.admin();
    let deadline = Instant::now() + Duration::from_secs(60);
    while c.get(&format!("/v1/clusters/{id}/info")).await.status != 404 {
        assert!(Instant::now() < deadline, "cluster never deleted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn spend_shows_cost_per_day_by_cloud_and_events_show_alerts() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let p = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "us-central-1"),
                ("type", "A6000"),
                ("name", "spender"),
                ("alert_spend", "0.50"),
            ],
        )
        .await;
    let id = id_from(&p.redirects_to("/instances/"));
    let c = s.admin();
    let info = c.wait_status(&id, "active").await;
    let price = info["hourly_price"].as_i64().unwrap();
    c.post("/admin/clock/advance", json!({"seconds": 2 * 3600}))
        .await
        .expect(200);
    let spend = b.get("/spend").await.expect(200);
    assert!(spend.html.contains("<svg"), "a chart");
    assert!(spend.html.contains("<rect"), "with bars");
    assert!(spend.html.contains("<td>massedcompute</td>"));
    let total = format!("${}.{:02}", 2 * price / 100, 2 * price % 100);
    assert!(
        spend.html.contains(&total),
        "30-day total {total} in {}",
        spend.html
    );
    wait_page(&mut b, "/events", "alert.spend_threshold").await;
    let page = b.get(&format!("/instances/{id}")).await.expect(200);
    assert!(
        page.html.contains("alert.spend_threshold"),
        "the alert is on the instance's timeline"
    );
}

#[tokio::test]
async fn wrong_keys_at_the_sign_in_form_count_against_the_failed_authentication_limit() {
    let s = Server::start(Opts::default().args(&[
        "--failed-auth-rate",
        "0.01",
        "--failed-auth-burst",
        "3",
    ]));
    let mut b = Browser::new(&s);
    for _ in 0..3 {
        b.sign_in("psl_guess").await.expect(401);
    }
    let p = b.sign_in("psl_guess").await.expect(429);
    assert!(p.html.contains("Too many wrong keys"), "{}", p.html);
    // The right key learns nothing from this address either, on the form
    // and on the API alike.
    b.sign_in(ADMIN_KEY).await.expect(429);
    assert!(b.cookie.is_none());
    s.admin()
        .get("/v1/instances")
        .await
        .expect_error(429, "rate_limited");
}

#[tokio::test]
async fn api_keys_are_made_shown_once_and_revoked_which_ends_their_sessions() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let page = b.get("/api-keys").await.expect(200);
    assert_eq!(page.rows("api-keys"), 1);
    assert!(!page.html.contains(ADMIN_KEY));
    let bad = b.post("/api-keys", &[("name", " ")]).await.expect(400);
    assert!(bad.field_error("name").is_some(), "{}", bad.html);

    let made = b.post("/api-keys", &[("name", "ci")]).await.expect(200);
    let key = made
        .html
        .split("data-api-key>")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .unwrap_or_else(|| panic!("no key shown: {}", made.html))
        .to_string();
    assert!(key.starts_with("psl_"), "{key}");
    s.client(&key).get("/v1/account").await.expect(200);
    let page = b.get("/api-keys").await.expect(200);
    assert_eq!(page.rows("api-keys"), 2);
    assert!(!page.html.contains(&key), "shown once only");

    // Revoking the key this session signed in with ends the session.
    let listed = s.client(&key).get("/v1/account/keys").await.expect(200);
    let ids: Vec<String> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    b.post(&format!("/api-keys/{}/revoke", ids[0]), &[])
        .await
        .redirects_to("/api-keys");
    b.get("/api-keys").await.redirects_to("/login");
    s.admin()
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");

    let mut b = Browser::signed_in(&s, &key).await;
    let page = b.get("/api-keys").await.expect(200);
    assert!(page.html.contains("revoked "), "{}", page.html);
    let refused = b
        .post(&format!("/api-keys/{}/revoke", ids[1]), &[])
        .await
        .expect(409);
    assert!(
        refused.html.contains("last live API key"),
        "{}",
        refused.html
    );
    let other = s.new_account("other");
    let theirs = s.client(&other).get("/v1/account/keys").await.expect(200)["keys"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.post(&format!("/api-keys/{theirs}/revoke"), &[])
        .await
        .expect(404);
    s.client(&other).get("/v1/account").await.expect(200);
}

/// The text of the element carrying `attr` (`data-secret`, …).
fn marked(page: &Page, attr: &str) -> Option<String> {
    page.html
        .split(&format!("{attr}>"))
        .nth(1)
        .and_then(|t| t.split('<').next())
        .map(str::to_string)
}

/// Enables or disables a webhook with its button, and checks the API agrees.
async fn set_enabled(b: &mut Browser, s: &Server, id: &str, on: bool) {
    b.post(
        &format!("/webhooks/{id}/update"),
        &[("enabled", &on.to_string())],
    )
    .await
    .redirects_to("/webhooks");
    let w = s
        .admin()
        .get(&format!("/v1/webhooks/{id}"))
        .await
        .expect(200);
    assert_eq!(w["enabled"], on);
}

#[tokio::test]
async fn webhooks_show_their_secret_once_are_disabled_and_show_their_deliveries() {
    use crate::webhooks::{assert_all_verified, Receiver, LOCAL};
    let rx = Receiver::start();
    let s = Server::start(Opts::default().args(LOCAL));
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let empty = b.get("/webhooks").await.expect(200);
    assert!(empty.html.contains("No webhooks yet"), "{}", empty.html);

    let made = b
        .post(
            "/webhooks",
            &[
                ("url", &rx.url("/console")),
                ("events", "instance.*, ping"),
                ("description", "ops pager"),
            ],
        )
        .await
        .expect(200);
    let secret =
        marked(&made, "data-secret").unwrap_or_else(|| panic!("no secret shown: {}", made.html));
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert!(made.html.contains("data-copy=\"webhook-secret\""));
    assert_eq!(made.rows("webhooks"), 1);
    rx.set("/console", json!({"secrets": [secret]})).await;
    let listed = s.admin().get("/v1/webhooks").await.expect(200);
    let hook = &listed["webhooks"][0];
    assert_eq!(hook["events"], json!(["instance.*", "ping"]));
    assert_eq!(hook["description"], "ops pager");
    assert_eq!(hook["enabled"], true);
    let id = hook["id"].as_str().unwrap().to_string();

    // Shown once: neither the list nor the endpoint's page has it again.
    let list = b.get("/webhooks").await.expect(200);
    assert_eq!(list.rows("webhooks"), 1);
    assert!(list.html.contains("ops pager") && list.html.contains("instance.*, ping"));
    assert!(!list.html.contains(&secret), "shown once only");
    let one = b.get(&format!("/webhooks/{id}")).await.expect(200);
    assert!(!one.html.contains(&secret), "shown once only");
    assert!(one.html.contains("No attempts yet"), "{}", one.html);

    // A test ping, signed with the secret the page showed, is listed with
    // the receiver's answer.
    b.post(&format!("/webhooks/{id}/test"), &[])
        .await
        .redirects_to(&format!("/webhooks/{id}"));
    let got = rx.wait("/console", "the ping", |r| !r.is_empty()).await;
    assert_all_verified(&got);
    let sent: serde_json::Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent["type"], "ping");
    let part = wait_page(
        &mut b,
        &format!("/webhooks/{id}/deliveries"),
        "data-type=\"ping\"",
    )
    .await;
    assert_eq!(part.rows("deliveries"), 1);
    assert!(
        part.html.contains(sent["id"].as_str().unwrap()),
        "{}",
        part.html
    );
    assert!(
        part.html
            .contains("<span class=\"st st-active\">200</span>"),
        "{}",
        part.html
    );
    let one = b.get(&format!("/webhooks/{id}")).await.expect(200);
    assert_eq!(one.rows("deliveries"), 1);

    // A receiver that answers 503: its attempt shows the status as a failure.
    rx.set("/down", json!({"status": 503})).await;
    b.post("/webhooks", &[("url", &rx.url("/down")), ("events", "*")])
        .await
        .expect(200);
    let down = s.admin().get("/v1/webhooks").await.expect(200)["webhooks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["url"].as_str().unwrap().ends_with("/down"))
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.post(&format!("/webhooks/{down}/test"), &[])
        .await
        .redirects_to("/webhooks/");
    let part = wait_page(&mut b, &format!("/webhooks/{down}/deliveries"), "503").await;
    assert!(
        part.html.contains("<span class=\"st st-error\">503</span>"),
        "{}",
        part.html
    );

    // A rotation shows the new secret once; the old one signs beside it.
    let rotated = b
        .post(&format!("/webhooks/{id}/rotate-secret"), &[])
        .await
        .expect(200);
    let new = marked(&rotated, "data-secret").expect("the new secret");
    assert!(new.starts_with("whsec_") && new != secret);
    let one = b.get(&format!("/webhooks/{id}")).await.expect(200);
    assert!(!one.html.contains(&new) && one.html.contains("also signs until"));
    // The page's new secret is the one that signs now.
    rx.set("/console", json!({"secrets": [new]})).await;
    b.post(&format!("/webhooks/{id}/test"), &[])
        .await
        .redirects_to(&format!("/webhooks/{id}"));
    assert_all_verified(
        &rx.wait("/console", "the second ping", |r| r.len() >= 2)
            .await[1..],
    );

    // Disabled: the API says so, the page offers Enable, and a test is
    // refused with the API's message.
    set_enabled(&mut b, &s, &id, false).await;
    let list = b.get("/webhooks").await.expect(200);
    assert!(list.html.contains(">disabled<") && list.html.contains(">Enable<"));
    let refused = b
        .post(&format!("/webhooks/{id}/test"), &[])
        .await
        .expect(409);
    assert!(
        refused.html.contains("the webhook is disabled"),
        "{}",
        refused.html
    );
    let bad = b
        .post(&format!("/webhooks/{id}/update"), &[("enabled", "maybe")])
        .await
        .expect(400);
    assert!(
        bad.html.contains("enabled must be true or false"),
        "{}",
        bad.html
    );
    set_enabled(&mut b, &s, &id, true).await;

    // Another account sees none of it.
    let mut bob = Browser::signed_in(&s, &s.new_account("bob")).await;
    assert!(!bob.get("/webhooks").await.expect(200).html.contains(&id));
    bob.get(&format!("/webhooks/{id}")).await.expect(404);
    bob.get(&format!("/webhooks/{id}/deliveries"))
        .await
        .expect(404);
    bob.post(&format!("/webhooks/{id}/delete"), &[])
        .await
        .expect(404);
    bob.post(&format!("/webhooks/{id}/rotate-secret"), &[])
        .await
        .expect(404);

    b.post(&format!("/webhooks/{id}/delete"), &[])
        .await
        .redirects_to("/webhooks");
    assert_eq!(b.get("/webhooks").await.expect(200).rows("webhooks"), 1);
    b.get(&format!("/webhooks/{id}")).await.expect(404);
    b.get("/webhooks/not-a-uuid").await.expect(404);
}

#[tokio::test]
async fn webhook_form_errors_show_beside_their_fields_and_cross_site_posts_are_refused() {
    let s = Server::start(Opts::default());
    let key = s.new_account("carol");
    let mut b = Browser::signed_in(&s, &key).await;
    for (url, field, why) in [
        ("http://example.com/hook", "url", "https"),
        ("not a url", "url", "not a valid URL"),
        ("https://10.1.2.3/hook", "url", "private"),
    ] {
        let p = b
            .post("/webhooks", &[("url", url), ("events", "*")])
            .await
            .expect(400);
        let shown = p
            .field_error(field)
            .unwrap_or_else(|| panic!("{url}: no error by {field}: {}", p.html));
        assert!(shown.contains(why), "{url}: {shown}");
        assert!(
            p.html.contains("value=\"*\""),
            "the form keeps what was typed"
        );
    }
    let p = b
        .post(
            "/webhooks",
            &[
                ("url", "https://203.0.113.9/h"),
                ("events", "instance.activ"),
            ],
        )
        .await
        .expect(400);
    assert!(
        p.field_error("events")
            .unwrap()
            .contains("unknown event type"),
        "{}",
        p.html
    );
    assert!(p.html.contains("value=\"https://203.0.113.9/h\""));
    let p = b
        .post(
            "/webhooks",
            &[("url", "https://203.0.113.9/h"), ("events", " , ")],
        )
        .await
        .expect(400);
    assert!(p.field_error("events").unwrap().contains("at least one"));
    // Not an admin: no checkbox, and a forged one gets the API's refusal.
    assert!(!p.html.contains("name=\"all_accounts\""));
    let p = b
        .post(
            "/webhooks",
            &[
                ("url", "https://203.0.113.9/h"),
                ("events", "*"),
                ("all_accounts", "true"),
            ],
        )
        .await
        .expect(403);
    assert!(
        p.html.contains("all_accounts: true needs an admin key"),
        "{}",
        p.html
    );
    let none = s.client(&key).get("/v1/webhooks").await.expect(200);
    assert_eq!(none["webhooks"], json!([]));

    // A cross-site or tokenless create makes nothing.
    let form = [("url", "https://203.0.113.9/h"), ("events", "*")];
    let p = b.post_raw("/webhooks", &form, &[]).await.expect(403);
    assert!(p.html.contains("CSRF token"));
    b.get("/webhooks").await;
    let token = b.csrf.clone().unwrap();
    let mut good: Vec<(&str, &str)> = form.to_vec();
    good.push(("csrf", &token));
    let p = b
        .post_raw("/webhooks", &good, &[("origin", "http://evil.example")])
        .await
        .expect(403);
    assert!(p.html.contains("cross-site request refused"));
    let mut other = Browser::signed_in(&s, &key).await;
    other.get("/webhooks").await;
    let mut crossed: Vec<(&str, &str)> = form.to_vec();
    let stolen = other.csrf.clone().unwrap();
    crossed.push(("csrf", &stolen));
    b.post_raw("/webhooks", &crossed, &[]).await.expect(403);
    let none = s.client(&key).get("/v1/webhooks").await.expect(200);
    assert_eq!(none["webhooks"], json!([]));
    // The page's own token makes it, and a tokenless delete is refused.
    let made = b.post_raw("/webhooks", &good, &[]).await.expect(200);
    assert!(marked(&made, "data-secret").is_some());
    let id = s.client(&key).get("/v1/webhooks").await.expect(200)["webhooks"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    b.post_raw(&format!("/webhooks/{id}/delete"), &[], &[])
        .await
        .expect(403);
    s.client(&key)
        .get(&format!("/v1/webhooks/{id}"))
        .await
        .expect(200);
}

#[tokio::test]
async fn a_viewer_session_reads_every_page_and_is_refused_every_post_route_of_the_table() {
    use parasol::http::roles::needed;
    use parasol_api::Role;
    let s = Server::start(Opts::default());
    let made = s
        .admin()
        .post(
            "/v1/account/keys/create",
            json!({"name": "viewer", "role": "viewer"}),
        )
        .await
        .expect(200);
    let mut b = Browser::signed_in(&s, made["api_key"].as_str().unwrap()).await;
    b.get("/instances").await.expect(200);
    let mut walked = 0;
    for r in parasol::console::ROUTES
        .iter()
        .filter(|r| r.method == "post")
    {
        let need = needed(&axum::http::Method::POST, r.path);
        let path = concrete(r.path);
        match r.path {
            // Signing in needs no session; signing out only a session.
            "/login" => continue,
            // Open to every signed-in role: signing out, switching
            // account, minting a personal key (capped by the role).
            "/logout" | "/account/switch" | "/api-keys/personal" => {
                assert_eq!(need, Role::Viewer);
                continue;
            }
            _ => {}
        }
        assert!(need > Role::Viewer, "{} is open to viewers", r.path);
        let p = b.post(&path, &[("name", "x")]).await.expect(403);
        assert!(
            p.html.contains(&format!("needs the {need} role"))
                && p.html.contains("has the viewer role"),
            "{path}: {}",
            p.html
        );
        walked += 1;
    }
    assert!(walked >= 20, "only {walked} POST routes in the table");
    // The refused forms made nothing.
    assert_eq!(
        s.admin().get("/v1/instances").await.expect(200)["instances"],
        json!([])
    );
}

/// Asserts the console's security headers on one answer.
fn assert_security_headers(what: &str, h: &reqwest::header::HeaderMap, tls: bool) {
    let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
    let csp = get("content-security-policy");
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline")
            && !csp.contains("unsafe-eval"),
        "{what}: CSP {csp:?}"
    );
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("referrer-policy"), "same-origin", "{what}");
    assert_eq!(
        h.contains_key("strict-transport-security"),
        tls,
        "{what}: HSTS exactly under TLS"
    );
}

/// Inline script (a `<script>` without `src`, an `on…=` handler, a
/// `javascript:` link) or inline style in a page the CSP would break.
fn inline_code(html: &str) -> Option<String> {
    let lower = html.to_ascii_lowercase();
    for (at, _) in lower.match_indices("<script") {
        let tag = &lower[at..at + lower[at..].find('>').unwrap()];
        if !tag.contains(" src=") {
            return Some(tag.to_string());
        }
    }
    for bad in [
        " onsubmit=",
        " onclick=",
        " onchange=",
        " onload=",
        "javascript:",
        " style=",
        "<style",
    ] {
        if let Some(at) = lower.find(bad) {
            return Some(lower[at.saturating_sub(60)..(at + 60).min(lower.len())].to_string());
        }
    }
    None
}

#[tokio::test]
async fn every_console_route_of_the_table_sends_the_security_headers_and_no_inline_code() {
    let s = Server::start(Opts::default());
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    // Real objects, so the detail pages render rather than 404.
    let instance = launch(&mut b, "headers").await;
    let mut checked = 0;
    for r in parasol::console::ROUTES {
        // Instance pages render; the other objects' pages are 404s.
        let path = r.path.replace("{id}", &instance);
        let url = format!("{}{path}", s.base);
        let csrf = b.csrf.clone().unwrap_or_default();
        for signed_in in [true, false] {
            let req = match r.method {
                "get" => b.http.get(&url),
                _ => b
                    .http
                    .post(&url)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("csrf={csrf}")),
            };
            let req = match (&b.cookie, signed_in) {
                (Some(c), true) => req.header("cookie", format!("parasol_session={c}")),
                _ => req,
            };
            let res = req.send().await.unwrap();
            let what = format!(
                "{} {path} (signed in: {signed_in}) {}",
                r.method,
                res.status()
            );
            assert_security_headers(&what, res.headers(), false);
            let html = res
                .headers()
                .get("content-type")
                .is_some_and(|v| v.to_str().unwrap().starts_with("text/html"));
            // The event stream never ends; its headers are what counts.
            if html && r.path != "/events/stream" {
                let body = res.text().await.unwrap();
                assert_eq!(inline_code(&body), None, "{what}");
            }
            checked += 1;
        }
        // A POST may have signed out or deleted; sign in again for the next.
        if r.method == "post" {
            b = Browser::signed_in(&s, ADMIN_KEY).await;
            b.get("/instances").await;
        }
    }
    assert!(checked >= 90, "only {checked} answers checked");
    // The API is JSON for programs: it does not carry the page headers.
    let api = reqwest::get(format!("{}/v1/instances", s.base))
        .await
        .unwrap();
    assert!(!api.headers().contains_key("content-security-policy"));
}

/// The `points` of every chart line in `svg` (one per GPU).
fn chart_lines(html: &str, chart: &str) -> Vec<Vec<(f64, f64)>> {
    let start = html
        .find(&format!("id=\"{chart}\""))
        .unwrap_or_else(|| panic!("no {chart} in {html}"));
    let svg = &html[start..start + html[start..].find("</svg>").unwrap()];
    svg.split("points=\"")
        .skip(1)
        .map(|p| {
            p[..p.find('"').unwrap()]
                .split(' ')
                .map(|xy| {
                    let (x, y) = xy.split_once(',').unwrap();
                    (x.parse().unwrap(), y.parse().unwrap())
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn the_instance_page_charts_gpu_use_and_shows_health_and_the_list_has_both() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let mut b = Browser::signed_in(&s, ADMIN_KEY).await;
    let c = s.admin();
    let id = c.create_instance("charted").await;
    let info = c.wait_status(&id, "active").await;
    let gpus = info["configuration"]["num_gpus"].as_u64().unwrap() as usize;

    // Before the first report: the badge is unknown, no chart yet.
    c.post(
        "/admin/sim/agent",
        json!({"instance_id": id, "reporting": false}),
    )
    .await
    .expect(200);
    let page = b.get(&format!("/instances/{id}")).await.expect(200);
    if c.get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect(200)["agent"]
        .is_null()
    {
        assert!(page.html.contains("id=\"gpu-none\""), "{}", page.html);
        assert!(page.html.contains("hb hb-unknown"), "{}", page.html);
    }

    // Three reports: 20 %, 60 %, 100 %.
    let before = c
        .get(&format!("/v1/instances/{id}/metrics"))
        .await
        .expect(200)["samples"]
        .as_array()
        .unwrap()
        .len();
    for (n, util) in [20, 60, 100].into_iter().enumerate() {
        c.post(
            "/admin/sim/agent",
            json!({"instance_id": id, "gpu_utilization_percent": util, "reporting": true}),
        )
        .await
        .expect(200);
        advance_clock(&s, 15).await;
        wait_for_samples(&s, &id, before + n + 1).await;
    }
    let page = b.get(&format!("/instances/{id}")).await.expect(200);
    let util = chart_lines(&page.html, "gpu-util-chart");
    assert_eq!(util.len(), gpus, "one line per GPU");
    let ys: Vec<f64> = util[0].iter().rev().take(3).map(|p| p.1).collect();
    // Newest first: 100 % is highest (smallest y), then 60 %, then 20 %.
    assert!(ys[0] < ys[1] && ys[1] < ys[2], "{ys:?}");
    let xs: Vec<f64> = util[0].iter().map(|p| p.0).collect();
    assert!(
        xs.windows(2).all(|w| w[0] < w[1]),
        "time runs right: {xs:?}"
    );
    // The y axis: 0 % at the bottom (y 176), 100 % at the top (y 8).
    assert!((ys[0] - 8.0).abs() < 0.2, "{ys:?}");
    assert_eq!(chart_lines(&page.html, "gpu-mem-chart").len(), gpus);
    assert!(
        page.html.contains("id=\"gpu-util-now\">100%"),
        "{}",
        page.html
    );
    assert!(page.html.contains("hb hb-healthy"));
    for check in ["heartbeat", "gpu_count", "xid", "ecc"] {
        assert!(
            page.html.contains(&format!("data-check=\"{check}\"")),
            "{check}: {}",
            page.html
        );
    }
    // The part refreshes itself from the stream and at the report interval.
    let part = b.get(&format!("/instances/{id}/gpu")).await.expect(200);
    assert!(part.html.starts_with("<div id=\"gpu\""), "{}", part.html);
    assert!(part.html.contains("data-live=\"instance.\""));
    assert!(part.html.contains(&format!("data-live-id=\"{id}\"")));
    assert!(part.html.contains("hx-trigger=\"live, every 15s\""));

    // The list: the latest utilisation and the badge.
    let list = b.get("/instances").await.expect(200);
    let row = &list.html[list.html.find(&format!("data-id=\"{id}\"")).unwrap()..];
    let row = &row[..row.find("</tr>").unwrap()];
    assert!(
        row.contains("<td class=\"num gpu-util\">100%</td>"),
        "{row}"
    );
    assert!(row.contains("hb hb-healthy"), "{row}");

    // A fatal Xid: failed, on the page and in the list, naming the check.
    c.post(
        "/admin/sim/agent",
        json!({"instance_id": id, "xid": 79, "reporting": true}),
    )
    .await
    .expect(200);
    advance_clock(&s, 15).await;
    wait_for_samples(&s, &id, before + 4).await;
    let part = b.get(&format!("/instances/{id}/gpu")).await.expect(200);
    assert!(
        part.html
            .contains("<h2>Health <span class=\"hb hb-failed\""),
        "{}",
        part.html
    );
    let xid_row = &part.html[part.html.find("data-check=\"xid\"").unwrap()..];
    let xid_row = &xid_row[..xid_row.find("</tr>").unwrap()];
    assert!(
        xid_row.contains("hb-failed") && xid_row.contains("79"),
        "{xid_row}"
    );
    let rows = b.get("/instances/rows").await.expect(200);
    assert!(rows.html.contains("hb hb-failed"), "{}", rows.html);
}
