//! Budgets enforced at admission, the monthly limit and its alert on the
//! test clock, the usage ledger, and the admin accounts API and CLI.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};
use serde_json::{json, Value};

use crate::harness::{binary, default_create, Client, Opts, Server};

/// A webhook receiver on loopback that records every body it gets.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.ok() });
    (format!("http://{addr}/hook"), got)
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Moves the test clock; answers the server's new now.
async fn advance(c: &Client, seconds: i64) -> DateTime<Utc> {
    let r = c
        .post("/admin/clock/advance", json!({"seconds": seconds}))
        .await
        .expect(200);
    r["now"].as_str().unwrap().parse().unwrap()
}

/// Moves the test clock to early on the 2nd of next month, so a test's
/// hours never straddle a month boundary whenever it runs.
async fn to_next_month(c: &Client) {
    let now = Utc::now();
    let (y, m) = if now.month() == 12 {
        (now.year() + 1, 1)
    } else {
        (now.year(), now.month() + 1)
    };
    let target = Utc.with_ymd_and_hms(y, m, 2, 0, 0, 0).unwrap();
    advance(c, (target - now).num_seconds()).await;
}

fn cents(dollars: &str) -> i64 {
    let (w, f) = dollars.split_once('.').unwrap();
    w.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap()
}

fn dollars(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// A new account made through the admin API: its id and a client with
/// its key.
async fn new_account(s: &Server, name: &str) -> (String, Client) {
    let r = s
        .admin()
        .post(
            "/v1/admin/accounts/create",
            json!({"name": name, "admin": false}),
        )
        .await
        .expect(200);
    (
        r["id"].as_str().unwrap().to_string(),
        s.client(r["api_key"].as_str().unwrap()),
    )
}

async fn set_budget(admin: &Client, id: &str, budget: Value) -> Value {
    admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({ "budget": budget }),
        )
        .await
        .expect(200)
}

async fn account_row(admin: &Client, id: &str) -> Value {
    let r = admin.get("/v1/admin/accounts").await.expect(200);
    r["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The default type's price in cents per hour and its GPUs.
async fn price_and_gpus(c: &Client) -> (i64, i64) {
    let id = c.create_instance("probe").await;
    let info = c.wait_status(&id, "active").await;
    let p = info["hourly_price"].as_i64().unwrap();
    let g = info["configuration"]["num_gpus"].as_i64().unwrap();
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    (p, g)
}

#[tokio::test]
async fn max_hourly_spend_and_max_gpus_refuse_the_create_that_would_exceed_them() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let (id, c) = new_account(&s, "team-a").await;
    let (p, g) = price_and_gpus(&c).await;

    // Room for one instance's $/h, not two.
    set_budget(&admin, &id, json!({"max_hourly_spend": dollars(2 * p - 1)})).await;
    let first = c.create_instance("one").await;
    let e = c
        .post("/v1/instances/create", default_create("two"))
        .await
        .expect_error(409, "budget_exceeded");
    assert_eq!(
        e["message"],
        format!(
            "max_hourly_spend ${} would be exceeded: ${}/h live + ${}/h requested",
            dollars(2 * p - 1),
            dollars(p),
            dollars(p)
        )
    );
    // Room for one instance's GPUs.
    set_budget(&admin, &id, json!({"max_gpus": g})).await;
    let e = c
        .post("/v1/instances/create", default_create("two"))
        .await
        .expect_error(409, "budget_exceeded");
    assert_eq!(
        e["message"],
        format!("max_gpus {g} would be exceeded: {g} GPUs live + {g} requested")
    );
    // Launches are admitted by the same check.
    let e = c
        .post(
            "/v1/instances/launch",
            json!({"requirements": {"gpu_type": "A6000"}, "name": "by-launch"}),
        )
        .await;
    assert_eq!(e.status, 409, "{}", e.body);
    assert_eq!(e.body["error"]["code"], "budget_exceeded");

    // Freed once the first is gone; another account is not limited.
    c.post_empty(&format!("/v1/instances/{first}/delete"))
        .await
        .expect(200);
    c.wait_gone(&first).await;
    c.create_instance("two").await;
    admin.create_instance("admin-unlimited").await;
    let row = account_row(&admin, &id).await;
    assert_eq!(row["live_instances"], 1);
    assert_eq!(row["hourly_spend"], dollars(p));
    assert_eq!(row["budget"], json!({"max_gpus": g}));
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn bad_budgets_are_refused_naming_the_field() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let (id, c) = new_account(&s, "team-b").await;
    let path = format!("/v1/admin/accounts/{id}/update");
    for (budget, field) in [
        (json!({"monthly_limit": "-5.00"}), "budget.monthly_limit"),
        (json!({"monthly_limit": "lots"}), "budget.monthly_limit"),
        (
            json!({"max_hourly_spend": "1.234"}),
            "budget.max_hourly_spend",
        ),
        (json!({"max_gpus": -1}), "budget.max_gpus"),
        (
            json!({"monthly_limit": "10", "alert_at_percent": 0}),
            "budget.alert_at_percent",
        ),
        (
            json!({"monthly_limit": "10", "alert_at_percent": 101}),
            "budget.alert_at_percent",
        ),
        (json!({"on_exceed": "explode"}), "budget.on_exceed"),
    ] {
        let e = admin
            .post(&path, json!({ "budget": budget }))
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], field, "{budget}: {e}");
    }
    let e = admin
        .post(&path, json!({"budget": {"max_gpu": 3}}))
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("max_gpu"), "{e}");
    let e = admin
        .post(&path, json!({"nickname": "x"}))
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("nickname"), "{e}");
    // Not an admin: refused.
    c.get("/v1/admin/accounts")
        .await
        .expect_error(403, "forbidden");
    c.post(&path, json!({"budget": null}))
        .await
        .expect_error(403, "forbidden");
}

#[tokio::test]
async fn twenty_concurrent_creates_against_a_budget_that_fits_five_admit_exactly_five() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let (id, c) = new_account(&s, "burst").await;
    let (p, g) = price_and_gpus(&c).await;
    set_budget(
        &admin,
        &id,
        json!({"max_hourly_spend": dollars(5 * p + p / 2), "max_gpus": 5 * g + 100}),
    )
    .await;
    let tasks: Vec<_> = (0..20)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                c.post("/v1/instances/create", default_create(&format!("b{n}")))
                    .await
            })
        })
        .collect();
    let (mut ok, mut refused) = (0, 0);
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            409 => {
                assert_eq!(r.body["error"]["code"], "budget_exceeded", "{}", r.body);
                refused += 1;
            }
            other => panic!("unexpected {other}: {}", r.body),
        }
    }
    assert_eq!((ok, refused), (5, 15));
    let row = account_row(&admin, &id).await;
    assert_eq!(row["live_instances"], 5);
    assert_eq!(row["hourly_spend"], dollars(5 * p));
    s.assert_capacity_counts_agree().await;
    // The same on GPUs alone.
    set_budget(&admin, &id, json!({"max_gpus": 7 * g})).await;
    let tasks: Vec<_> = (0..10)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                c.post("/v1/instances/create", default_create(&format!("g{n}")))
                    .await
                    .status
                    .as_u16()
            })
        })
        .collect();
    let mut admitted = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 2);
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn clusters_are_admitted_against_the_budget_as_a_whole() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let (id, c) = new_account(&s, "clusters").await;
    let types = c.get("/v1/clusters/types").await.expect(200);
    let t = types["cluster_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["availability"]["available"] == true)
        .expect("a cluster type with availability")
        .clone();
    let region = t["availability"]["region"].clone();
    let nodes = t["num_instances"].as_i64().unwrap();
    let node_gpus = t["cluster_type"]["configuration"]["num_gpus"]
        .as_i64()
        .unwrap();
    set_budget(&admin, &id, json!({"max_gpus": nodes * node_gpus - 1})).await;
    let body = json!({"name": "c1", "cloud": t["cloud"], "region": region,
        "cluster_type": t["cluster_type"]["shade_instance_type"], "num_instances": nodes});
    let e = c
        .post("/v1/clusters/create", body.clone())
        .await
        .expect_error(409, "budget_exceeded");
    assert!(
        e["message"].as_str().unwrap().starts_with("max_gpus"),
        "{e}"
    );
    set_budget(&admin, &id, json!({"max_gpus": nodes * node_gpus})).await;
    c.post("/v1/clusters/create", body).await.expect(200);
    assert_eq!(account_row(&admin, &id).await["live_instances"], nodes);
    s.assert_capacity_counts_agree().await;
}

#[tokio::test]
async fn the_monthly_limit_reached_blocks_new_creates() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let admin = s.admin();
    to_next_month(&admin).await;
    let (id, c) = new_account(&s, "monthly").await;
    let a = c.create_instance("a").await;
    let info = c.wait_status(&a, "active").await;
    let p = info["hourly_price"].as_i64().unwrap();
    set_budget(&admin, &id, json!({"monthly_limit": dollars(p / 2)})).await;
    c.create_instance("before-the-limit").await;
    advance(&admin, 3600).await;
    let e = c
        .post("/v1/instances/create", default_create("b"))
        .await
        .expect_error(409, "budget_exceeded");
    let spent = account_row(&admin, &id).await["month_to_date_spend"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.starts_with(&format!("monthly limit ${} reached: $", dollars(p / 2))),
        "{msg}"
    );
    assert!(msg.ends_with(" spent this month"), "{msg}");
    assert!(cents(&spent) >= p, "{spent}");
    // `block` leaves the running ones alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        c.get(&format!("/v1/instances/{a}/info")).await.expect(200)["status"],
        "active"
    );
    // Raising the limit admits again.
    set_budget(&admin, &id, json!({"monthly_limit": dollars(100 * p)})).await;
    c.create_instance("b").await;
}

#[tokio::test]
async fn on_exceed_delete_deletes_the_running_instances_and_the_alert_fires_once() {
    let (url, got) = webhook().await;
    let s = Server::start(Opts::default().args(&["--test-clock", "--alert-webhook-url", &url]));
    let admin = s.admin();
    to_next_month(&admin).await;
    let (id, c) = new_account(&s, "deleter").await;
    let a = c.create_instance("a").await;
    let b = c.create_instance("b").await;
    let p = c.wait_status(&a, "active").await["hourly_price"]
        .as_i64()
        .unwrap();
    c.wait_status(&b, "active").await;
    let limit = 3 * p;
    set_budget(
        &admin,
        &id,
        json!({"monthly_limit": dollars(limit), "alert_at_percent": 50, "on_exceed": "delete"}),
    )
    .await;
    let budget_alerts = |got: &Arc<Mutex<Vec<Value>>>| {
        got.lock()
            .unwrap()
            .iter()
            .filter(|v| v["kind"] == "budget_threshold")
            .cloned()
            .collect::<Vec<_>>()
    };
    // An hour: 2p of 3p spent, past the 50% alert, short of the limit.
    advance(&admin, 3600).await;
    let alerts = wait_for("the budget alert", async || {
        let a = budget_alerts(&got);
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(alerts[0]["account_id"], id.as_str());
    assert_eq!(alerts[0]["monthly_limit"], dollars(limit));
    for i in [&a, &b] {
        assert_eq!(
            c.get(&format!("/v1/instances/{i}/info")).await.expect(200)["status"],
            "active"
        );
    }
    // Another hour: the limit is reached half way; both are deleted, billed
    // exactly up to the limit.
    advance(&admin, 3600).await;
    c.wait_gone(&a).await;
    c.wait_gone(&b).await;
    let events = c.get("/v1/events").await.expect(200);
    let events = events["events"].as_array().unwrap();
    for i in [&a, &b] {
        assert_eq!(
            events
                .iter()
                .filter(|e| e["kind"] == "budget.deleted" && e["instance_id"] == i.as_str())
                .count(),
            1,
            "{events:#?}"
        );
    }
    assert_eq!(
        events
            .iter()
            .filter(|e| e["kind"] == "budget.alert")
            .count(),
        1
    );
    let spent = cents(
        account_row(&admin, &id).await["month_to_date_spend"]
            .as_str()
            .unwrap(),
    );
    assert!(
        (limit..=limit + 1).contains(&spent),
        "spent {spent}, limit {limit}"
    );
    let e = c
        .post("/v1/instances/create", default_create("c"))
        .await
        .expect_error(409, "budget_exceeded");
    assert!(e["message"].as_str().unwrap().starts_with("monthly limit"));
    // Once per month: more time and passes fire nothing new.
    advance(&admin, 3600).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(budget_alerts(&got).len(), 1);
}

fn line_of<'a>(usage: &'a Value, id: &str) -> &'a Value {
    usage["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["instance_id"] == id)
        .unwrap_or_else(|| panic!("no line for {id}: {usage:#}"))
}

fn lines_total(usage: &Value) -> i64 {
    usage["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| cents(l["cost"].as_str().unwrap()))
        .sum()
}

#[tokio::test]
async fn usage_lines_sum_to_the_total_and_match_each_cost_estimate() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let admin = s.admin();
    to_next_month(&admin).await;
    let (id, c) = new_account(&s, "ledger").await;
    let a = c.create_instance("a").await;
    c.wait_status(&a, "active").await;
    advance(&admin, 3600).await;
    // The window starts here: `a` spans its start.
    let from = advance(&admin, 1).await;
    let b = c.create_instance("b").await;
    c.wait_status(&b, "active").await;
    advance(&admin, 1800).await;
    // Read before the delete: the test clock stands still, so the cost is
    // the one billing stops at, and a fast teardown can make the instance
    // gone (404) by the time a read after the delete arrives.
    let b_info = c.get(&format!("/v1/instances/{b}/info")).await.expect(200);
    c.post_empty(&format!("/v1/instances/{b}/delete"))
        .await
        .expect(200);
    c.wait_gone(&b).await;
    advance(&admin, 3600).await;
    let a_info = c.get(&format!("/v1/instances/{a}/info")).await.expect(200);
    c.post_empty(&format!("/v1/instances/{a}/delete"))
        .await
        .expect(200);
    c.wait_gone(&a).await;

    // This month: every line is its instance's whole cost.
    let month = c.get("/v1/usage").await.expect(200);
    assert_eq!(month["lines"].as_array().unwrap().len(), 2, "{month:#}");
    assert_eq!(cents(month["total"].as_str().unwrap()), lines_total(&month));
    assert_eq!(line_of(&month, &a)["cost"], a_info["cost_estimate"]);
    assert_eq!(line_of(&month, &b)["cost"], b_info["cost_estimate"]);
    assert_eq!(
        line_of(&month, &b)["hourly_price"],
        b_info["rental_terms"]["hourly_price"]
    );
    let month_from: DateTime<Utc> = month["from"].as_str().unwrap().parse().unwrap();
    assert_eq!((month_from.day(), month_from.hour()), (1, 0));
    assert!(cents(month["total"].as_str().unwrap()) > 0);

    // A window starting after `a` went active: its line is clipped there.
    let q = format!(
        "/v1/usage?from={}",
        urlencode(&from.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    );
    let window = c.get(&q).await.expect(200);
    assert_eq!(
        cents(window["total"].as_str().unwrap()),
        lines_total(&window)
    );
    let la = line_of(&window, &a);
    let start: DateTime<Utc> = la["start"].as_str().unwrap().parse().unwrap();
    let end: DateTime<Utc> = la["end"].as_str().unwrap().parse().unwrap();
    assert_eq!(start, from);
    let price = cents(la["hourly_price"].as_str().unwrap());
    let expect = (price as i128 * (end - start).num_milliseconds() as i128 / 3_600_000) as i64;
    assert_eq!(cents(la["cost"].as_str().unwrap()), expect);
    assert!(expect < cents(a_info["cost_estimate"].as_str().unwrap()));
    assert_eq!(line_of(&window, &b)["cost"], b_info["cost_estimate"]);

    // CSV: the same lines, and the total in a header.
    let res = reqwest::Client::new()
        .get(format!("{}{q}&format=csv", s.base))
        .header("X-API-KEY", c.key.clone().unwrap())
        .send()
        .await
        .unwrap();
    assert!(res.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert_eq!(
        res.headers()["x-usage-total"].to_str().unwrap(),
        window["total"]
    );
    let text = res.text().await.unwrap();
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[0].starts_with("instance_id,"), "{text}");
    assert_eq!(rows.len(), 3, "{text}");
    let csv_total: i64 = rows[1..]
        .iter()
        .map(|r| cents(r.rsplit(',').next().unwrap()))
        .sum();
    assert_eq!(csv_total, lines_total(&window));

    // Admins: every account with per-account totals, or one.
    let all = admin.get("/v1/usage").await.expect(200);
    let acct = all["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["account_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(acct["total"], month["total"]);
    let one = admin
        .get(&format!("/v1/usage?account_id={id}"))
        .await
        .expect(200);
    assert_eq!(one["total"], month["total"]);
    // Others' usage is the admin's business only; bad windows are named.
    c.get(&format!("/v1/usage?account_id={id}"))
        .await
        .expect_error(403, "forbidden");
    let e = c
        .get("/v1/usage?from=yesterday")
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "from");
    let e = c
        .get("/v1/usage?from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z")
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "to");
    let e = c
        .get("/v1/usage?format=xml")
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "format");
}

fn urlencode(s: &str) -> String {
    s.replace(':', "%3A").replace('+', "%2B")
}

#[tokio::test]
async fn admins_list_update_and_delete_accounts() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let (id, c) = new_account(&s, "to-delete").await;
    assert_eq!(c.get("/v1/account").await.expect(200)["name"], "to-delete");
    let r = admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({"name": "renamed", "budget": {"monthly_limit": "500.00", "on_exceed": "block"}}),
        )
        .await
        .expect(200);
    assert_eq!(r["name"], "renamed");
    assert_eq!(r["budget"]["monthly_limit"], "500.00");
    assert_eq!(c.get("/v1/account").await.expect(200)["name"], "renamed");
    let row = account_row(&admin, &id).await;
    assert_eq!(row["admin"], false);
    assert_eq!(row["month_to_date_spend"], "0.00");
    assert_eq!(row["budget"]["on_exceed"], "block");
    // `budget: null` clears it.
    set_budget(&admin, &id, Value::Null).await;
    assert!(account_row(&admin, &id).await["budget"].is_null());

    let i = c.create_instance("keeps-it").await;
    let e = admin
        .post_empty(&format!("/v1/admin/accounts/{id}/delete"))
        .await
        .expect_error(409, "conflict");
    assert!(
        e["message"].as_str().unwrap().contains("1 live instance"),
        "{e}"
    );
    c.post_empty(&format!("/v1/instances/{i}/delete"))
        .await
        .expect(200);
    c.wait_gone(&i).await;
    admin
        .post_empty(&format!("/v1/admin/accounts/{id}/delete"))
        .await
        .expect(200);
    c.get("/v1/account").await.expect_error(401, "unauthorized");
    assert!(account_row(&admin, &id).await.is_null());
    admin
        .post_empty(&format!("/v1/admin/accounts/{id}/delete"))
        .await
        .expect_error(404, "not_found");
    // A created admin is an admin.
    let r = admin
        .post(
            "/v1/admin/accounts/create",
            json!({"name": "second-admin", "admin": true}),
        )
        .await
        .expect(200);
    let second = s.client(r["api_key"].as_str().unwrap());
    second.get("/v1/admin/accounts").await.expect(200);
}

fn cli(s: &Server, key: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(binary())
        .args(args)
        .env("PARASOL_URL", &s.base)
        .env("PARASOL_API_KEY", key)
        .env("XDG_CONFIG_HOME", s.data_dir.join("cli-config"))
        .env("HOME", s.data_dir.join("home"))
        .env_remove("PARASOL_CONFIG")
        .env_remove("PARASOL_DATA_DIR")
        .env_remove("PARASOL_DATABASE_URL")
        .output()
        .expect("run the cli");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_cli_manages_accounts_and_shows_usage() {
    let s = Server::start(Opts::default());
    let key = crate::harness::ADMIN_KEY;
    // With a server profile and no store flags, create goes over the API.
    let (ok, out, err) = cli(&s, key, &["accounts", "create", "cli-team"]);
    assert!(ok, "{err}");
    let team_key = out.trim().to_string();
    assert!(team_key.starts_with("psl_"), "{out}");
    let team = s.client(&team_key);
    let me = team.get("/v1/account").await.expect(200);
    assert_eq!(me["name"], "cli-team");
    let team_id = me["id"].as_str().unwrap().to_string();
    // With store flags it stays the offline command.
    let offline = s.new_account("offline-team");
    s.client(&offline).get("/v1/account").await.expect(200);

    let (ok, out, err) = cli(
        &s,
        key,
        &[
            "accounts",
            "update",
            &team_id,
            "--max-gpus",
            "3",
            "--monthly-limit",
            "20.00",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("cli-team") && out.contains("3 GPUs"), "{out}");
    let (ok, out, err) = cli(&s, key, &["accounts", "list", "-o", "json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let row = listed["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == team_id.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        row["budget"],
        json!({"max_gpus": 3, "monthly_limit": "20.00"})
    );
    let (ok, out, _) = cli(&s, key, &["accounts", "list"]);
    assert!(
        ok && out.contains("offline-team") && out.contains("cli-team"),
        "{out}"
    );
    // A refusal is one line on stderr.
    let (ok, _, err) = cli(&s, key, &["accounts", "update", &team_id, "--max-gpus=-2"]);
    assert!(!ok);
    assert!(err.contains("max_gpus"), "{err}");

    let i = team.create_instance("u").await;
    team.wait_status(&i, "active").await;
    let (ok, out, err) = cli(&s, &team_key, &["usage", "-o", "json"]);
    assert!(ok, "{err}");
    let usage: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(usage["lines"][0]["instance_id"], i.as_str());
    let (ok, out, err) = cli(&s, &team_key, &["usage", "-o", "csv"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("instance_id,") && out.contains(&i), "{out}");
    let (ok, out, err) = cli(&s, &team_key, &["usage"]);
    assert!(ok, "{err}");
    assert!(out.contains("total $"), "{out}");
    let (ok, _, err) = cli(&s, &team_key, &["usage", "--from", "nope"]);
    assert!(!ok && err.contains("from"), "{err}");

    // Delete: refused while it holds an instance, then done.
    let (ok, _, err) = cli(&s, key, &["accounts", "delete", &team_id]);
    assert!(!ok && err.contains("live instance"), "{err}");
    team.post_empty(&format!("/v1/instances/{i}/delete"))
        .await
        .expect(200);
    team.wait_gone(&i).await;
    let (ok, _, err) = cli(&s, key, &["accounts", "delete", &team_id]);
    assert!(ok, "{err}");
    team.get("/v1/account")
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn the_budget_counters_survive_a_sigkill_and_are_recounted_at_start() {
    let mut s = Server::start(Opts::default());
    let admin = s.admin();
    let (id, c) = new_account(&s, "restarts").await;
    let (_, g) = price_and_gpus(&c).await;
    set_budget(&admin, &id, json!({"max_gpus": 2 * g})).await;
    c.create_instance("one").await;
    c.create_instance("two").await;
    s.restart();
    let c = s.client(c.key.as_deref().unwrap());
    c.post("/v1/instances/create", default_create("three"))
        .await
        .expect_error(409, "budget_exceeded");
    // Counters that were never filled (as on a store just migrated to the
    // budgets step, which clears the recount marker) are recounted from
    // the rows at the next start.
    s.kill();
    let store = s.store().await;
    for sql in [
        "UPDATE account_spend SET gpus = 0, hourly_cents = 0",
        "DELETE FROM settings WHERE name = 'capacity_recount'",
    ] {
        sqlx::query(sql).execute(store.pool()).await.unwrap();
    }
    assert!(!store.capacity_drift().await.unwrap().is_empty());
    store.pool().close().await;
    s.restart();
    s.assert_capacity_counts_agree().await;
    let c = s.client(c.key.as_deref().unwrap());
    let e = c
        .post("/v1/instances/create", default_create("three"))
        .await
        .expect_error(409, "budget_exceeded");
    assert_eq!(
        e["message"],
        format!(
            "max_gpus {} would be exceeded: {} GPUs live + {g} requested",
            2 * g,
            2 * g
        )
    );
}
