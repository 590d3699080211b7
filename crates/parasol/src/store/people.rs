//! People (who sign in through an identity provider), their memberships
//! of accounts with a role each, owners' invitations, and console
//! sessions.
//!
//! A person is not an API key: they hold no secret here, and what they may
//! do in an account is their membership's role, read anew on every request
//! (a session joins its membership), so removing a membership holds from
//! the next request on every replica.

use parasol_api::Role;
use sqlx::{AnyConnection, Row};
use uuid::Uuid;

use super::accounts::parse_uuid;
use super::api_keys::parse_role;
use super::{Account, Store, StoreResult};

/// Someone known by their identity provider's issuer and subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: Uuid,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub created_at_ms: i64,
    pub last_sign_in_at_ms: Option<i64>,
}

impl Person {
    /// How the console and the audit log name them: email, else name,
    /// else subject.
    pub fn label(&self) -> &str {
        self.email
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or(&self.subject)
    }
}

/// Where a membership came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A config rule, evaluated (and so possibly withdrawn) at each
    /// sign-in.
    Rule,
    /// An owner's invitation, kept until an owner removes it.
    Invite,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Rule => "rule",
            Source::Invite => "invite",
        }
    }

    fn parse(s: &str) -> Source {
        if s == "rule" {
            Source::Rule
        } else {
            Source::Invite
        }
    }
}

/// One of a person's accounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub account_id: Uuid,
    pub account_name: String,
    pub role: Role,
    pub source: Source,
}

/// One member of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub person: Person,
    pub role: Role,
    pub source: Source,
}

/// An invitation not yet taken up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    pub email: String,
    pub role: Role,
    pub created_at_ms: i64,
}

/// A sign-in under way at an identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    pub provider: String,
    pub nonce: String,
    pub verifier: String,
    pub redirect_uri: String,
    pub expires_at_ms: i64,
}

/// A live console session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub account_id: Uuid,
    /// A person's session; else it was made from the API key below.
    pub person_id: Option<Uuid>,
    pub key_hash: Option<String>,
    pub expires_at_ms: i64,
}

const PERSON_COLUMNS: &str =
    "p.id, p.issuer, p.subject, p.email, p.name, p.created_at, p.last_sign_in_at";

fn person_from(r: &sqlx::any::AnyRow) -> StoreResult<Person> {
    Ok(Person {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        issuer: r.try_get(1)?,
        subject: r.try_get(2)?,
        email: r.try_get(3)?,
        name: r.try_get(4)?,
        created_at_ms: r.try_get(5)?,
        last_sign_in_at_ms: r.try_get(6)?,
    })
}

/// Emails compare without regard to case (providers differ in what they
/// keep).
pub fn normal_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

async fn upsert_membership(
    conn: &mut AnyConnection,
    person: Uuid,
    account: Uuid,
    role: Role,
    source: Source,
    now_ms: i64,
) -> StoreResult<()> {
    // A rule's grant never overrides what an owner decided (an invitation,
    // a role set by hand); an invitation does take over a rule's grant.
    let sql = match source {
        Source::Rule => {
            "INSERT INTO memberships (person_id, account_id, role, source, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (person_id, account_id) DO UPDATE SET role = $3, source = $4
             WHERE memberships.source = 'rule'"
        }
        Source::Invite => {
            "INSERT INTO memberships (person_id, account_id, role, source, created_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (person_id, account_id) DO UPDATE SET role = $3, source = $4"
        }
    };
    sqlx::query(sql)
        .bind(person.to_string())
        .bind(account.to_string())
        .bind(role.as_str())
        .bind(source.as_str())
        .bind(now_ms)
        .execute(conn)
        .await?;
    Ok(())
}

async fn end_sessions_in(conn: &mut AnyConnection, person: Uuid, account: Uuid) -> StoreResult<()> {
    sqlx::query("DELETE FROM console_sessions WHERE person_id = $1 AND account_id = $2")
        .bind(person.to_string())
        .bind(account.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

impl Store {
    /// Records a sign-in: the person for this issuer and subject, made on
    /// first sight, with the email and name the provider gave now.
    pub async fn sign_in_person(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&str>,
        name: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<Person> {
        let email = email.map(normal_email);
        sqlx::query(
            "INSERT INTO people (id, issuer, subject, email, name, created_at, last_sign_in_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (issuer, subject)
             DO UPDATE SET email = $4, name = $5, last_sign_in_at = $6",
        )
        .bind(Uuid::new_v4().to_string())
        .bind(issuer)
        .bind(subject)
        .bind(&email)
        .bind(name)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        let row = sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM people p WHERE p.issuer = $1 AND p.subject = $2"
        ))
        .bind(issuer)
        .bind(subject)
        .fetch_one(self.pool())
        .await?;
        person_from(&row)
    }

    /// The person with this id.
    pub async fn person(&self, id: Uuid) -> StoreResult<Option<Person>> {
        let row = sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS} FROM people p WHERE p.id = $1"
        ))
        .bind(id.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(person_from).transpose()
    }

    /// Brings a person's memberships up to date at sign-in: those the
    /// config's rules grant now (`granted`, by account id) are set, rule
    /// memberships no rule grants any more are removed (ending their
    /// sessions), and invitations to their email are taken up. Answers the
    /// accounts they were removed from.
    pub async fn sync_memberships(
        &self,
        person: &Person,
        granted: &[(Uuid, Role)],
        now_ms: i64,
    ) -> StoreResult<Vec<Uuid>> {
        let mut tx = self.pool().begin().await?;
        // A write first, so the transaction holds the write lock from its
        // start: SQLite refuses (SQLITE_BUSY, without waiting) a read
        // transaction's upgrade when another write came in between.
        sqlx::query("UPDATE people SET last_sign_in_at = last_sign_in_at WHERE id = $1")
            .bind(person.id.to_string())
            .execute(&mut *tx)
            .await?;
        let had: Vec<(String, String)> =
            sqlx::query_as("SELECT account_id, source FROM memberships WHERE person_id = $1")
                .bind(person.id.to_string())
                .fetch_all(&mut *tx)
                .await?;
        let mut removed = vec![];
        for (account, source) in had {
            let account = parse_uuid(&account)?;
            if Source::parse(&source) == Source::Rule && !granted.iter().any(|(a, _)| *a == account)
            {
                sqlx::query("DELETE FROM memberships WHERE person_id = $1 AND account_id = $2")
                    .bind(person.id.to_string())
                    .bind(account.to_string())
                    .execute(&mut *tx)
                    .await?;
                end_sessions_in(&mut tx, person.id, account).await?;
                removed.push(account);
            }
        }
        for (account, role) in granted {
            upsert_membership(&mut tx, person.id, *account, *role, Source::Rule, now_ms).await?;
        }
        if let Some(email) = &person.email {
            let invites: Vec<(String, String)> =
                sqlx::query_as("DELETE FROM invites WHERE email = $1 RETURNING account_id, role")
                    .bind(email)
                    .fetch_all(&mut *tx)
                    .await?;
            for (account, role) in invites {
                let account = parse_uuid(&account)?;
                // A rule's grant for the same account stands: the rule is
                // re-evaluated at each sign-in, the invitation is not.
                if !granted.iter().any(|(a, _)| *a == account) {
                    let role = parse_role(&role)?;
                    upsert_membership(&mut tx, person.id, account, role, Source::Invite, now_ms)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// The person's accounts, by name.
    pub async fn memberships_of(&self, person: Uuid) -> StoreResult<Vec<Membership>> {
        let rows = sqlx::query(
            "SELECT a.id, a.name, m.role, m.source FROM memberships m
             JOIN accounts a ON a.id = m.account_id
             WHERE m.person_id = $1 ORDER BY a.name, a.id",
        )
        .bind(person.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Membership {
                    account_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    account_name: r.try_get(1)?,
                    role: parse_role(&r.try_get::<String, _>(2)?)?,
                    source: Source::parse(&r.try_get::<String, _>(3)?),
                })
            })
            .collect()
    }

    /// The account and the person's role there, while they are a member.
    pub async fn member_access(
        &self,
        person: Uuid,
        account: Uuid,
    ) -> StoreResult<Option<(Account, Role)>> {
        let row = sqlx::query(
            "SELECT a.id, a.name, a.key_hash, a.is_admin, a.mcp_read_only, m.role
             FROM memberships m JOIN accounts a ON a.id = m.account_id
             WHERE m.person_id = $1 AND m.account_id = $2",
        )
        .bind(person.to_string())
        .bind(account.to_string())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok((
                Account {
                    id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                    name: r.try_get(1)?,
                    key_hash: r.try_get(2)?,
                    is_admin: r.try_get::<i64, _>(3)? != 0,
                    mcp_read_only: r.try_get::<i64, _>(4)? != 0,
                },
                parse_role(&r.try_get::<String, _>(5)?)?,
            ))
        })
        .transpose()
    }

    /// The account's members, by email.
    pub async fn members_of(&self, account: Uuid) -> StoreResult<Vec<Member>> {
        let rows = sqlx::query(&format!(
            "SELECT {PERSON_COLUMNS}, m.role, m.source FROM memberships m
             JOIN people p ON p.id = m.person_id
             WHERE m.account_id = $1 ORDER BY p.email, p.id"
        ))
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Member {
                    person: person_from(r)?,
                    role: parse_role(&r.try_get::<String, _>(7)?)?,
                    source: Source::parse(&r.try_get::<String, _>(8)?),
                })
            })
            .collect()
    }

    /// Sets a member's role (an owner's change: the membership becomes an
    /// invited one, which the rules no longer withdraw). False when the
    /// person is not a member.
    pub async fn set_member_role(
        &self,
        account: Uuid,
        person: Uuid,
        role: Role,
    ) -> StoreResult<bool> {
        let res = sqlx::query(
            "UPDATE memberships SET role = $1, source = $2 WHERE account_id = $3 AND person_id = $4",
        )
        .bind(role.as_str())
        .bind(Source::Invite.as_str())
        .bind(account.to_string())
        .bind(person.to_string())
        .execute(self.pool())
        .await?;
        Ok(res.rows_affected() > 0)
    }

    /// Removes a membership and ends the person's sessions in the account
    /// (their personal keys there stop with it: a key's person must be a
    /// member). False when there was none.
    pub async fn remove_member(&self, account: Uuid, person: Uuid) -> StoreResult<bool> {
        let mut tx = self.pool().begin().await?;
        let res = sqlx::query("DELETE FROM memberships WHERE account_id = $1 AND person_id = $2")
            .bind(account.to_string())
            .bind(person.to_string())
            .execute(&mut *tx)
            .await?;
        end_sessions_in(&mut tx, person, account).await?;
        tx.commit().await?;
        Ok(res.rows_affected() > 0)
    }

    /// Invites an email to the account with a role (again: the new role).
    pub async fn invite(
        &self,
        account: Uuid,
        email: &str,
        role: Role,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO invites (account_id, email, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, email) DO UPDATE SET role = $3",
        )
        .bind(account.to_string())
        .bind(normal_email(email))
        .bind(role.as_str())
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The account's invitations not yet taken up.
    pub async fn invites_of(&self, account: Uuid) -> StoreResult<Vec<Invite>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT email, role, created_at FROM invites WHERE account_id = $1 ORDER BY email",
        )
        .bind(account.to_string())
        .fetch_all(self.pool())
        .await?;
        rows.into_iter()
            .map(|(email, role, at)| {
                Ok(Invite {
                    email,
                    role: parse_role(&role)?,
                    created_at_ms: at,
                })
            })
            .collect()
    }

    /// Withdraws an invitation; false when there was none.
    pub async fn delete_invite(&self, account: Uuid, email: &str) -> StoreResult<bool> {
        let res = sqlx::query("DELETE FROM invites WHERE account_id = $1 AND email = $2")
            .bind(account.to_string())
            .bind(normal_email(email))
            .execute(self.pool())
            .await?;
        Ok(res.rows_affected() > 0)
    }

    /// The ids of the accounts with this name (config rules name accounts).
    pub async fn account_ids_named(&self, name: &str) -> StoreResult<Vec<Uuid>> {
        let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM accounts WHERE name = $1")
            .bind(name)
            .fetch_all(self.pool())
            .await?;
        ids.iter().map(|i| parse_uuid(i)).collect()
    }

    /// Records a sign-in sent to a provider, under its state's hash (and
    /// drops those long expired).
    pub async fn put_oidc_login(
        &self,
        state_hash: &str,
        p: &PendingLogin,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM oidc_logins WHERE expires_at <= $1")
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO oidc_logins (state_hash, provider, nonce, verifier, redirect_uri, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(state_hash)
        .bind(&p.provider)
        .bind(&p.nonce)
        .bind(&p.verifier)
        .bind(&p.redirect_uri)
        .bind(p.expires_at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Takes the sign-in with this state: answered once, then gone.
    pub async fn take_oidc_login(
        &self,
        state_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Option<PendingLogin>> {
        let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
            "DELETE FROM oidc_logins WHERE state_hash = $1
             RETURNING provider, nonce, verifier, redirect_uri, expires_at",
        )
        .bind(state_hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row
            .map(
                |(provider, nonce, verifier, redirect_uri, expires)| PendingLogin {
                    provider,
                    nonce,
                    verifier,
                    redirect_uri,
                    expires_at_ms: expires,
                },
            )
            .filter(|p| p.expires_at_ms > now_ms))
    }

    /// Stores a console session.
    pub async fn create_console_session(
        &self,
        id_hash: &str,
        row: &SessionRow,
        now_ms: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_sessions (id_hash, account_id, person_id, key_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id_hash)
        .bind(row.account_id.to_string())
        .bind(row.person_id.map(|p| p.to_string()))
        .bind(&row.key_hash)
        .bind(now_ms)
        .bind(row.expires_at_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The session with this id hash, while it lasts.
    pub async fn console_session(
        &self,
        id_hash: &str,
        now_ms: i64,
    ) -> StoreResult<Option<SessionRow>> {
        let row: Option<(String, Option<String>, Option<String>, i64)> = sqlx::query_as(
            "SELECT account_id, person_id, key_hash, expires_at FROM console_sessions
             WHERE id_hash = $1 AND expires_at > $2",
        )
        .bind(id_hash)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        row.map(|(account, person, key_hash, expires)| {
            Ok(SessionRow {
                account_id: parse_uuid(&account)?,
                person_id: person.as_deref().map(parse_uuid).transpose()?,
                key_hash,
                expires_at_ms: expires,
            })
        })
        .transpose()
    }

    /// Moves a person's session to another of their accounts.
    pub async fn switch_console_session(&self, id_hash: &str, account: Uuid) -> StoreResult<()> {
        sqlx::query("UPDATE console_sessions SET account_id = $1 WHERE id_hash = $2")
            .bind(account.to_string())
            .bind(id_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Ends one session (sign-out), and drops expired ones while at it.
    pub async fn end_console_session(&self, id_hash: &str, now_ms: i64) -> StoreResult<()> {
        sqlx::query("DELETE FROM console_sessions WHERE id_hash = $1 OR expires_at <= $2")
            .bind(id_hash)
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    async fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(&StoreOptions {
            url: format!("sqlite://{}", dir.path().join("store.db").display()),
            max_connections: 2,
        })
        .await
        .unwrap()
    }

    fn session(account: Uuid, person: Uuid) -> SessionRow {
        SessionRow {
            account_id: account,
            person_id: Some(person),
            key_hash: None,
            expires_at_ms: 10_000,
        }
    }

    #[tokio::test]
    async fn rules_grant_and_withdraw_invites_are_taken_up_and_removal_ends_sessions_and_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = store(&dir).await;
        let research = s
            .create_account("research", "h1", false, false, 1)
            .await
            .unwrap();
        let infra = s
            .create_account("infra", "h2", false, false, 1)
            .await
            .unwrap();
        s.invite(infra.id, "Ada@Example.com", Role::Viewer, 1)
            .await
            .unwrap();

        let ada = s
            .sign_in_person(
                "https://idp",
                "sub-1",
                Some("ada@example.com"),
                Some("Ada"),
                5,
            )
            .await
            .unwrap();
        let again = s
            .sign_in_person(
                "https://idp",
                "sub-1",
                Some("ada@example.com"),
                Some("Ada L"),
                6,
            )
            .await
            .unwrap();
        assert_eq!((again.id, again.name.as_deref()), (ada.id, Some("Ada L")));
        assert_eq!(again.last_sign_in_at_ms, Some(6));

        let removed = s
            .sync_memberships(&ada, &[(research.id, Role::Member)], 6)
            .await
            .unwrap();
        assert!(removed.is_empty());
        let mine = s.memberships_of(ada.id).await.unwrap();
        let got: Vec<(&str, Role, Source)> = mine
            .iter()
            .map(|m| (m.account_name.as_str(), m.role, m.source))
            .collect();
        assert_eq!(
            got,
            [
                ("infra", Role::Viewer, Source::Invite),
                ("research", Role::Member, Source::Rule)
            ]
        );
        assert!(s.invites_of(infra.id).await.unwrap().is_empty());

        // A personal key: capped by the membership, gone with it.
        let key = crate::store::NewKey {
            name: "laptop",
            key_hash: "pk",
            role: Role::Owner,
            person: Some(ada.id),
        };
        s.create_api_key(research.id, key, 7).await.unwrap();
        let c = s.credential_by_key_hash("pk").await.unwrap().unwrap();
        assert_eq!((c.role, c.person_id), (Role::Member, Some(ada.id)));

        s.create_console_session("sess", &session(research.id, ada.id), 7)
            .await
            .unwrap();
        assert!(s.console_session("sess", 8).await.unwrap().is_some());
        assert!(
            s.console_session("sess", 10_000).await.unwrap().is_none(),
            "expired"
        );

        // An owner's choice outlasts the rule's at the next sign-in.
        assert!(s
            .set_member_role(research.id, ada.id, Role::Viewer)
            .await
            .unwrap());
        s.sync_memberships(&ada, &[(research.id, Role::Member)], 8)
            .await
            .unwrap();
        let (_, role) = s.member_access(ada.id, research.id).await.unwrap().unwrap();
        assert_eq!(role, Role::Viewer);
        assert!(s
            .set_member_role(research.id, ada.id, Role::Member)
            .await
            .unwrap());
        // As the rule had granted it, for what follows.
        sqlx::query("UPDATE memberships SET source = 'rule' WHERE account_id = $1")
            .bind(research.id.to_string())
            .execute(s.pool())
            .await
            .unwrap();

        // The rule no longer grants research: the membership, its session
        // and its personal key all end; the invited one stays.
        let removed = s.sync_memberships(&ada, &[], 9).await.unwrap();
        assert_eq!(removed, [research.id]);
        assert!(s.console_session("sess", 9).await.unwrap().is_none());
        assert!(s.credential_by_key_hash("pk").await.unwrap().is_none());
        assert!(s
            .member_access(ada.id, research.id)
            .await
            .unwrap()
            .is_none());
        let (account, role) = s.member_access(ada.id, infra.id).await.unwrap().unwrap();
        assert_eq!((account.name.as_str(), role), ("infra", Role::Viewer));

        // An owner's removal ends the session there at once.
        s.create_console_session("sess2", &session(infra.id, ada.id), 9)
            .await
            .unwrap();
        assert!(s.remove_member(infra.id, ada.id).await.unwrap());
        assert!(!s.remove_member(infra.id, ada.id).await.unwrap());
        assert!(s.console_session("sess2", 9).await.unwrap().is_none());
        assert!(s.memberships_of(ada.id).await.unwrap().is_empty());
    }
}
