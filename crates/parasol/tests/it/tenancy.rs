use serde_json::json;

use crate::harness::{default_create, Opts, Server};

#[tokio::test]
async fn accounts_see_only_their_own_instances_and_keys() {
    let s = Server::start(Opts::default());
    let alice = s.admin();
    let bob = s.client(&s.new_account("bob"));
    let alice_key = alice.add_key("alice").await;
    let alice_vm = alice.create_instance("alice-vm").await;
    let bob_vm = bob.create_instance("bob-vm").await;

    let listed = bob.get("/v1/instances").await.expect(200);
    let ids: Vec<_> = listed["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, vec![bob_vm.clone()]);
    assert_eq!(
        bob.get("/v1/sshkeys").await.expect(200)["ssh_keys"],
        json!([])
    );

    // Another account's ids answer exactly like unknown ids.
    bob.get(&format!("/v1/instances/{alice_vm}/info"))
        .await
        .expect_error(404, "not_found");
    bob.post(
        &format!("/v1/instances/{alice_vm}/update"),
        json!({"name": "mine"}),
    )
    .await
    .expect_error(404, "not_found");
    bob.post_empty(&format!("/v1/instances/{alice_vm}/restart"))
        .await
        .expect_error(404, "not_found");
    bob.post_empty(&format!("/v1/instances/{alice_vm}/delete"))
        .await
        .expect_error(404, "not_found");
    bob.get(&format!("/v1/sshkeys/{alice_key}/info"))
        .await
        .expect_error(404, "not_found");
    bob.post_empty(&format!("/v1/sshkeys/{alice_key}/setdefault"))
        .await
        .expect_error(404, "not_found");
    bob.post_empty(&format!("/v1/sshkeys/{alice_key}/delete"))
        .await
        .expect_error(404, "not_found");
    // Nor can bob launch with alice's key.
    let mut body = default_create("sneaky");
    body["ssh_key_id"] = json!(alice_key);
    bob.post("/v1/instances/create", body)
        .await
        .expect_error(400, "invalid_request");

    // Alice's things are untouched.
    let info = alice
        .get(&format!("/v1/instances/{alice_vm}/info"))
        .await
        .expect(200);
    assert_eq!(info["name"], "alice-vm");
    assert_ne!(info["status"], "deleting");
    assert_eq!(
        alice
            .get(&format!("/v1/sshkeys/{alice_key}/info"))
            .await
            .expect(200)["is_default"],
        true
    );
    // Non-admin accounts cannot drive the sim.
    bob.get("/admin/sim/machines")
        .await
        .expect_error(403, "forbidden");
}
