//! `/v1/account/members/*`: the people of the account and their roles, and
//! invitations by email. Anyone of the account may list them; owners
//! invite, change roles and remove ([`super::roles`]). Removing a
//! membership ends the person's sessions and personal keys in the account
//! from the next request, on every replica.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Extension;
use parasol_api as api;

use super::{ok, path_id, AppRef, Body, Principal};
use crate::clock::from_millis;
use crate::error::ApiError;
use crate::store::{self, Account, Source};

fn member(m: &store::Member) -> api::Member {
    api::Member {
        id: m.person.id,
        email: m.person.email.clone(),
        name: m.person.name.clone(),
        issuer: m.person.issuer.clone(),
        role: m.role,
        source: match m.source {
            Source::Rule => api::MemberSource::Rule,
            Source::Invite => api::MemberSource::Invite,
        },
        last_sign_in_at: m.person.last_sign_in_at_ms.map(from_millis),
    }
}

fn invitation(i: &store::Invite) -> api::Invitation {
    api::Invitation {
        email: i.email.clone(),
        role: i.role,
        created_at: from_millis(i.created_at_ms),
    }
}

/// An email as far as an invitation needs: one `@` with text either side,
/// no spaces; the provider's sign-in proves the rest.
fn check_email(email: &str) -> Result<(), ApiError> {
    let e = email.trim();
    let ok = e.len() <= 254
        && !e.chars().any(char::is_whitespace)
        && e.split_once('@').is_some_and(|(user, host)| {
            !user.is_empty() && host.contains('.') && !host.contains('@')
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            "email",
            format!("{email:?} is not an email address"),
        ))
    }
}

/// `GET /v1/account/members`.
pub async fn list(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
) -> Result<Response, ApiError> {
    let members = app.store.members_of(account.id).await?;
    let invites = app.store.invites_of(account.id).await?;
    Ok(ok(api::MembersResponse {
        members: members.iter().map(member).collect(),
        invites: invites.iter().map(invitation).collect(),
    }))
}

/// `POST /v1/account/members/invite`: whoever signs in with this email
/// joins the account with the role (an owner invites at most their own).
/// Inviting an email again changes the invitation's role.
pub async fn invite(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Extension(caller): Extension<Principal>,
    Body(req): Body<api::InviteMemberRequest>,
) -> Result<Response, ApiError> {
    check_email(&req.email)?;
    if req.role > caller.role {
        return Err(ApiError::forbidden(format!(
            "a {} cannot invite with the {} role",
            caller.role, req.role
        ))
        .with_field("role"));
    }
    app.store
        .invite(account.id, &req.email, req.role, app.clock.now_ms())
        .await?;
    let email = store::normal_email(&req.email);
    // Read back rather than echo: a second invitation keeps the first's
    // date.
    let made = app
        .store
        .invites_of(account.id)
        .await?
        .into_iter()
        .find(|i| i.email == email)
        .ok_or_else(|| ApiError::not_found("invitation"))?;
    Ok(ok(invitation(&made)))
}

/// `POST /v1/account/members/invites/delete`.
pub async fn uninvite(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Body(req): Body<api::DeleteInvitationRequest>,
) -> Result<Response, ApiError> {
    if !app.store.delete_invite(account.id, &req.email).await? {
        return Err(ApiError::not_found("invitation"));
    }
    Ok(ok(api::InvitationDeleted {
        email: store::normal_email(&req.email),
        status: "deleted".into(),
    }))
}

/// `POST /v1/account/members/{id}/update`: a new role (which the rules no
/// longer change at the person's next sign-in).
pub async fn update(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
    Body(req): Body<api::UpdateMemberRequest>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "member")?;
    if !app.store.set_member_role(account.id, id, req.role).await? {
        return Err(ApiError::not_found("member"));
    }
    app.keys.forget_person(id);
    crate::auth_sync::everywhere(&app).await?;
    Ok(ok(api::Confirmation {
        id,
        status: "updated".into(),
    }))
}

/// `POST /v1/account/members/{id}/remove`.
pub async fn remove(
    State(app): State<AppRef>,
    Extension(account): Extension<Account>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = path_id(&id, "member")?;
    if !app.store.remove_member(account.id, id).await? {
        return Err(ApiError::not_found("member"));
    }
    app.keys.forget_person(id);
    crate::auth_sync::everywhere(&app).await?;
    Ok(ok(api::Confirmation {
        id,
        status: "removed".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_need_a_user_and_a_dotted_host() {
        assert!(check_email("ada@example.com").is_ok());
        for bad in [
            "ada",
            "@example.com",
            "ada@localhost",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(check_email(bad).is_err(), "{bad}");
        }
    }
}
