//! OpenID Connect sign-in against a real provider: `oidc-provider-mock`
//! (PyPI) from the test venv, on a local port. The full code flow through
//! the console, the config's rules, no access, a replayed callback, tokens
//! for another client, expired and with another nonce (real tokens from
//! the provider, checked by the server's own code), a key rotation that
//! makes the server fetch the JWKS again, personal keys and the audit log,
//! and a removed membership ending a session on another replica.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{fresh_pg_database, Opts, Server};

fn python() -> PathBuf {
    let venv = std::env::var("PARASOL_TEST_VENV").expect(
        "PARASOL_TEST_VENV is not set: run scripts/setup.sh and export \
         PARASOL_TEST_VENV=$PWD/target/test-venv (scripts/test.sh does both)",
    );
    PathBuf::from(venv).join("bin/python")
}

/// A running `oidc-provider-mock`.
pub struct Idp {
    child: Option<Child>,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Idp {
    pub fn start() -> Idp {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut idp = Idp {
            child: None,
            port,
            log: tempfile::NamedTempFile::new().unwrap(),
        };
        idp.spawn();
        idp
    }

    /// The issuer, as the provider names itself.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let out = self.log.reopen().unwrap();
        let child = Command::new(python())
            .args([
                "-m",
                "oidc_provider_mock",
                "--port",
                &self.port.to_string(),
                "--require-nonce",
            ])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect(
                "oidc-provider-mock starts (pip install it from scripts/requirements-test.txt)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/.well-known/openid-configuration", self.issuer());
        loop {
            if answers(&url) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "oidc-provider-mock did not start: {}",
                std::fs::read_to_string(self.log.path()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A new process on the same port: a new signing key, so the next
    /// token names a key id the server has not seen.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Sets the claims of the user `sub`.
    pub async fn set_user(&self, sub: &str, claims: Value) {
        let res = reqwest::Client::new()
            .put(format!("{}/users/{sub}", self.issuer()))
            .json(&claims)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{}", res.text().await.unwrap());
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `url` (plain http) answers 200: a readiness probe that needs
/// no async runtime.
fn answers(url: &str) -> bool {
    use std::io::{Read, Write};
    let Some((host, path)) = url.strip_prefix("http://").and_then(|r| r.split_once('/')) else {
        return false;
    };
    let Ok(mut s) = std::net::TcpStream::connect(host) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return false;
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    buf.starts_with("HTTP/1.1 200")
}

/// The server's sign-in settings for `idp`, with these rules.
pub(crate) fn opts_for(idp: &Idp, rules: &str, extra: &[&str]) -> (Opts, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("parasol.toml");
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "s3cret\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[oidc]\nissuer = \"{}\"\nclient_id = \"parasol\"\nname = \"Mock IdP\"\n\
             client_secret_file = \"{}\"\ncontact = \"ml-platform@example.com\"\n{rules}",
            idp.issuer(),
            secret.display()
        ),
    )
    .unwrap();
    let mut args = vec!["--config", config.to_str().unwrap(), "--test-clock"];
    args.extend_from_slice(extra);
    (Opts::default().args(&args), dir)
}

/// A browser: follows no redirects, keeps cookies by name.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
    pub csrf: Option<String>,
}

/// An answer: status, Location and body.
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub html: String,
}

impl Browser {
    pub fn new(s: &Server) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            cookies: vec![],
            csrf: None,
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let res = req
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        for v in res.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap();
            let (kv, _) = v.split_once(';').unwrap_or((v, ""));
            let (k, val) = kv.split_once('=').unwrap();
            self.cookies.retain(|(name, _)| name != k);
            if !val.is_empty() && !v.contains("Max-Age=0") {
                self.cookies.push((k.to_string(), val.to_string()));
            }
        }
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        let html = res.text().await.unwrap();
        if let Some(t) = html.split("name=\"csrf\" value=\"").nth(1) {
            self.csrf = Some(t.split('"').next().unwrap().to_string());
        }
        Page {
            status,
            location,
            html,
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        let req = self.http.get(url);
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let csrf = self.csrf.clone().unwrap_or_default();
        let mut fields = form.to_vec();
        fields.push(("csrf", &csrf));
        let req = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(&fields).unwrap());
        self.send(req).await
    }

    pub fn session(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == "parasol_session")
            .map(|(_, v)| v.clone())
    }

    /// Through the provider's page as `sub`, up to the callback's URL.
    async fn through_provider(&mut self, sub: &str) -> String {
        let start = self.get("/oidc/default/start").await;
        assert_eq!(start.status, 303, "{}", start.html);
        let authorize = start.location.unwrap();
        assert!(
            authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="),
            "{authorize}"
        );
        let form = self.get(&authorize).await;
        assert_eq!(form.status, 200, "{}", form.html);
        assert!(form.html.contains("name=\"sub\""), "the provider's page");
        let res = self
            .http
            .post(&authorize)
            .form(&[("sub", sub)])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 302, "{}", res.text().await.unwrap());
        res.headers()["location"].to_str().unwrap().to_string()
    }

    /// Signs in as `sub` through the provider's page; the callback's page.
    pub async fn sign_in(&mut self, sub: &str) -> Page {
        let back = self.through_provider(sub).await;
        assert!(back.contains("/oidc/default/callback?"), "{back}");
        self.get(&back).await
    }
}

async fn account(s: &Server, name: &str) -> String {
    let made = s
        .admin()
        .post("/v1/admin/accounts/create", json!({ "name": name }))
        .await
        .expect(200);
    made["id"].as_str().unwrap().to_string()
}

/// The new key a console page shows once.
fn shown_key(html: &str) -> String {
    let after = html
        .split("data-api-key>")
        .nth(1)
        .expect("a key on the page");
    after.split('<').next().unwrap().to_string()
}

const RULES: &str =
    "[[oidc.rules]]\ngroup = \"ml-team\"\naccount = \"research\"\nrole = \"member\"\n\
[[oidc.rules]]\nemail_domain = \"example.com\"\naccount = \"infra\"\nrole = \"viewer\"\n";

#[tokio::test]
async fn the_code_flow_signs_in_by_group_and_domain_switches_accounts_and_audits_the_person() {
    let idp = Idp::start();
    let (opts, _dir) = opts_for(&idp, RULES, &[]);
    let s = Server::start(opts);
    let research = account(&s, "research").await;
    account(&s, "infra").await;
    idp.set_user(
        "ada",
        json!({"email": "ada@example.com", "email_verified": true, "name": "Ada", "groups": ["ml-team"]}),
    )
    .await;

    let mut b = Browser::new(&s);
    let login = b.get("/login").await;
    assert!(
        login.html.contains("Sign in with Mock IdP"),
        "{}",
        login.html
    );
    let done = b.sign_in("ada").await;
    assert_eq!(done.status, 200, "{}", done.html);
    assert!(done.html.contains("url=/instances"), "{}", done.html);
    assert!(b.session().is_some());
    let home = b.get("/instances").await;
    assert_eq!(home.status, 200, "{}", home.html);
    assert!(
        home.html.contains("ada@example.com · member"),
        "{}",
        home.html
    );
    assert!(home.html.contains("<h1>Instances</h1>"));
    // research (by group) and infra (by domain), with the switcher.
    assert!(home.html.contains("action=\"/account/switch\""));

    // A member launches; the audit log names the person, not a key.
    let made = b
        .post(
            "/keys",
            &[
                ("name", "ada-laptop"),
                ("public_key", &crate::harness::public_key()),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.html);
    let audit = s.admin().get("/v1/admin/audit").await.expect(200);
    let mine = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["route"] == "/keys")
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(mine["person"], "ada@example.com", "{mine}");
    assert_eq!(mine["account_id"], research.as_str());
    assert_eq!(mine["outcome"], "ok");

    // A personal key acts with the person's role in research.
    let page = b
        .post("/api-keys/personal", &[("name", "cli"), ("role", "member")])
        .await;
    assert_eq!(page.status, 200, "{}", page.html);
    let key = shown_key(&page.html);
    let personal = s.client(&key);
    personal.get("/v1/instances").await.expect(200);
    // Above their role: refused.
    let over = b
        .post("/api-keys/personal", &[("name", "x"), ("role", "owner")])
        .await;
    assert_eq!(over.status, 403, "{}", over.html);

    // Switch to infra, where the domain rule makes Ada a viewer: her
    // forged POST is refused naming the role, and the page has no launch
    // button.
    let infra_id = s.admin().get("/v1/admin/accounts").await.expect(200)["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "infra")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let moved = b.post("/account/switch", &[("account", &infra_id)]).await;
    assert_eq!(moved.status, 303, "{}", moved.html);
    let home = b.get("/instances").await;
    assert!(
        home.html.contains("ada@example.com · viewer"),
        "{}",
        home.html
    );
    let refused = b
        .post(
            "/launch",
            &[
                ("cloud", "massedcompute"),
                ("region", "us-central-1"),
                ("type", "A6000"),
                ("name", "x"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.html);
    assert!(
        refused.html.contains("needs the member role"),
        "{}",
        refused.html
    );
    // Sign-out ends the session: the cookie, replayed, is nothing.
    let cookie = b.session().unwrap();
    b.post("/logout", &[]).await;
    b.cookies.push(("parasol_session".into(), cookie));
    assert_eq!(
        b.get("/instances").await.location.as_deref(),
        Some("/login")
    );
}

#[tokio::test]
async fn a_personal_key_makes_personal_keys_capped_by_the_role_and_ending_with_the_membership() {
    let idp = Idp::start();
    let (opts, _dir) = opts_for(&idp, "", &[]);
    let s = Server::start(opts);
    let admin = s.admin();
    admin
        .post(
            "/v1/account/members/invite",
            json!({"email": "ada@example.com", "role": "member"}),
        )
        .await
        .expect(200);
    idp.set_user("ada", json!({"email": "ada@example.com"}))
        .await;
    let mut b = Browser::new(&s);
    assert_eq!(b.sign_in("ada").await.status, 200);
    assert_eq!(b.get("/instances").await.status, 200);
    // The first personal key comes from the console.
    let page = b
        .post("/api-keys/personal", &[("name", "cli"), ("role", "")])
        .await;
    assert_eq!(page.status, 200, "{}", page.html);
    let first = shown_key(&page.html);
    let ada = s.client(&first);

    // Through the API: a member's personal key takes the member role by
    // default, a viewer one on request, never owner.
    let made = ada
        .post("/v1/account/keys/personal", json!({"name": "ci"}))
        .await
        .expect(200);
    let second = s.client(made["api_key"].as_str().unwrap());
    let err = ada
        .post(
            "/v1/account/keys/personal",
            json!({"name": "up", "role": "owner"}),
        )
        .await
        .expect_error(403, "forbidden");
    assert_eq!(err["field"], "role");
    let err = ada
        .post("/v1/account/keys/personal", json!({"name": ""}))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(err["field"], "name");
    ada.post(
        "/v1/account/keys/personal",
        json!({"name": "ro", "role": "viewer"}),
    )
    .await
    .expect(200);
    // The listing ties each to Ada, with its role.
    let members = admin.get("/v1/account/members").await.expect(200);
    let person = members["members"][0]["id"].as_str().unwrap().to_string();
    let keys = admin.get("/v1/account/keys").await.expect(200);
    let mine: Vec<_> = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["person_id"] == person.as_str())
        .map(|k| (k["name"].as_str().unwrap(), k["role"].as_str().unwrap()))
        .collect();
    assert_eq!(
        mine,
        [("cli", "member"), ("ci", "member"), ("ro", "viewer")]
    );
    // A personal key of a member may not reach owner routes either.
    second
        .post("/v1/account/keys/create", json!({"name": "x"}))
        .await
        .expect_error(403, "forbidden");
    second.get("/v1/instances").await.expect(200);

    // The membership ends: every personal key of Ada's is refused.
    admin
        .post(&format!("/v1/account/members/{person}/remove"), json!({}))
        .await
        .expect(200);
    second
        .get("/v1/instances")
        .await
        .expect_error(401, "unauthorized");
    ada.post("/v1/account/keys/personal", json!({"name": "again"}))
        .await
        .expect_error(401, "unauthorized");
}

#[tokio::test]
async fn no_rule_means_no_access_a_replayed_callback_is_refused_and_keys_can_be_turned_off() {
    let idp = Idp::start();
    let (opts, _dir) = opts_for(&idp, RULES, &["--console-key-sign-in=false"]);
    let s = Server::start(opts);
    account(&s, "research").await;
    idp.set_user(
        "mallory",
        json!({"email": "mallory@elsewhere.org", "groups": ["sales"]}),
    )
    .await;
    let mut b = Browser::new(&s);
    let login = b.get("/login").await;
    assert!(
        !login.html.contains("api_key"),
        "no key form: {}",
        login.html
    );
    let by_key = b
        .post("/login", &[("api_key", crate::harness::ADMIN_KEY)])
        .await;
    assert_eq!(by_key.status, 403, "{}", by_key.html);

    let back = b.through_provider("mallory").await;
    let page = b.get(&back).await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(
        page.html.contains("no account on this server has you"),
        "{}",
        page.html
    );
    assert!(page.html.contains("ml-platform@example.com"));
    assert!(b.session().is_none());
    // Nobody became an admin, or anything else.
    let people = s.admin().get("/v1/account/members").await.expect(200);
    assert_eq!(people["members"], json!([]));

    // The same callback again: used once already.
    let again = b.get(&back).await;
    assert_eq!(again.status, 400, "{}", again.html);
    assert!(again.html.contains("already used"), "{}", again.html);
    // A callback without the browser's binding cookie is refused.
    idp.set_user(
        "ada",
        json!({"email": "ada@example.com", "groups": ["ml-team"]}),
    )
    .await;
    let back = b.through_provider("ada").await;
    let mut other = Browser::new(&s);
    let stolen = other.get(&back).await;
    assert_eq!(stolen.status, 403, "{}", stolen.html);
}

/// Runs the code flow as another client, straight at the provider: a real
/// ID token with this audience and nonce.
async fn token_for(idp: &Idp, client_id: &str, nonce: &str, sub: &str) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = "http://127.0.0.1:9/cb";
    let authorize = reqwest::Url::parse_with_params(
        &format!("{}/oauth2/authorize", idp.issuer()),
        &[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", redirect),
            ("scope", "openid email"),
            ("state", "s"),
            ("nonce", nonce),
        ],
    )
    .unwrap();
    let res = http
        .post(authorize)
        .form(&[("sub", sub)])
        .send()
        .await
        .unwrap();
    let loc = res.headers()["location"].to_str().unwrap().to_string();
    let code = reqwest::Url::parse(&loc)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let tokens: Value = http
        .post(format!("{}/oauth2/token", idp.issuer()))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("client_id", client_id),
            ("client_secret", "any"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    tokens["id_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn tokens_for_another_client_expired_or_with_another_nonce_are_refused() {
    use parasol::oidc::{Discovery, OidcError, Provider};
    let idp = Idp::start();
    let p = Provider {
        id: "default".into(),
        name: "Mock".into(),
        issuer: idp.issuer(),
        client_id: "parasol".into(),
        client_secret: None,
        scopes: "openid email".into(),
        groups_claim: "groups".into(),
    };
    let http = reqwest::Client::new();
    let d = Discovery::default();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let good = token_for(&idp, "parasol", "n1", "ada").await;
    // This provider names no key id in its tokens, so after its key
    // rotates (the restart test below) the cached key fails to verify and
    // the server fetches the JWKS again; an unknown key id is the other
    // way in (oidc.rs's unit test, with a provider that names its keys).
    let header = jsonwebtoken::decode_header(&good).unwrap();
    assert_eq!(header.kid, None, "{header:?}");
    let who = d.verify(&http, &p, &good, "n1", now()).await.unwrap();
    assert_eq!(who.subject, "ada");

    let other = token_for(&idp, "someone-else", "n1", "ada").await;
    let e = d.verify(&http, &p, &other, "n1", now()).await.unwrap_err();
    assert!(
        matches!(&e, OidcError::Token(m) if m.contains("another client")),
        "{e}"
    );
    let e = d
        .verify(&http, &p, &good, "n1", now() + 2 * 3600 * 1000)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, OidcError::Token(m) if m.contains("expired")),
        "{e}"
    );
    let e = d.verify(&http, &p, &good, "n2", now()).await.unwrap_err();
    assert!(
        matches!(&e, OidcError::Token(m) if m.contains("nonce")),
        "{e}"
    );
    // A token altered after signing does not verify.
    let mut parts: Vec<String> = good.split('.').map(str::to_string).collect();
    parts[2] = parts[2].chars().rev().collect();
    let e = d
        .verify(&http, &p, &parts.join("."), "n1", now())
        .await
        .unwrap_err();
    assert!(matches!(e, OidcError::Token(_)), "{e}");
}

#[tokio::test]
async fn an_expired_token_fails_the_sign_in_and_a_rotated_key_is_fetched_anew() {
    let mut idp = Idp::start();
    let (opts, _dir) = opts_for(&idp, RULES, &[]);
    let s = Server::start(opts);
    account(&s, "research").await;
    idp.set_user(
        "ada",
        json!({"email": "ada@example.com", "groups": ["ml-team"]}),
    )
    .await;
    let mut b = Browser::new(&s);
    assert_eq!(b.sign_in("ada").await.status, 200);

    // The provider restarts with a new signing key: the server meets an
    // unknown key id, fetches the JWKS again, and the sign-in works.
    idp.restart();
    idp.set_user(
        "ada",
        json!({"email": "ada@example.com", "groups": ["ml-team"]}),
    )
    .await;
    let mut b = Browser::new(&s);
    let page = b.sign_in("ada").await;
    assert_eq!(page.status, 200, "{}", page.html);
    let fetched = s
        .log()
        .matches("fetched the provider's signing keys")
        .count();
    assert_eq!(fetched, 2, "{}", s.log());

    // Two hours on, by the server's clock, the provider's fresh token has
    // long expired.
    s.admin()
        .post("/admin/clock/advance", json!({"seconds": 7200}))
        .await
        .expect(200);
    let mut b = Browser::new(&s);
    let page = b.sign_in("ada").await;
    assert_eq!(page.status, 401, "{}", page.html);
    assert!(page.html.contains("expired"), "{}", page.html);
}

#[tokio::test]
async fn a_removed_membership_ends_the_session_on_another_replica_at_once() {
    let idp = Idp::start();
    let (url, _name) = fresh_pg_database();
    let (mut opts, _dir) = opts_for(
        &idp,
        "[[oidc.rules]]\ngroup = \"ml-team\"\naccount = \"admin\"\nrole = \"viewer\"\n",
        &[],
    );
    opts.database_url = Some(url);
    let one = Server::start(opts.clone());
    let two = Server::start(opts);
    idp.set_user(
        "ada",
        json!({"email": "ada@example.com", "groups": ["ml-team"]}),
    )
    .await;
    // An owner also invites Ada as a member; the rule's grant stands.
    let mut b = Browser::new(&two);
    assert_eq!(b.sign_in("ada").await.status, 200);
    assert_eq!(b.get("/instances").await.status, 200);
    let members = one.admin().get("/v1/account/members").await.expect(200);
    let ada = members["members"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(members["members"][0]["email"], "ada@example.com");
    assert_eq!(members["members"][0]["role"], "viewer");

    one.admin()
        .post(&format!("/v1/account/members/{ada}/remove"), json!({}))
        .await
        .expect(200);
    // The very next request on the other replica is signed out.
    let page = b.get("/instances").await;
    assert_eq!(page.location.as_deref(), Some("/login"), "{}", page.html);
}

/// Sessions are kept in each replica's memory like keys: signing out on
/// one replica ends the session on the others before it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_signed_out_on_one_replica_is_refused_on_the_others_at_once() {
    let (url, _name) = fresh_pg_database();
    let opts = Opts {
        database_url: Some(url),
        ..Opts::default()
    };
    let one = Server::start(opts.clone());
    let two = Server::start(opts);
    let mut b = Browser::new(&one);
    let signed = b
        .post("/login", &[("api_key", crate::harness::ADMIN_KEY)])
        .await;
    assert_eq!(signed.status, 303, "{}", signed.html);
    let cookie = b.session().expect("a session cookie");
    // Used on both replicas, so both have kept it.
    for base in [&one.base, &two.base] {
        for _ in 0..3 {
            let page = b.get(&format!("{base}/instances")).await;
            assert_eq!(page.status, 200, "{}", page.html);
        }
    }
    b.base = two.base.clone();
    assert_eq!(b.post("/logout", &[]).await.status, 303);
    for s in [&one, &two] {
        let mut stale = Browser::new(s);
        stale
            .cookies
            .push(("parasol_session".to_string(), cookie.clone()));
        let page = stale.get("/instances").await;
        assert_eq!(page.location.as_deref(), Some("/login"), "{}", page.html);
    }
}

#[tokio::test]
async fn an_owner_invites_from_the_members_page_changes_the_role_and_removes_the_person() {
    let idp = Idp::start();
    let (opts, _dir) = opts_for(&idp, RULES, &[]);
    let s = Server::start(opts);
    let mut owner = Browser::new(&s);
    let signed = owner
        .post("/login", &[("api_key", crate::harness::ADMIN_KEY)])
        .await;
    assert_eq!(signed.status, 303, "{}", signed.html);
    let page = owner.get("/members").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        page.html.contains("href=\"/members\""),
        "owners see Members in the nav"
    );
    let bad = owner
        .post("/members/invite", &[("email", "nope"), ("role", "viewer")])
        .await;
    assert_eq!(bad.status, 400, "{}", bad.html);
    assert!(bad.html.contains("is not an email address"), "{}", bad.html);
    let sent = owner
        .post(
            "/members/invite",
            &[("email", "bob@corp.example"), ("role", "viewer")],
        )
        .await;
    assert_eq!(sent.status, 303, "{}", sent.html);
    assert!(owner
        .get("/members")
        .await
        .html
        .contains("bob@corp.example"));

    // Bob matches no rule, but the invitation lets him in as a viewer.
    idp.set_user("bob", json!({"email": "bob@corp.example"}))
        .await;
    let mut bob = Browser::new(&s);
    assert_eq!(bob.sign_in("bob").await.status, 200);
    let home = bob.get("/instances").await;
    assert!(
        home.html.contains("bob@corp.example · viewer"),
        "{}",
        home.html
    );
    assert!(!home.html.contains("href=\"/members\""), "not an owner");
    // Bob cannot open the owners' forms.
    let forged = bob
        .post(
            "/members/invite",
            &[("email", "eve@corp.example"), ("role", "owner")],
        )
        .await;
    assert_eq!(forged.status, 403, "{}", forged.html);

    let page = owner.get("/members").await;
    let id = page
        .html
        .split("<tr data-id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let changed = owner
        .post(&format!("/members/{id}/role"), &[("role", "member")])
        .await;
    assert_eq!(changed.status, 303, "{}", changed.html);
    assert!(bob
        .get("/instances")
        .await
        .html
        .contains("bob@corp.example · member"));
    let removed = owner.post(&format!("/members/{id}/remove"), &[]).await;
    assert_eq!(removed.status, 303, "{}", removed.html);
    assert_eq!(
        bob.get("/instances").await.location.as_deref(),
        Some("/login")
    );
    // Signing in again: no rule, no invitation left, no access.
    let mut again = Browser::new(&s);
    assert_eq!(again.sign_in("bob").await.status, 403);
}
