//! Idle and health policies (issue 26) on the backend
//! PARASOL_TEST_BACKEND names, driven by the sim's steerable agent on a
//! test clock: idle delete and alert, an account's idle policy that a
//! create may tighten but not loosen, health transitions and their events,
//! a SIGKILL mid-window that does not reset the idle clock, `replace`
//! starting exactly one replacement, and the fleet gauges.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{default_create, Client, Opts, Server};
use crate::thresholds::{wait_for, webhook};

/// A test-clock server, its admin client and a view of its store.
pub(crate) struct Rig {
    pub(crate) s: Server,
    pub(crate) c: Client,
}

impl Rig {
    pub(crate) fn start(extra: &[&str]) -> Rig {
        let mut args = vec!["--test-clock"];
        args.extend_from_slice(extra);
        let s = Server::start(Opts::default().args(&args));
        let c = s.admin();
        Rig { s, c }
    }

    /// An active instance made with `extra` create fields.
    async fn active(&self, name: &str, extra: Value) -> String {
        let made = self
            .c
            .post("/v1/instances/create", create_with(name, extra))
            .await
            .expect(200);
        let id = made["id"].as_str().unwrap().to_string();
        self.c.wait_status(&id, "active").await;
        id
    }

    async fn steer(&self, id: &str, steering: Value) {
        let mut body = json!({"instance_id": id, "reporting": true});
        body.as_object_mut()
            .unwrap()
            .extend(steering.as_object().unwrap().clone());
        self.c.post("/admin/sim/agent", body).await.expect(200);
    }

    /// Moves the test clock; answers the time it reads now.
    pub(crate) async fn advance(&self, seconds: i64) -> DateTime<Utc> {
        let r = self
            .c
            .post("/admin/clock/advance", json!({"seconds": seconds}))
            .await
            .expect(200);
        serde_json::from_value(r["now"].clone()).unwrap()
    }

    pub(crate) async fn last_seen(&self, id: &str) -> Option<DateTime<Utc>> {
        let store = self.s.store().await;
        let seen = store
            .agent_seen(Uuid::parse_str(id).unwrap())
            .await
            .unwrap();
        store.close().await;
        seen.map(|s| s.last_seen_at)
    }

    /// Waits for the instance's agent to report after `after`.
    pub(crate) async fn report_after(
        &self,
        id: &str,
        after: Option<DateTime<Utc>>,
    ) -> DateTime<Utc> {
        wait_for("a report from the simulated agent", async || {
            self.last_seen(id).await.filter(|t| Some(*t) > after)
        })
        .await
    }

    /// Waits until the reconciler has finished two whole passes since now.
    pub(crate) async fn passes(&self) {
        let runs = |r: Value| r["runs"].as_u64().unwrap();
        let start = runs(self.c.get("/admin/reconciler").await.expect(200));
        wait_for("two reconciler passes", async || {
            let now = runs(self.c.get("/admin/reconciler").await.expect(200));
            (now >= start + 2).then_some(())
        })
        .await
    }

    /// Moves the clock `seconds` on, waits for the agent's report at the
    /// new time and for the reconciler to have looked at it.
    async fn step(&self, id: &str, seconds: i64) {
        let before = self.last_seen(id).await;
        self.advance(seconds).await;
        self.report_after(id, before).await;
        // A second past the report, so the instance is due again and its
        // step sees the report.
        self.advance(1).await;
        self.passes().await;
    }

    pub(crate) async fn status(&self, id: &str) -> String {
        status_of(&self.c, id).await
    }

    pub(crate) async fn health(&self, id: &str) -> Value {
        self.c
            .get(&format!("/v1/instances/{id}/health"))
            .await
            .expect(200)
    }

    pub(crate) async fn events(&self, id: &str, kind: &str) -> Vec<Value> {
        events_of(&self.c, id, kind).await
    }
}

fn create_with(name: &str, extra: Value) -> Value {
    let mut body = default_create(name);
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// The instance's events of `kind` as its account sees them, oldest
/// first.
async fn events_of(c: &Client, id: &str, kind: &str) -> Vec<Value> {
    let r = c.get("/v1/events").await.expect(200);
    r["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind && e["instance_id"] == id)
        .cloned()
        .collect()
}

/// An instance's status as its account sees it (`deleted` once gone).
async fn status_of(c: &Client, id: &str) -> String {
    let r = c.get(&format!("/v1/instances/{id}/info")).await;
    if r.status == 404 {
        return "deleted".into();
    }
    r.body["status"].as_str().unwrap().to_string()
}

/// The info of the instance a create answered.
async fn info_of(c: &Client, made: &Value) -> Value {
    c.get(&format!(
        "/v1/instances/{}/info",
        made["id"].as_str().unwrap()
    ))
    .await
    .expect(200)
}

async fn account_id(c: &Client) -> String {
    c.get("/v1/account").await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_account_idle_policy_binds_creates_which_may_tighten_but_not_loosen_it() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let user = s.client(&s.new_account("bound"));
    let id = account_id(&user).await;
    let policy = json!({"max_gpu_utilization_percent": 10, "minutes": 30,
                        "count_ssh_sessions": true, "action": "delete"});

    // Bad numbers are refused naming the field; admins only.
    let err = admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({"idle_policy": {"minutes": 0}}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "idle_policy.minutes", "{err}");
    user.post(
        &format!("/v1/admin/accounts/{id}/update"),
        json!({"idle_policy": policy}),
    )
    .await
    .expect_error(403, "forbidden");
    let set = admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({"idle_policy": policy}),
        )
        .await
        .expect(200);
    assert_eq!(set["idle_policy"], policy, "{set}");

    // Without a policy of its own, an instance gets the account's.
    let made = user
        .post("/v1/instances/create", default_create("plain"))
        .await
        .expect(200);
    let info = info_of(&user, &made).await;
    assert_eq!(info["idle_policy"], policy, "{info}");

    // Tighter in every respect: sooner, at a higher threshold, SSH
    // sessions ignored.
    let tight = json!({"max_gpu_utilization_percent": 20, "minutes": 5,
                       "count_ssh_sessions": false, "action": "delete"});
    let made = user
        .post(
            "/v1/instances/create",
            create_with("tight", json!({"idle_policy": tight})),
        )
        .await
        .expect(200);
    let info = info_of(&user, &made).await;
    assert_eq!(info["idle_policy"], tight, "{info}");

    // Each way of loosening it is a 400 naming the account's policy.
    for (loose, what) in [
        (json!({"minutes": 60, "action": "delete"}), "minutes"),
        (
            json!({"minutes": 30, "max_gpu_utilization_percent": 1, "action": "delete"}),
            "max_gpu_utilization_percent",
        ),
        (
            json!({"minutes": 30, "max_gpu_utilization_percent": 10, "action": "alert"}),
            "action",
        ),
    ] {
        let err = user
            .post(
                "/v1/instances/create",
                create_with("loose", json!({"idle_policy": loose})),
            )
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(err["field"], "idle_policy", "{err}");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains("account's idle policy"), "{message}");
        assert!(message.contains("minutes: 30"), "{message}");
        assert!(message.contains(what), "{message}");
    }
    // Removing it is refused too, on create and on launch.
    let err = user
        .post(
            "/v1/instances/create",
            create_with("none", json!({"idle_policy": null})),
        )
        .await
        .expect_error(400, "invalid_request");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("cannot be removed"),
        "{err}"
    );
    let err = user
        .post(
            "/v1/instances/launch",
            json!({"requirements": {"gpu_type": "A6000"},
                   "idle_policy": {"minutes": 90, "action": "delete"}}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "idle_policy", "{err}");
    // A template cannot carry a looser policy past it either.
    let t = user
        .post(
            "/v1/templates/save",
            json!({"name": "lax", "idle_policy": {"minutes": 600, "action": "alert"}}),
        )
        .await
        .expect(200);
    let err = user
        .post(
            "/v1/instances/create",
            create_with("from-template", json!({"template_id": t["id"]})),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "idle_policy", "{err}");

    // Once the admin removes it, the same request is accepted.
    admin
        .post(
            &format!("/v1/admin/accounts/{id}/update"),
            json!({"idle_policy": null}),
        )
        .await
        .expect(200);
    user.post(
        "/v1/instances/create",
        create_with("free", json!({"idle_policy": null})),
    )
    .await
    .expect(200);
    // Other accounts were never bound.
    admin
        .post(
            "/v1/instances/create",
            create_with("other", json!({"idle_policy": {"minutes": 600}})),
        )
        .await
        .expect(200);
}

#[tokio::test]
async fn policies_ride_on_templates_and_launches_and_bad_ones_name_their_field() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let policy = json!({"max_gpu_utilization_percent": 5, "minutes": 15,
                        "count_ssh_sessions": true, "action": "alert"});
    let t = c
        .post(
            "/v1/templates/save",
            json!({"name": "watched", "idle_policy": policy, "on_unhealthy": "replace"}),
        )
        .await
        .expect(200);
    let info = c
        .get(&format!("/v1/templates/{}/info", t["id"].as_str().unwrap()))
        .await
        .expect(200);
    assert_eq!(info["idle_policy"], policy, "{info}");
    let made = c
        .post(
            "/v1/instances/create",
            create_with("from-template", json!({"template_id": t["id"]})),
        )
        .await
        .expect(200);
    let info = info_of(&c, &made).await;
    assert_eq!(info["idle_policy"], policy, "{info}");
    assert_eq!(info["on_unhealthy"], "replace", "{info}");

    let launched = c
        .post(
            "/v1/instances/launch",
            json!({"requirements": {"gpu_type": "A6000"},
                   "idle_policy": {"minutes": 3, "action": "delete"},
                   "on_unhealthy": "alert"}),
        )
        .await
        .expect(200);
    let info = info_of(&c, &launched).await;
    assert_eq!(info["idle_policy"]["minutes"], 3, "{info}");
    assert_eq!(info["idle_policy"]["max_gpu_utilization_percent"], 5);
    assert_eq!(info["on_unhealthy"], "alert");

    for (body, field) in [
        (
            json!({"idle_policy": {"minutes": 0}}),
            "idle_policy.minutes",
        ),
        (
            json!({"idle_policy": {"minutes": 5, "max_gpu_utilization_percent": 101}}),
            "idle_policy.max_gpu_utilization_percent",
        ),
    ] {
        let err = c
            .post("/v1/instances/create", create_with("bad", body.clone()))
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(err["field"], field, "{err}");
        let mut t = body.clone();
        t["name"] = json!("bad");
        let err = c
            .post("/v1/templates/save", t)
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(err["field"], field, "{err}");
    }
    let err = c
        .post(
            "/v1/instances/create",
            create_with("bad", json!({"on_unhealthy": "reboot"})),
        )
        .await;
    assert_eq!(err.status, 400, "{:?}", err.body);
    let err = c
        .post(
            "/v1/instances/create",
            create_with("bad", json!({"idle_policy": {"minutes": 5, "minute": 3}})),
        )
        .await;
    assert_eq!(err.status, 400, "{:?}", err.body);
}

/// The newest report of `id` whose GPUs were busy (above 5 %), from the
/// server's own store.
async fn last_busy(s: &Server, id: &str) -> DateTime<Utc> {
    last_report(s, id, |r| {
        r.gpus.iter().any(|g| g.utilization_percent > 5.0)
    })
    .await
}

/// The newest report of `id` that `pred` picks, from the server's store.
pub(crate) async fn last_report(
    s: &Server,
    id: &str,
    pred: impl Fn(&parasol::agent::Sample) -> bool,
) -> DateTime<Utc> {
    let store = s.store().await;
    let samples = store
        .agent_samples(
            Uuid::parse_str(id).unwrap(),
            DateTime::<Utc>::MIN_UTC,
            parasol::agent::Resolution::Raw,
        )
        .await
        .unwrap();
    store.close().await;
    samples
        .iter()
        .filter(|s| pred(s))
        .map(|s| s.at)
        .max()
        .expect("a report of the kind asked for")
}

#[tokio::test]
async fn an_idle_instance_is_deleted_at_the_end_of_its_window_and_ssh_keeps_it() {
    let (url, got) = webhook(Duration::ZERO).await;
    let r = Rig::start(&["--alert-webhook-url", &url]);
    let id = r
        .active(
            "idler",
            json!({"idle_policy": {"max_gpu_utilization_percent": 5, "minutes": 3,
                                    "count_ssh_sessions": true, "action": "delete"}}),
        )
        .await;
    // The simulated agent's own wave is busy: one report of it first.
    r.report_after(&id, None).await;

    // Idle GPUs but someone logged in: never idle, however long.
    r.steer(
        &id,
        json!({"gpu_utilization_percent": 0, "ssh_sessions": 1}),
    )
    .await;
    for _ in 0..5 {
        r.step(&id, 60).await;
    }
    assert_eq!(r.status(&id).await, "active");

    // Logged out: idle from the last report with a session on.
    let busy = last_report(&r.s, &id, |s| s.ssh_sessions > 0).await;
    r.steer(&id, json!({"ssh_sessions": 0})).await;
    r.step(&id, 30).await;
    let now = r.advance(0).await;
    let moment = busy + chrono::Duration::minutes(3);
    let to_go = (moment - now).num_seconds();
    assert!(to_go > 10, "{to_go}");
    // Shortly before the moment (the test clock also runs in real time,
    // hence the margin): still there.
    r.step(&id, to_go - 10).await;
    assert_eq!(r.status(&id).await, "active");
    assert!(r.events(&id, "idle.deleted").await.is_empty());
    // Past it: deleted within the pass, with the event recorded and
    // posted to the alert webhook.
    r.advance(10).await;
    r.passes().await;
    let status = r.status(&id).await;
    assert!(
        status == "deleting" || status == "deleted",
        "{status} after the idle moment"
    );
    let events = r.events(&id, "idle.deleted").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0]["message"]
            .as_str()
            .unwrap()
            .contains("idle for 3 minutes"),
        "{events:?}"
    );
    let posted = wait_for("the idle alert at the webhook", async || {
        got.lock()
            .unwrap()
            .iter()
            .find(|b| b["kind"] == "idle_deleted")
            .cloned()
    })
    .await;
    assert_eq!(posted["instance_id"], id.as_str());
    assert_eq!(posted["event"], "alert");
}

#[tokio::test]
async fn an_idle_alert_fires_once_per_idle_stretch_and_the_instance_stays() {
    let (url, got) = webhook(Duration::ZERO).await;
    let r = Rig::start(&["--alert-webhook-url", &url]);
    let id = r
        .active(
            "watched",
            json!({"idle_policy": {"minutes": 2, "action": "alert"}}),
        )
        .await;
    r.report_after(&id, None).await;
    r.steer(&id, json!({"gpu_utilization_percent": 3})).await;
    let alerts = async || r.events(&id, "idle.alert").await.len();
    r.step(&id, 60).await;
    assert_eq!(alerts().await, 0);
    for _ in 0..3 {
        r.step(&id, 60).await;
    }
    assert_eq!(alerts().await, 1, "one alert for one idle stretch");
    assert_eq!(r.status(&id).await, "active");
    let posted = wait_for("the idle alert at the webhook", async || {
        got.lock()
            .unwrap()
            .iter()
            .find(|b| b["kind"] == "idle")
            .cloned()
    })
    .await;
    assert_eq!(posted["instance_id"], id.as_str());

    // Busy again, then idle again: a second stretch, a second alert.
    r.steer(&id, json!({"gpu_utilization_percent": 80})).await;
    r.step(&id, 20).await;
    r.steer(&id, json!({"gpu_utilization_percent": 0})).await;
    r.step(&id, 60).await;
    assert_eq!(alerts().await, 1);
    for _ in 0..2 {
        r.step(&id, 60).await;
    }
    assert_eq!(alerts().await, 2);
    assert_eq!(r.status(&id).await, "active");
}

#[tokio::test]
async fn an_account_policy_binds_instances_made_before_it() {
    let r = Rig::start(&[]);
    let user = r.s.client(&r.s.new_account("later"));
    let account = account_id(&user).await;
    let made = user
        .post(
            "/v1/instances/create",
            create_with(
                "loose",
                json!({"idle_policy": {"minutes": 600, "action": "alert"}}),
            ),
        )
        .await
        .expect(200);
    let id = made["id"].as_str().unwrap().to_string();
    user.wait_status(&id, "active").await;
    r.report_after(&id, None).await;
    r.c.post(
        &format!("/v1/admin/accounts/{account}/update"),
        json!({"idle_policy": {"minutes": 2, "action": "delete"}}),
    )
    .await
    .expect(200);
    r.steer(&id, json!({"gpu_utilization_percent": 0})).await;
    r.step(&id, 60).await;
    assert_eq!(status_of(&user, &id).await, "active");
    // Past two minutes of idle reports (the reports stop with the
    // deletion, so the clock is moved without waiting for them).
    for _ in 0..3 {
        r.advance(30).await;
        r.passes().await;
    }
    let status = status_of(&user, &id).await;
    assert!(status == "deleting" || status == "deleted", "{status}");
    assert_eq!(events_of(&user, &id, "idle.deleted").await.len(), 1);
}

#[tokio::test]
async fn a_sigkill_mid_window_does_not_reset_the_idle_clock() {
    let mut r = Rig::start(&[]);
    let id = r
        .active(
            "survivor",
            json!({"idle_policy": {"minutes": 10, "action": "delete"}}),
        )
        .await;
    r.report_after(&id, None).await;
    r.steer(&id, json!({"gpu_utilization_percent": 0})).await;
    r.step(&id, 30).await;
    let busy = last_busy(&r.s, &id).await;
    let mut advanced = 31;
    // Six minutes into the ten-minute window...
    for _ in 0..6 {
        r.step(&id, 60).await;
        advanced += 61;
    }
    assert_eq!(r.status(&id).await, "active");

    // ...the server dies without a chance to save anything, and comes back
    // with its test clock where it was.
    r.s.kill();
    r.s.restart();
    r.c = r.s.admin();
    let now = r.advance(advanced).await;
    let left = (busy + chrono::Duration::minutes(10) - now).num_seconds();
    assert!(
        (60..300).contains(&left),
        "{left} s of the window left after the restart"
    );
    // A fresh clock would need ten more minutes; the stored samples say
    // the window ends in `left` seconds, and it does.
    r.step(&id, left - 20).await;
    assert_eq!(r.status(&id).await, "active");
    r.advance(30).await;
    r.passes().await;
    let status = r.status(&id).await;
    assert!(status == "deleting" || status == "deleted", "{status}");
    assert_eq!(r.events(&id, "idle.deleted").await.len(), 1);
}

/// The `instance.health_changed` events' messages, oldest first.
async fn health_changes(r: &Rig, id: &str) -> Vec<String> {
    r.events(id, "instance.health_changed")
        .await
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn health_moves_with_reports_and_each_change_is_an_event() {
    let r = Rig::start(&[]);
    let id = r.active("patient", json!({})).await;
    // Nothing reported yet, or the first report is there: unknown or
    // healthy, never anything else.
    let first = r.health(&id).await;
    assert!(
        first["status"] == "unknown" || first["status"] == "healthy",
        "{first}"
    );
    r.report_after(&id, None).await;
    r.step(&id, 20).await;
    let h = r.health(&id).await;
    assert_eq!(h["status"], "healthy", "{h}");
    let names: Vec<&str> = h["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["heartbeat", "gpu_count", "xid", "ecc"]);

    // Uncorrectable ECC errors: degraded.
    r.steer(&id, json!({"ecc_uncorrectable": 2})).await;
    r.step(&id, 20).await;
    let h = r.health(&id).await;
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["checks"][3]["status"], "degraded", "{h}");

    // Silent: still degraded at two minutes, failed at ten.
    r.steer(&id, json!({"reporting": false})).await;
    r.advance(180).await;
    r.passes().await;
    assert_eq!(r.health(&id).await["status"], "degraded");
    r.advance(480).await;
    r.passes().await;
    let h = r.health(&id).await;
    assert_eq!(h["status"], "failed", "{h}");
    assert_eq!(h["checks"][0]["status"], "failed", "{h}");

    // Back: degraded (the ECC errors stand until a restart), then a
    // critical Xid fails it.
    r.steer(&id, json!({"reporting": true})).await;
    r.step(&id, 20).await;
    assert_eq!(r.health(&id).await["status"], "degraded");
    r.steer(&id, json!({"xid": [79]})).await;
    r.step(&id, 20).await;
    let h = r.health(&id).await;
    assert_eq!(h["status"], "failed", "{h}");
    assert!(
        h["checks"][2]["detail"]
            .as_str()
            .unwrap()
            .contains("Xid 79"),
        "{h}"
    );
    let changes = health_changes(&r, &id).await;
    let to: Vec<&str> = changes
        .iter()
        .map(|m| {
            ["healthy", "degraded", "failed"]
                .into_iter()
                .find(|s| m.contains(&format!(" is {s} ")))
                .unwrap_or("?")
        })
        .collect();
    assert_eq!(
        to,
        ["healthy", "degraded", "failed", "degraded", "failed"],
        "{changes:#?}"
    );
    // Nothing replaces an instance that did not ask for it.
    assert_eq!(r.status(&id).await, "active");
}

#[tokio::test]
async fn replace_starts_exactly_one_replacement_tagged_with_the_old_id() {
    let (url, got) = webhook(Duration::ZERO).await;
    let r = Rig::start(&["--alert-webhook-url", &url]);
    let id = r
        .active(
            "fragile",
            json!({"on_unhealthy": "replace", "tags": ["team-a"],
                   "idle_policy": {"minutes": 60, "action": "alert"}}),
        )
        .await;
    let alerted = r.active("noisy", json!({"on_unhealthy": "alert"})).await;
    r.report_after(&id, None).await;
    r.report_after(&alerted, None).await;
    r.step(&id, 20).await;
    r.steer(&id, json!({"xid": [79]})).await;
    r.steer(&alerted, json!({"xid": [48]})).await;
    r.step(&id, 20).await;
    // Several more passes: still one replacement.
    for _ in 0..3 {
        r.step(&alerted, 20).await;
    }
    let gone = r.status(&id).await;
    assert!(gone == "deleting" || gone == "deleted", "{gone}");
    let tag = format!("parasol:replaces={id}");
    let replacements = r.c.tagged(&tag).await;
    assert_eq!(replacements.len(), 1, "{replacements:#?}");
    let new = &replacements[0];
    assert_eq!(new["name"], "fragile");
    assert_eq!(new["shade_instance_type"], "A6000");
    assert_eq!(new["on_unhealthy"], "replace");
    assert_eq!(new["idle_policy"]["minutes"], 60);
    assert!(new["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "team-a"));
    let new_id = new["id"].as_str().unwrap().to_string();
    r.c.wait_status(&new_id, "active").await;
    assert_eq!(r.events(&id, "health.replaced").await.len(), 1);

    // `alert` only alerts, once, and keeps the instance.
    assert_eq!(r.status(&alerted).await, "active");
    assert_eq!(r.events(&alerted, "health.alert").await.len(), 1);
    let posted = wait_for("the health alert at the webhook", async || {
        got.lock()
            .unwrap()
            .iter()
            .find(|b| b["kind"] == "unhealthy")
            .cloned()
    })
    .await;
    assert_eq!(posted["instance_id"], alerted.as_str());
}

#[tokio::test]
async fn the_fleet_gauges_count_gpus_by_utilisation_and_instances_by_health() {
    let r = Rig::start(&[]);
    let a = r.active("a", json!({})).await;
    let b = r.active("b", json!({})).await;
    r.report_after(&a, None).await;
    r.report_after(&b, None).await;
    r.steer(&a, json!({"gpu_utilization_percent": 0})).await;
    r.steer(&b, json!({"gpu_utilization_percent": 60})).await;
    r.step(&a, 20).await;
    r.report_after(&b, None).await;
    r.passes().await;
    let gpus = |t: &Value| t["configuration"]["num_gpus"].as_i64().unwrap();
    let info_a =
        r.c.get(&format!("/v1/instances/{a}/info"))
            .await
            .expect(200);
    let info_b =
        r.c.get(&format!("/v1/instances/{b}/info"))
            .await
            .expect(200);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(format!("{}/metrics", r.s.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let value = |series: &str| -> Option<i64> {
            text.lines()
                .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
        };
        let idle = value("parasol_fleet_idle_gpus ");
        let low = value("parasol_fleet_gpus{utilization=\"0-5\"} ");
        let mid = value("parasol_fleet_gpus{utilization=\"50-75\"} ");
        let healthy = value("parasol_instances_by_health{health=\"healthy\"} ");
        let failed = value("parasol_instances_by_health{health=\"failed\"} ");
        if idle == Some(gpus(&info_a))
            && low == Some(gpus(&info_a))
            && mid == Some(gpus(&info_b))
            && healthy == Some(2)
        {
            assert_eq!(failed, Some(0));
            // No series names an instance.
            assert!(!text.contains(&a) && !text.contains(&b));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "gauges never settled: idle {idle:?} low {low:?} mid {mid:?} healthy {healthy:?}\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
