//! `parasol backup` / `restore` and `parasol store copy`: round trips on a
//! store holding every kind of object, compared row by row.

use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::harness::{binary, fresh_pg_database, Opts, Server};

/// Runs `parasol ARGS` with no inherited store settings; (success, stderr).
fn parasol(args: &[&str], data_dir: &Path) -> (bool, String) {
    let out = Command::new(binary())
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("PARASOL_CONFIG")
        .env_remove("PARASOL_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn open(url: &str) -> parasol::store::Store {
    parasol::store::Store::open(&parasol::store::StoreOptions {
        url: url.to_string(),
        max_connections: 2,
    })
    .await
    .unwrap()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("parasol.db").display())
}

/// A server on SQLite (whatever PARASOL_TEST_BACKEND says: these commands
/// are about the embedded store) in the returned directory, whose store
/// holds accounts, keys, instances, a cluster, a volume, a template,
/// events, audit entries and capacity counters.
async fn populated() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Opts {
        database_url: Some(sqlite_url(dir.path())),
        ..Opts::default()
    });
    let c = s.admin();
    c.add_key("k1").await;
    let id = c.create_instance("i1").await;
    c.wait_status(&id, "active").await;
    let doomed = c.create_instance("i2").await;
    c.wait_status(&doomed, "active").await;
    c.post_empty(&format!("/v1/instances/{doomed}/delete"))
        .await
        .expect(200);
    c.post(
        "/v1/clusters/create",
        json!({"name": "c1", "cloud": "denvr", "region": "houston-usa-1",
               "cluster_type": "H100_sxm5x8", "num_instances": 2}),
    )
    .await
    .expect(200);
    c.post(
        "/v1/volumes/create",
        json!({"cloud": "lambdalabs", "region": "us-east-1", "size_in_gb": 10, "name": "v1"}),
    )
    .await
    .expect(200);
    c.post("/v1/templates/save", json!({"name": "t1", "tags": ["a"]}))
        .await
        .expect(200);
    // An alert that fires at once records an event.
    let mut body = crate::harness::default_create("alerting");
    body["alert"] = json!({"spend_threshold": "0.00"});
    c.post("/v1/instances/create", body).await.expect(200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !c.get("/v1/events").await.expect(200)["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["kind"] == "alert.spend_threshold")
    {
        assert!(std::time::Instant::now() < deadline, "no event recorded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (ok, err) = parasol(&["accounts", "create", "second"], dir.path());
    assert!(ok, "{err}");
    (s, dir)
}

/// Tables that must have rows for the round trip to mean something.
const KINDS: &[&str] = &[
    "accounts",
    "ssh_keys",
    "instances",
    "clusters",
    "volumes",
    "templates",
    "events",
    "audit_log",
];

fn assert_has_every_kind(dump: &parasol::store::Dump) {
    for t in KINDS {
        assert!(
            dump.get(*t).is_some_and(|rows| !rows.is_empty()),
            "no rows in {t}: {:?}",
            dump.keys().collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn backup_while_serving_then_restore_gives_back_every_row() {
    let (mut s, dir) = populated().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("live.db");
    let (ok, err) = parasol(&["backup", file.to_str().unwrap()], dir.path());
    assert!(ok, "backup while serving: {err}");
    let (ok, err) = parasol(&["backup", file.to_str().unwrap()], dir.path());
    assert!(!ok && err.contains("already exists"), "{err}");

    // Quiesce, and take the reference backup of a store nobody writes.
    s.terminate();
    let file2 = tmp.path().join("stopped.db");
    let (ok, err) = parasol(&["backup", file2.to_str().unwrap()], dir.path());
    assert!(ok, "{err}");
    let source = open(&sqlite_url(dir.path())).await;
    let want = source.dump().await.unwrap();
    source.close().await;
    assert_has_every_kind(&want);

    let restored = tmp.path().join("restored");
    let (ok, err) = parasol(&["restore", file2.to_str().unwrap()], &restored);
    assert!(ok, "restore: {err}");
    let got = open(&sqlite_url(&restored)).await.dump().await.unwrap();
    assert_eq!(got, want, "the restored store differs");
    // Only into an empty data directory.
    let (ok, err) = parasol(&["restore", file2.to_str().unwrap()], &restored);
    assert!(!ok && err.contains("already exists"), "{err}");

    // The live backup is a usable store too, with everything made before it.
    let live = tmp.path().join("live-restored");
    let (ok, err) = parasol(&["restore", file.to_str().unwrap()], &live);
    assert!(ok, "{err}");
    let live_dump = open(&sqlite_url(&live)).await.dump().await.unwrap();
    assert_has_every_kind(&live_dump);
    let ids = |d: &parasol::store::Dump, t: &str| -> Vec<String> {
        d[t].iter().map(|r| r["id"].to_string()).collect()
    };
    for t in [
        "accounts",
        "ssh_keys",
        "instances",
        "clusters",
        "volumes",
        "templates",
    ] {
        assert_eq!(ids(&live_dump, t), ids(&want, t), "{t}");
    }
}

#[tokio::test]
async fn store_copy_moves_a_sqlite_store_into_an_empty_postgres_database() {
    let (mut s, dir) = populated().await;
    s.terminate();
    let source = open(&sqlite_url(dir.path())).await;
    let want = source.dump().await.unwrap();
    source.close().await;
    assert_has_every_kind(&want);

    let (url, _name) = fresh_pg_database();
    let (ok, err) = parasol(&["store", "copy", "--to", &url], dir.path());
    assert!(ok, "store copy: {err}");
    let target = open(&url).await;
    let got = target.dump().await.unwrap();
    target.close().await;
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (table, rows) in &want {
        assert_eq!(&got[table], rows, "table {table} differs after the copy");
    }
    // A second copy into the now non-empty database is refused.
    let (ok, err) = parasol(&["store", "copy", "--to", &url], dir.path());
    assert!(!ok && err.contains("not empty"), "{err}");

    // A server on the copy serves the same objects.
    let pg = Server::start(Opts {
        database_url: Some(url.clone()),
        ..Opts::default()
    });
    let listed = pg.admin().get("/v1/instances").await.expect(200);
    assert!(listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"] == "i1"));
}
