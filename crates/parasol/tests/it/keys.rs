//! Several API keys per account: create, use, list (never the secrets),
//! revoke (refused from the very next request, on every replica), the
//! limits on both ends, and keys made before keys were a table.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{fresh_pg_database, metric, Backend, Client, Opts, Server, ADMIN_KEY};

async fn keys(c: &Client) -> Vec<Value> {
    c.get("/v1/account/keys").await.expect(200)["keys"]
        .as_array()
        .unwrap()
        .clone()
}

async fn create_key(c: &Client, name: &str) -> (String, String) {
    let made = c
        .post("/v1/account/keys/create", json!({ "name": name }))
        .await
        .expect(200);
    assert_eq!(made["name"], name);
    let key = made["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with("psl_"), "{made}");
    (made["id"].as_str().unwrap().to_string(), key)
}

fn hash(key: &str) -> String {
    parasol::http::hash_key(key)
}

#[tokio::test]
async fn a_second_key_works_is_listed_without_secrets_and_revoking_the_first_refuses_it_at_once() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let me = admin.get("/v1/account").await.expect(200);
    let first = keys(&admin).await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0]["name"], "default");
    let first_id = first[0]["id"].as_str().unwrap().to_string();

    let (second_id, second_key) = create_key(&admin, "ci").await;
    let second = s.client(&second_key);
    assert_eq!(second.get("/v1/account").await.expect(200), me);

    let listed = second.get("/v1/account/keys").await.expect(200);
    let text = listed.to_string();
    for secret in [
        ADMIN_KEY.to_string(),
        second_key.clone(),
        hash(ADMIN_KEY),
        hash(&second_key),
    ] {
        assert!(!text.contains(&secret), "the list leaks a secret: {text}");
    }
    let listed = listed["keys"].as_array().unwrap();
    let ids: Vec<&str> = listed.iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [first_id.as_str(), second_id.as_str()]);
    for k in listed {
        let mut fields: Vec<&str> = k.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        fields.sort();
        // Both keys have been used by now; neither is revoked.
        assert_eq!(
            fields,
            ["created_at", "id", "last_used_at", "name", "role"],
            "{k}"
        );
    }

    // The second key revokes the first; the very next request with the
    // first is refused, and the second still works.
    let done = second
        .post_empty(&format!("/v1/account/keys/{first_id}/revoke"))
        .await
        .expect(200);
    assert_eq!(done, json!({"id": first_id, "status": "revoked"}));
    admin
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");
    admin
        .get("/v1/instances/types")
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(second.get("/v1/account").await.expect(200), me);
    let after = keys(&second).await;
    assert!(after[0]["revoked_at"].is_string(), "{after:?}");
    assert!(after[1].get("revoked_at").is_none(), "{after:?}");
    // Revoking it again changes nothing.
    second
        .post_empty(&format!("/v1/account/keys/{first_id}/revoke"))
        .await
        .expect(200);
    assert_eq!(keys(&second).await[0]["revoked_at"], after[0]["revoked_at"]);

    // A server restart does not bring the revoked key back.
    let mut s = s;
    s.restart();
    s.client(ADMIN_KEY)
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");
    s.client(&second_key).get("/v1/account").await.expect(200);
}

#[tokio::test]
async fn the_last_live_key_cannot_be_revoked_and_an_eleventh_is_refused() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let only = keys(&admin).await[0]["id"].as_str().unwrap().to_string();
    let e = admin
        .post_empty(&format!("/v1/account/keys/{only}/revoke"))
        .await
        .expect_error(409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("last"), "{e}");
    admin.get("/v1/account").await.expect(200);

    let mut made = vec![];
    for i in 2..=10 {
        made.push(create_key(&admin, &format!("k{i}")).await);
    }
    let e = admin
        .post("/v1/account/keys/create", json!({"name": "k11"}))
        .await
        .expect_error(409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("10"), "{e}");
    assert_eq!(keys(&admin).await.len(), 10);

    // A revoked key no longer counts against the ten.
    admin
        .post_empty(&format!("/v1/account/keys/{}/revoke", made[0].0))
        .await
        .expect(200);
    let (_, eleventh) = create_key(&admin, "k11").await;
    s.client(&eleventh).get("/v1/account").await.expect(200);
    s.client(&made[0].1)
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");
    assert_eq!(keys(&admin).await.len(), 11);
}

#[tokio::test]
async fn another_accounts_key_ids_are_not_found_and_bad_input_names_the_field() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let bob = s.client(&s.new_account("bob"));
    let (admin_second, _) = create_key(&admin, "second").await;
    let bob_keys = keys(&bob).await;
    assert_eq!(bob_keys.len(), 1);
    assert!(!bob_keys.iter().any(|k| k["id"] == admin_second.as_str()));

    bob.post_empty(&format!("/v1/account/keys/{admin_second}/revoke"))
        .await
        .expect_error(404, "not_found");
    bob.post_empty("/v1/account/keys/not-a-uuid/revoke")
        .await
        .expect_error(404, "not_found");
    bob.post_empty(&format!("/v1/account/keys/{}/revoke", uuid::Uuid::new_v4()))
        .await
        .expect_error(404, "not_found");
    assert!(keys(&admin).await[1].get("revoked_at").is_none());

    let e = bob
        .post("/v1/account/keys/create", json!({}))
        .await
        .expect_error(400, "invalid_request");
    assert!(e["message"].as_str().unwrap().contains("name"), "{e}");
    for (body, why) in [
        (json!({"name": ""}), "empty"),
        (json!({"name": 7}), "not a string"),
        (json!({"name": "a\u{7}b"}), "control"),
        (json!({"name": "x".repeat(300)}), "long"),
    ] {
        let e = bob
            .post("/v1/account/keys/create", body)
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], "name", "{why}: {e}");
    }
    bob.post_raw("/v1/account/keys/create", b"{nope".to_vec())
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(keys(&bob).await.len(), 1);
    s.client("psl_nope")
        .get("/v1/account/keys")
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn last_use_is_recorded_at_most_once_a_minute() {
    let s = Server::start(Opts::default().args(&["--test-clock"]));
    let admin = s.admin();
    let (id, key) = create_key(&admin, "cron").await;
    let last_used = |list: Vec<Value>| {
        list.into_iter()
            .find(|k| k["id"] == id.as_str())
            .unwrap()
            .get("last_used_at")
            .cloned()
    };
    assert_eq!(last_used(keys(&admin).await), None, "not used yet");
    let k = s.client(&key);
    k.get("/v1/account").await.expect(200);
    let t1 = last_used(keys(&admin).await).expect("recorded on first use");

    let advance = |secs: i64| {
        let admin = admin.clone();
        async move {
            admin
                .post("/admin/clock/advance", json!({ "seconds": secs }))
                .await
                .expect(200);
        }
    };
    advance(30).await;
    k.get("/v1/account").await.expect(200);
    assert_eq!(last_used(keys(&admin).await), Some(t1.clone()));
    advance(31).await;
    k.get("/v1/account").await.expect(200);
    let t2 = last_used(keys(&admin).await).unwrap();
    let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(
        at(&t2) - at(&t1) >= chrono::Duration::seconds(61),
        "{t1} {t2}"
    );
}

#[tokio::test]
async fn the_rate_limit_and_the_audit_log_follow_the_key_used() {
    let s = Server::start(Opts::default().args(&["--key-rate", "0.001", "--key-burst", "3"]));
    let admin = s.admin();
    let (_, second_key) = create_key(&admin, "second").await;
    admin.get("/v1/account").await.expect(200);
    admin.get("/v1/account").await.expect(200);
    admin
        .get("/v1/account")
        .await
        .expect_error(429, "rate_limited");
    // Another key of the same account has its own bucket.
    let second = s.client(&second_key);
    let (third_id, _) = create_key(&second, "third").await;
    let entries = second.get("/v1/admin/audit").await.expect(200)["entries"]
        .as_array()
        .unwrap()
        .clone();
    let by_key = |object: &str| {
        entries
            .iter()
            .find(|e| e["route"] == "/v1/account/keys/create" && e["object_id"] == object)
            .unwrap_or_else(|| panic!("no audit entry for {object}: {entries:#?}"))["key_id"]
            .clone()
    };
    assert_eq!(by_key(&third_id), json!(hash(&second_key)[..12]));
    let first_create = entries
        .iter()
        .filter(|e| e["route"] == "/v1/account/keys/create")
        .find(|e| e["object_id"] != third_id.as_str())
        .unwrap();
    assert_eq!(first_create["key_id"], json!(hash(ADMIN_KEY)[..12]));
}

/// The database of a server to be started on a store made by hand: a
/// fresh one of the backend under test.
fn fresh_url(dir: &tempfile::TempDir) -> String {
    match Backend::from_env() {
        Backend::Sqlite => format!("sqlite://{}", dir.path().join("old.db").display()),
        Backend::Postgres => fresh_pg_database().0,
    }
}

#[tokio::test]
async fn an_account_made_before_api_keys_existed_still_authenticates() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_url(&dir);
    let before = parasol::store::version_creating("api_keys").unwrap() - 1;
    let old = parasol::store::Store::open_at_version(
        &parasol::store::StoreOptions {
            url: url.clone(),
            max_connections: 1,
        },
        parasol::store::SqliteSync::Full,
        before,
    )
    .await
    .unwrap();
    let key = "psl_made_by_an_older_parasol_0123456789";
    let id = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO accounts (id, name, key_hash, is_admin, mcp_read_only, created_at)
         VALUES ($1, 'veteran', $2, 1, 0, 1700000000000)",
    )
    .bind(id.to_string())
    .bind(hash(key))
    .execute(old.pool())
    .await
    .unwrap();
    old.close().await;

    let s = Server::start(Opts {
        database_url: Some(url),
        ..Opts::default()
    });
    let c = s.client(key);
    let me = c.get("/v1/account").await.expect(200);
    assert_eq!(me["id"], id.to_string());
    assert_eq!(me["name"], "veteran");
    let listed = keys(&c).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["name"], "default");
    assert_eq!(listed[0]["id"], id.to_string());
    assert_eq!(listed[0]["created_at"], "2023-11-14T22:13:20Z");
    // The server saw an account, so it made no admin of its own.
    s.admin()
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");
    // And the migrated key can be replaced like any other.
    let (_, fresh) = create_key(&c, "new").await;
    let fresh = s.client(&fresh);
    fresh
        .post_empty(&format!("/v1/account/keys/{id}/revoke"))
        .await
        .expect(200);
    c.get("/v1/account").await.expect_error(401, "unauthorized");
    fresh.get("/v1/account").await.expect(200);
}

/// Needs PostgreSQL whatever `PARASOL_TEST_BACKEND` says (replicas share
/// one database), so scripts/test.sh runs it in the PostgreSQL pass only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_refuse_a_key_revoked_on_another_replica_at_the_next_request() {
    let (url, _name) = fresh_pg_database();
    let opts = Opts {
        database_url: Some(url),
        ..Opts::default()
    };
    let one = Server::start(opts.clone());
    let two = Server::start(opts);
    let (id, key) = create_key(&one.admin(), "roaming").await;
    // Used on replica two first, so it has seen (and could have kept) it.
    let on_two = two.client(&key);
    let me = on_two.get("/v1/account").await.expect(200);
    on_two.get("/v1/instances/types").await.expect(200);

    one.admin()
        .post_empty(&format!("/v1/account/keys/{id}/revoke"))
        .await
        .expect(200);
    on_two
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");
    one.client(&key)
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");
    // The other keys of the account are untouched on both.
    assert_eq!(two.admin().get("/v1/account").await.expect(200), me);
    // Keys made on one replica work on the other at once.
    let (_, made_on_two) = create_key(&two.admin(), "other").await;
    one.client(&made_on_two)
        .get("/v1/account")
        .await
        .expect(200);
}

/// This replica's `parasol_api_key_checks_total{source}` and whether its
/// cache serves now.
async fn key_checks(s: &Server) -> (u64, u64, bool) {
    (
        metric(s, "parasol_api_key_checks_total{source=\"cache\"}").await as u64,
        metric(s, "parasol_api_key_checks_total{source=\"store\"}").await as u64,
        metric(s, "parasol_api_key_cache_serving").await == 1.0,
    )
}

/// Waits until every replica answers keys from its cache (it has started
/// listening and holds a lease).
async fn until_serving(replicas: &[&Server]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for s in replicas {
        while !key_checks(s).await.2 {
            assert!(
                Instant::now() < deadline,
                "a replica's key cache never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Ends the connection a replica hears key changes on, as a network
/// fault or a database restart would.
async fn kill_listener(url: &str, s: &Server) {
    let replica = s.admin().get("/admin/reconciler").await.expect(200)["replica"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let name = parasol::auth_sync::listener_name(replica);
    crate::harness::pg_exec(
        url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = '{name}'"
        ),
    )
    .unwrap();
}

fn three_replicas(url: &str) -> Vec<Server> {
    let opts = Opts {
        database_url: Some(url.to_string()),
        ..Opts::default()
    };
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let o = opts.clone();
            std::thread::spawn(move || Server::start(o))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Needs PostgreSQL (see above). Keys are answered from each replica's
/// memory, with no lookup, and a revoke on one answers only once all
/// three have dropped the key: the next request anywhere is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_answer_keys_from_memory_and_refuse_a_revoked_one_everywhere_at_once() {
    let (url, _name) = fresh_pg_database();
    let r = three_replicas(&url);
    until_serving(&[&r[0], &r[1], &r[2]]).await;
    let (id, key) = create_key(&r[0].admin(), "roaming").await;
    for s in &r {
        let c = s.client(&key);
        c.get("/v1/account").await.expect(200);
        let (hits, lookups, _) = key_checks(s).await;
        for _ in 0..20 {
            c.get("/v1/account").await.expect(200);
        }
        let (hits_after, lookups_after, serving) = key_checks(s).await;
        assert!(serving);
        assert_eq!(lookups_after, lookups, "a cached key was looked up again");
        assert_eq!(hits_after - hits, 20);
    }

    let t0 = Instant::now();
    r[1].admin()
        .post_empty(&format!("/v1/account/keys/{id}/revoke"))
        .await
        .expect(200);
    let took = t0.elapsed();
    for s in &r {
        s.client(&key)
            .get("/v1/account")
            .await
            .expect_error(401, "unauthorized");
    }
    // Every replica confirmed at once: no waiting for a lease to end.
    assert!(
        took < parasol::auth_sync::ACK_WAIT,
        "the revoke took {took:?}"
    );

    // An account's change reaches the cached account on every replica.
    let me = r[0].admin().get("/v1/account").await.expect(200);
    for s in &r {
        s.admin().get("/v1/account").await.expect(200);
    }
    r[2].admin()
        .post(
            &format!("/v1/admin/accounts/{}/update", me["id"].as_str().unwrap()),
            json!({ "name": "renamed" }),
        )
        .await
        .expect(200);
    for s in &r {
        assert_eq!(
            s.admin().get("/v1/account").await.expect(200)["name"],
            "renamed"
        );
    }
}

/// Needs PostgreSQL (see above). A replica whose notification connection
/// is cut stops answering from memory until it has listened again and
/// emptied its cache; a revoke made meanwhile is refused there too, and
/// a revoke waits out a replica that died without confirming.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_whose_listener_is_cut_or_that_die_still_refuse_revoked_keys() {
    let (url, _name) = fresh_pg_database();
    let mut r = three_replicas(&url);
    until_serving(&[&r[0], &r[1], &r[2]]).await;
    let admin = r[0].admin();
    let mut made = vec![];
    for i in 0..4 {
        made.push(create_key(&admin, &format!("k{i}")).await);
    }
    let use_everywhere = |key: String, r: &Vec<Server>| {
        let clients: Vec<Client> = r.iter().map(|s| s.client(&key)).collect();
        async move {
            for c in clients {
                c.get("/v1/account").await.expect(200);
            }
        }
    };

    // Cut, then revoke before it can have listened again.
    for (id, key) in &made[..2] {
        use_everywhere(key.clone(), &r).await;
        kill_listener(&url, &r[1]).await;
        admin
            .post_empty(&format!("/v1/account/keys/{id}/revoke"))
            .await
            .expect(200);
        for s in &r {
            s.client(key)
                .get("/v1/account")
                .await
                .expect_error(401, "unauthorized");
        }
    }
    // It listens again and answers from memory again; a later revoke
    // still holds there.
    until_serving(&[&r[1]]).await;
    let (id, key) = &made[2];
    use_everywhere(key.clone(), &r).await;
    let (hits, _, _) = key_checks(&r[1]).await;
    r[1].client(key).get("/v1/account").await.expect(200);
    assert_eq!(
        key_checks(&r[1]).await.0,
        hits + 1,
        "not served from memory"
    );
    admin
        .post_empty(&format!("/v1/account/keys/{id}/revoke"))
        .await
        .expect(200);
    r[1].client(key)
        .get("/v1/account")
        .await
        .expect_error(401, "unauthorized");

    // A replica killed outright never confirms: the revoke waits until its
    // lease has ended (it can serve nothing after that), then answers.
    let (id, key) = &made[3];
    use_everywhere(key.clone(), &r).await;
    r[2].kill();
    let t0 = Instant::now();
    admin
        .post_empty(&format!("/v1/account/keys/{id}/revoke"))
        .await
        .expect(200);
    let took = t0.elapsed();
    assert!(
        took < parasol::auth_sync::ACK_WAIT + parasol::auth_sync::LEASE + Duration::from_secs(3),
        "the revoke took {took:?}"
    );
    for s in &r[..2] {
        s.client(key)
            .get("/v1/account")
            .await
            .expect_error(401, "unauthorized");
    }
}
