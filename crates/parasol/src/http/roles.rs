//! Which role each route needs: decided here once, by method and route
//! template, for the API (and so for MCP, whose tools call the API with
//! the caller's key) and for the console alike.
//!
//! Reading needs only `viewer`. A POST needs `member`, except under the
//! prefixes in [`RULES`]: the account's keys, webhooks and members (and
//! the admin extensions) need `owner`, and signing in or out needs no
//! more than `viewer`. A route added later is a `member` route until it
//! is listed, never an open one.

use axum::http::Method;
use parasol_api::Role;

use crate::error::ApiError;

/// Route prefixes (API and console) whose POSTs need another role than
/// `member`; the longest matching prefix wins.
const RULES: &[(&str, Role)] = &[
    ("/v1/account/keys", Role::Owner),
    ("/v1/account/members", Role::Owner),
    ("/v1/webhooks", Role::Owner),
    ("/v1/admin", Role::Owner),
    ("/admin", Role::Owner),
    ("/api-keys", Role::Owner),
    // A person's own key, capped by their role (api_keys::mint).
    ("/api-keys/personal", Role::Viewer),
    ("/v1/account/keys/personal", Role::Viewer),
    ("/webhooks", Role::Owner),
    ("/members", Role::Owner),
    // MCP's transport is a POST for reads too; each tool call is an API
    // request with the caller's key, checked on its own route.
    ("/mcp", Role::Viewer),
    ("/logout", Role::Viewer),
    ("/account", Role::Viewer),
];

/// Whether `route` is `prefix` or lies under it (segment by segment, so
/// `/webhooks` does not cover `/webhooksx`).
fn under(route: &str, prefix: &str) -> bool {
    route
        .strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The least role that may call `method` on the route template `route`.
pub fn needed(method: &Method, route: &str) -> Role {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Role::Viewer;
    }
    RULES
        .iter()
        .filter(|(prefix, _)| under(route, prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map(|(_, role)| *role)
        .unwrap_or(Role::Member)
}

/// Refuses a caller whose role is below what the route needs, with a 403
/// that names both; `who` says what carries the role ("API key",
/// "membership").
pub fn check(method: &Method, route: &str, role: Role, who: &str) -> Result<(), ApiError> {
    let need = needed(method, route);
    if role >= need {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "{method} {route} needs the {need} role; this {who} has the {role} role"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_need_viewer_changes_member_and_management_owner() {
        assert_eq!(needed(&Method::GET, "/v1/webhooks"), Role::Viewer);
        assert_eq!(needed(&Method::POST, "/v1/instances/create"), Role::Member);
        assert_eq!(
            needed(&Method::POST, "/v1/account/keys/create"),
            Role::Owner
        );
        assert_eq!(needed(&Method::POST, "/webhooks/{id}/delete"), Role::Owner);
        assert_eq!(needed(&Method::POST, "/webhooksx"), Role::Member);
        assert_eq!(needed(&Method::POST, "/logout"), Role::Viewer);
        // A longer prefix beats a shorter one.
        assert_eq!(needed(&Method::POST, "/account/switch"), Role::Viewer);
        assert_eq!(needed(&Method::POST, "/v1/account/keys/x"), Role::Owner);
        assert!(check(
            &Method::POST,
            "/v1/instances/create",
            Role::Member,
            "API key"
        )
        .is_ok());
        let e = check(
            &Method::POST,
            "/v1/instances/create",
            Role::Viewer,
            "API key",
        )
        .unwrap_err();
        assert_eq!(e.status, 403);
        assert!(e.message.contains("needs the member role"), "{}", e.message);
        assert!(e.message.contains("has the viewer role"), "{}", e.message);
    }
}
