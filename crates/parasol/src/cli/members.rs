//! `parasol members ...`: the people of the account and their roles
//! (list, invite, role, remove). A person is named by email or id; an
//! email that has only an invitation names the invitation.

use parasol_api::{
    Confirmation, DeleteInvitationRequest, Invitation, InvitationDeleted, InviteMemberRequest,
    MembersResponse, Role, UpdateMemberRequest,
};

use serde::de::DeserializeOwned;

use super::client::{Answer, Api, CliError};
use super::keys::{parse_role, when};
use super::output::{print_raw, Format, Table};
use super::sshkeys::seg;

/// `parasol members` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum MembersCommand {
    /// List the account's people with their roles, and the invitations
    /// not yet taken up.
    List,
    /// Invite by email: whoever signs in with it joins with the role
    /// (inviting again changes the role).
    Invite {
        email: String,
        /// viewer (read-only), member or owner.
        #[arg(long, value_parser = parse_role)]
        role: Role,
    },
    /// Change a person's role (or an invitation's, by its email).
    Role {
        /// Email or id (the ID column of `members list`).
        who: String,
        /// viewer, member or owner.
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Remove a person from the account (their sessions and personal keys
    /// end at once), or withdraw an invitation by its email.
    Remove {
        /// Email or id (the ID column of `members list`).
        who: String,
    },
}

/// Whom `who` names among the account's people and invitations.
enum Named {
    Member(String),
    Invitation(String),
}

async fn find(api: &Api, who: &str) -> Result<Named, CliError> {
    let list: MembersResponse = api.get("/account/members").await?.parse()?;
    let wanted = who.trim().to_ascii_lowercase();
    let member = list.members.iter().find(|m| {
        m.id.to_string() == wanted
            || m.email
                .as_deref()
                .is_some_and(|e| e.eq_ignore_ascii_case(&wanted))
    });
    if let Some(m) = member {
        return Ok(Named::Member(m.id.to_string()));
    }
    if let Some(i) = list.invites.iter().find(|i| i.email == wanted) {
        return Ok(Named::Invitation(i.email.clone()));
    }
    Err(CliError::new(format!(
        "no member or invitation {who:?} in this account; see `parasol members list`"
    )))
}

/// Runs one `members` subcommand.
pub async fn run(api: &Api, format: Format, command: MembersCommand) -> Result<(), CliError> {
    match command {
        MembersCommand::List => {
            let answer = api.get("/account/members").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let list: MembersResponse = answer.parse()?;
            let mut t = Table::new(&["ID", "EMAIL", "NAME", "ROLE", "FROM", "LAST SIGN-IN"]);
            for m in &list.members {
                let source = serde_json::to_value(m.source).unwrap_or_default();
                t.row(vec![
                    m.id.to_string().into(),
                    m.email.clone().unwrap_or_else(|| "-".into()).into(),
                    m.name.clone().unwrap_or_else(|| "-".into()).into(),
                    m.role.as_str().into(),
                    source.as_str().unwrap_or("-").into(),
                    when(m.last_sign_in_at).into(),
                ]);
            }
            for i in &list.invites {
                t.row(vec![
                    "-".into(),
                    i.email.clone().into(),
                    "-".into(),
                    i.role.as_str().into(),
                    format!("invited {}", when(Some(i.created_at))).into(),
                    "never".into(),
                ]);
            }
            t.print("No members and no invitations.");
            Ok(())
        }
        MembersCommand::Invite { email, role } => {
            let answer = invite(api, email, role).await?;
            show(format, &answer, |i: Invitation| {
                format!("Invited {} as {}.", i.email, i.role)
            })
        }
        MembersCommand::Role { who, role } => match find(api, &who).await? {
            Named::Member(id) => {
                let answer = api
                    .post(
                        &format!("/account/members/{}/update", seg(&id)),
                        Some(&UpdateMemberRequest { role }),
                    )
                    .await?;
                show(format, &answer, |c: Confirmation| {
                    format!("Member {} is now {role}.", c.id)
                })
            }
            Named::Invitation(email) => {
                let answer = invite(api, email, role).await?;
                show(format, &answer, |i: Invitation| {
                    format!("Invitation of {} is now {}.", i.email, i.role)
                })
            }
        },
        MembersCommand::Remove { who } => match find(api, &who).await? {
            Named::Member(id) => {
                let answer = api
                    .post::<()>(&format!("/account/members/{}/remove", seg(&id)), None)
                    .await?;
                show(format, &answer, |c: Confirmation| {
                    format!("Member {} {}.", c.id, c.status)
                })
            }
            Named::Invitation(email) => {
                let answer = api
                    .post(
                        "/account/members/invites/delete",
                        Some(&DeleteInvitationRequest { email }),
                    )
                    .await?;
                show(format, &answer, |d: InvitationDeleted| {
                    format!("Invitation of {} withdrawn.", d.email)
                })
            }
        },
    }
}

async fn invite(api: &Api, email: String, role: Role) -> Result<Answer, CliError> {
    api.post(
        "/account/members/invite",
        Some(&InviteMemberRequest { email, role }),
    )
    .await
}

/// Prints the API's answer as it came (`-o json`), or the line `say`
/// makes of it.
fn show<T: DeserializeOwned>(
    format: Format,
    answer: &Answer,
    say: impl FnOnce(T) -> String,
) -> Result<(), CliError> {
    if format == Format::Json {
        print_raw(answer);
    } else {
        println!("{}", say(answer.parse()?));
    }
    Ok(())
}
