use serde_json::json;

use crate::harness::{public_key, Opts, Server};

#[tokio::test]
async fn first_key_becomes_default_and_keys_round_trip_byte_for_byte() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    // Odd spacing and a trailing newline must come back exactly as sent.
    let sent = format!("{}  extra comment words\n", public_key());
    let a = c
        .post(
            "/v1/sshkeys/add",
            json!({"name": "laptop", "public_key": sent}),
        )
        .await
        .expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = c.add_key("laptop").await; // duplicate names are allowed
    let info = c.get(&format!("/v1/sshkeys/{a}/info")).await.expect(200);
    assert_eq!(info["public_key"], sent);
    assert_eq!(info["is_default"], true);
    let list = c.get("/v1/sshkeys").await.expect(200);
    let keys = list["ssh_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys.iter().filter(|k| k["is_default"] == true).count(), 1);

    // setdefault moves the default; exactly one default remains.
    c.post_empty(&format!("/v1/sshkeys/{b}/setdefault"))
        .await
        .expect(200);
    let list = c.get("/v1/sshkeys").await.expect(200);
    for k in list["ssh_keys"].as_array().unwrap() {
        assert_eq!(k["is_default"], k["id"] == b.as_str(), "{k}");
    }
}

#[tokio::test]
async fn default_and_in_use_keys_cannot_be_deleted() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let default = c.add_key("default").await;
    let other = c.add_key("other").await;
    let e = c
        .post_empty(&format!("/v1/sshkeys/{default}/delete"))
        .await
        .expect_error(409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("default"));

    let mut body = crate::harness::default_create("uses-key");
    body["ssh_key_id"] = json!(other);
    let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    assert_eq!(info["ssh_key_id"], other.as_str());
    let e = c
        .post_empty(&format!("/v1/sshkeys/{other}/delete"))
        .await
        .expect_error(409, "conflict");
    assert!(e["message"].as_str().unwrap().contains("in use"));

    // Once the instance is gone, the key can go.
    c.post_empty(&format!("/v1/instances/{id}/delete"))
        .await
        .expect(200);
    c.wait_gone(&id).await;
    c.post_empty(&format!("/v1/sshkeys/{other}/delete"))
        .await
        .expect(200);
    c.get(&format!("/v1/sshkeys/{other}/info"))
        .await
        .expect_error(404, "not_found");
    assert_eq!(
        c.get("/v1/sshkeys").await.expect(200)["ssh_keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn create_without_a_key_id_uses_the_default_key() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    let _first = c.add_key("first").await;
    let second = c.add_key("second").await;
    c.post_empty(&format!("/v1/sshkeys/{second}/setdefault"))
        .await
        .expect(200);
    let mut body = crate::harness::default_create("default-key");
    body["ssh_key_id"] = json!(null);
    let id = c.post("/v1/instances/create", body).await.expect(200)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let info = c.get(&format!("/v1/instances/{id}/info")).await.expect(200);
    assert_eq!(info["ssh_key_id"], second.as_str());
}

#[tokio::test]
async fn invalid_public_keys_are_refused_naming_the_field() {
    let s = Server::start(Opts::default());
    let c = s.admin();
    for bad in [
        "",
        "ssh-rsa",
        "ssh-ed25519 !!!notbase64",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",
        "-----BEGIN OPENSSH PRIVATE KEY-----",
    ] {
        let e = c
            .post("/v1/sshkeys/add", json!({"name": "k", "public_key": bad}))
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(e["field"], "public_key", "{bad:?}: {e}");
    }
    let e = c
        .post(
            "/v1/sshkeys/add",
            json!({"name": "", "public_key": public_key()}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(e["field"], "name");
    assert_eq!(
        c.get("/v1/sshkeys").await.expect(200)["ssh_keys"],
        json!([])
    );
}
