//! What a first start prints: the admin key only when Parasol made it.

use crate::harness::{Opts, Server, ADMIN_KEY};

#[tokio::test]
async fn an_operator_chosen_key_is_never_printed_nor_logged() {
    // The harness passes ADMIN_KEY in PARASOL_API_KEY.
    let s = Server::start(Opts::default());
    let out = s.stdout_lines.join("\n");
    assert!(!out.contains(ADMIN_KEY), "key printed on stdout:\n{out}");
    assert!(
        out.contains("PARASOL_API_KEY"),
        "stdout should say where the key came from:\n{out}"
    );
    assert!(!s.log().contains(ADMIN_KEY), "key in the log");
    assert!(
        !s.data_dir.join(parasol::server::ADMIN_KEY_FILE).exists(),
        "an operator's key is not copied to disk"
    );
    // The key works all the same.
    s.admin().get("/v1/account").await.expect(200);
}

#[tokio::test]
async fn a_generated_key_is_printed_once_and_saved() {
    let mut s = Server::start(Opts {
        env: vec![("PARASOL_API_KEY".into(), String::new())],
        ..Opts::default()
    });
    let saved = std::fs::read_to_string(s.data_dir.join(parasol::server::ADMIN_KEY_FILE))
        .expect("key file");
    let key = saved.trim();
    assert!(key.starts_with("psl_"), "{key}");
    assert!(
        s.stdout_lines.iter().any(|l| l == key),
        "{:?}",
        s.stdout_lines
    );
    s.client(key).get("/v1/account").await.expect(200);
    let before = s.stdout_lines.len();
    s.restart();
    assert!(
        !s.stdout_lines[before..].iter().any(|l| l.contains(key)),
        "printed again on restart: {:?}",
        s.stdout_lines
    );
}
