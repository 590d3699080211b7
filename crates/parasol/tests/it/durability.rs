//! Durable commits by default, the opt-out, and group commit seen from
//! outside: a burst of creates answered only once committed.

use std::collections::BTreeSet;
use std::process::Command;

use crate::harness::{binary, default_create, Backend, Opts, Server, UNLIMITED};

#[tokio::test]
async fn the_start_up_log_names_the_durable_commit_setting_in_force() {
    let s = Server::start(Opts::default());
    let log = s.log();
    let expected = match Backend::from_env() {
        Backend::Sqlite => "synchronous = full".to_string(),
        // PostgreSQL's own setting, which Parasol never changes: the log
        // names what the server runs with (the tests' throwaway cluster
        // turns it off for speed, scripts/pg.sh).
        Backend::Postgres => format!("synchronous_commit = {}", pg_synchronous_commit(&s).await),
    };
    assert!(
        log.contains(&expected),
        "no {expected:?} in the start-up log:\n{log}"
    );
    if expected.ends_with("= off") {
        assert!(log.contains("NOT durable"), "{log}");
    } else {
        assert!(log.contains("commit durability in force"), "{log}");
    }
}

/// The `synchronous_commit` the test database runs with.
async fn pg_synchronous_commit(s: &Server) -> String {
    let store = s.store().await;
    let value: String = sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    value
}

#[tokio::test]
async fn sqlite_normal_sync_is_an_explicit_choice_and_logged_as_such() {
    let s = Server::start(Opts::default().args(&["--sqlite-synchronous", "normal"]));
    let log = s.log();
    match Backend::from_env() {
        Backend::Sqlite => assert!(
            log.contains("synchronous = normal") && log.contains("not a power loss"),
            "{log}"
        ),
        // A SQLite setting: PostgreSQL's commits stay as they were.
        Backend::Postgres => {
            let expected = format!("synchronous_commit = {}", pg_synchronous_commit(&s).await);
            assert!(log.contains(&expected), "{log}")
        }
    }
    s.admin().create_instance("normal-sync").await;
}

#[test]
fn an_unknown_sync_setting_is_refused_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .args(["--sqlite-synchronous", "sometimes"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--sqlite-synchronous") && err.contains("sometimes"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_sharing_commits_takes_exactly_the_free_slots_and_survives_sigkill() {
    let mut s = Server::start(
        Opts {
            capacity: Some(40),
            ..Opts::default()
        }
        .args(UNLIMITED),
    );
    let c = s.admin();
    // 96 creates at once for 40 slots: they share transactions, and the
    // refused ones roll back only themselves.
    let tasks: Vec<_> = (0..96)
        .map(|n| {
            let c = c.clone();
            tokio::spawn(async move {
                c.post(
                    "/v1/instances/create",
                    default_create(&format!("group-{n}")),
                )
                .await
            })
        })
        .collect();
    let mut ids = BTreeSet::new();
    let mut refused = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => {
                ids.insert(r.body["id"].as_str().unwrap().to_string());
            }
            _ => {
                r.expect_error(409, "insufficient_capacity");
                refused += 1;
            }
        }
    }
    assert_eq!((ids.len(), refused), (40, 56));
    // Every acknowledged create was committed before its answer.
    s.kill();
    s.restart();
    let c = s.admin();
    let list = c.get("/v1/instances").await.expect(200);
    let stored: BTreeSet<String> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(stored, ids);
    s.assert_capacity_counts_agree().await;
}
