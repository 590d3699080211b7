//! Roles on API keys: a viewer reads and is refused every POST of the
//! router's own route table, a member is refused the owners' routes, keys
//! made before roles are owners, and nobody mints a key above their role.

use parasol::http::roles::needed;
use parasol::http::{RouteEntry, ADMIN_ROUTES, V1_ROUTES};
use parasol_api::Role;
use serde_json::json;

use crate::harness::{concrete, Opts, Server};

async fn key_with_role(c: &crate::harness::Client, role: &str) -> String {
    let made = c
        .post(
            "/v1/account/keys/create",
            json!({"name": format!("{role}-key"), "role": role}),
        )
        .await
        .expect(200);
    made["api_key"].as_str().unwrap().to_string()
}

/// The roles of the account's keys, oldest first.
async fn key_roles(c: &crate::harness::Client) -> Vec<String> {
    let keys = c.get("/v1/account/keys").await.expect(200);
    keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["role"].as_str().unwrap().to_string())
        .collect()
}

fn posts() -> impl Iterator<Item = &'static RouteEntry> {
    V1_ROUTES
        .iter()
        .chain(ADMIN_ROUTES)
        .filter(|r| r.method == "post")
}

#[tokio::test]
async fn a_viewer_key_reads_and_is_refused_every_post_route_naming_the_role() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let viewer = s.client(&key_with_role(&admin, "viewer").await);
    let member = s.client(&key_with_role(&admin, "member").await);

    // Reads work, the account's keys list shows each key's role, and the
    // admin's own key (made before any role was asked for) is an owner.
    viewer.get("/v1/instances").await.expect(200);
    viewer.get("/v1/instances/types").await.expect(200);
    let roles = key_roles(&viewer).await;
    assert_eq!(roles, ["owner", "viewer", "member"]);

    let mut walked = 0;
    for r in posts() {
        let path = concrete(r.path);
        let need = needed(&axum::http::Method::POST, r.path);
        if r.path == "/v1/account/keys/personal" {
            // Open to a viewer person (capped by their role), but an
            // account's key is no person.
            assert_eq!(need, Role::Viewer);
            let err = viewer
                .post(&path, json!({"name": "x"}))
                .await
                .expect_error(403, "forbidden");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap()
                    .contains("made by a person"),
                "{err}"
            );
            continue;
        }
        assert!(need > Role::Viewer, "{} is open to viewers", r.path);
        let err = viewer
            .post(&path, json!({}))
            .await
            .expect_error(403, "forbidden");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!("needs the {need} role"))
                && msg.contains("has the viewer role")
                && msg.contains(r.path),
            "{path}: {msg}"
        );
        let from_member = member.post(&path, json!({})).await;
        if need == Role::Owner {
            let err = from_member.expect_error(403, "forbidden");
            assert!(
                err["message"]
                    .as_str()
                    .unwrap()
                    .contains("needs the owner role"),
                "{path}: {err}"
            );
        } else {
            assert_ne!(
                from_member.status.as_u16(),
                403,
                "{path}: a member was refused: {:#}",
                from_member.body
            );
        }
        walked += 1;
    }
    assert!(walked >= 30, "only {walked} POST routes in the table");

    // Nothing was made by the refused calls, and a member does launch.
    assert_eq!(
        admin.get("/v1/instances").await.expect(200)["instances"],
        json!([])
    );
    member
        .post("/v1/instances/create", crate::harness::default_create("m"))
        .await
        .expect(200);
}

#[tokio::test]
async fn nobody_mints_a_key_above_their_role_and_a_new_key_takes_its_makers_role() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let err = admin
        .post(
            "/v1/account/keys/create",
            json!({"name": "x", "role": "superuser"}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "role", "{err}");

    // An owner's key without a role is an owner key.
    let owner = s.client(&{
        let made = admin
            .post("/v1/account/keys/create", json!({"name": "plain"}))
            .await
            .expect(200);
        made["api_key"].as_str().unwrap().to_string()
    });
    let viewer_key = key_with_role(&owner, "viewer").await;
    let viewer = s.client(&viewer_key);
    // The viewer cannot reach the create route at all.
    viewer
        .post(
            "/v1/account/keys/create",
            json!({"name": "up", "role": "owner"}),
        )
        .await
        .expect_error(403, "forbidden");
    let roles = key_roles(&admin).await;
    assert_eq!(roles, ["owner", "owner", "viewer"]);
}

#[tokio::test]
async fn owners_invite_by_email_and_members_and_viewers_only_read_the_members() {
    let s = Server::start(Opts::default());
    let admin = s.admin();
    let member = s.client(&key_with_role(&admin, "member").await);
    let done = admin
        .post(
            "/v1/account/members/invite",
            json!({"email": "Ada@Example.com", "role": "member"}),
        )
        .await
        .expect(200);
    assert_eq!(done["email"], "ada@example.com");
    assert_eq!(done["role"], "member");
    assert!(done["created_at"].is_string(), "{done}");
    let listed = member.get("/v1/account/members").await.expect(200);
    assert_eq!(listed["members"], json!([]));
    assert_eq!(listed["invites"][0]["email"], "ada@example.com");
    assert_eq!(listed["invites"][0]["role"], "member");
    member
        .post(
            "/v1/account/members/invite",
            json!({"email": "bob@example.com", "role": "viewer"}),
        )
        .await
        .expect_error(403, "forbidden");
    let err = admin
        .post(
            "/v1/account/members/invite",
            json!({"email": "not an email", "role": "viewer"}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "email");
    // The wire types name the field of a bad role, a missing field or an
    // unknown one.
    let err = admin
        .post(
            "/v1/account/members/invite",
            json!({"email": "bob@example.com", "role": "boss"}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "role");
    let err = admin
        .post("/v1/account/members/invite", json!({"role": "viewer"}))
        .await
        .expect_error(400, "invalid_request");
    assert!(err["message"].as_str().unwrap().contains("email"), "{err}");
    let err = admin
        .post(
            &format!("/v1/account/members/{}/update", uuid::Uuid::new_v4()),
            json!({"role": "viewer", "colour": "red"}),
        )
        .await
        .expect_error(400, "invalid_request");
    assert!(err["message"].as_str().unwrap().contains("colour"), "{err}");
    admin
        .post(
            &format!("/v1/account/members/{}/remove", uuid::Uuid::new_v4()),
            json!({}),
        )
        .await
        .expect_error(404, "not_found");
    admin
        .post(
            "/v1/account/members/invites/delete",
            json!({"email": "ADA@example.com"}),
        )
        .await
        .expect(200);
    let listed = admin.get("/v1/account/members").await.expect(200);
    assert_eq!(listed["invites"], json!([]));
    admin
        .post(
            "/v1/account/members/invites/delete",
            json!({"email": "ada@example.com"}),
        )
        .await
        .expect_error(404, "not_found");
}
