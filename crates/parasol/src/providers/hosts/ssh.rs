//! Runs shell scripts on a host through the system `ssh` client.
//!
//! The OpenSSH client is what operators already use to reach these
//! machines, and its host-key checking is the one they already trust, so
//! Parasol drives it rather than carrying its own SSH stack. Every call is
//! strict: the host key must already be in the configured known-hosts file
//! (no trust on first use), no prompt can block (batch mode), the user's
//! `~/.ssh/config` is ignored so only the Parasol config decides where a
//! connection goes, and the whole call is bounded by a timeout.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// How to reach one host as its management user.
#[derive(Debug, Clone)]
pub struct Target {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub key_path: PathBuf,
    pub known_hosts: PathBuf,
}

impl Target {
    /// `user@address:port`, for messages.
    pub fn label(&self) -> String {
        if self.address.contains(':') {
            format!("{}@[{}]:{}", self.user, self.address, self.port)
        } else {
            format!("{}@{}:{}", self.user, self.address, self.port)
        }
    }
}

/// Seconds `ssh` may spend establishing the TCP connection.
const CONNECT_TIMEOUT_S: u64 = 5;

/// Why a script did not run to a zero exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SshError {
    /// The connection or authentication failed (ssh exits 255); the script
    /// did not run, or was cut off. The text says which, for people.
    Connect(String),
    /// The whole call took longer than its bound and was killed.
    Timeout(Duration),
    /// The script ran and exited non-zero.
    Exit { code: i32, stderr: String },
    /// `ssh` could not be started on this machine.
    Spawn(String),
}

impl std::fmt::Display for SshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SshError::Connect(m) => f.write_str(m),
            SshError::Timeout(d) => write!(f, "no answer within {}s", d.as_secs()),
            SshError::Exit { code, stderr } => {
                write!(f, "the remote command exited with {code}")?;
                if !stderr.trim().is_empty() {
                    write!(f, ": {}", last_lines(stderr, 3))?;
                }
                Ok(())
            }
            SshError::Spawn(m) => write!(f, "cannot run the ssh client: {m}"),
        }
    }
}

/// Runs `script` with `sh -s` on the target, feeding it on standard input
/// so that no value is ever parsed twice by a shell on the way, and returns
/// its standard output.
pub async fn run(target: &Target, script: &str, timeout: Duration) -> Result<String, SshError> {
    let mut cmd = Command::new("ssh");
    cmd.arg("-F")
        .arg("/dev/null")
        .arg("-i")
        .arg(&target.key_path)
        .arg("-p")
        .arg(target.port.to_string())
        .arg("-l")
        .arg(&target.user)
        .args(["-o", "StrictHostKeyChecking=yes"])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            target.known_hosts.display()
        ))
        .args(["-o", "GlobalKnownHostsFile=/dev/null"])
        .args(["-o", "UpdateHostKeys=no"])
        .args(["-o", "BatchMode=yes"])
        .args(["-o", "IdentitiesOnly=yes"])
        .args(["-o", "PasswordAuthentication=no"])
        .arg("-o")
        .arg(format!("ConnectTimeout={CONNECT_TIMEOUT_S}"))
        .args(["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=2"])
        .args(["-o", "LogLevel=ERROR"])
        .arg("-T")
        .arg("--")
        .arg(&target.address)
        .arg("sh -s")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| SshError::Spawn(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let body = script.to_owned();
    let work = async move {
        // A host that hangs up early makes this write fail; the exit status
        // read next says why, so the write error itself is not interesting.
        let _ = stdin.write_all(body.as_bytes()).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let out = match tokio::time::timeout(timeout, work).await {
        Err(_) => return Err(SshError::Timeout(timeout)),
        Ok(Err(e)) => return Err(SshError::Spawn(e.to_string())),
        Ok(Ok(out)) => out,
    };
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(255) | None => Err(SshError::Connect(explain_connect(target, &stderr))),
        Some(code) => Err(SshError::Exit { code, stderr }),
    }
}

/// Turns ssh's own complaint into a sentence an operator can act on.
fn explain_connect(target: &Target, stderr: &str) -> String {
    let who = target.label();
    let kh = target.known_hosts.display();
    let why = if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
        || stderr.contains("Host key verification failed")
    {
        if stderr.contains("No ") && stderr.contains("host key is known") {
            format!("its host key is not in {kh}; add it there (Parasol never trusts a key on first use)")
        } else {
            format!("host key verification failed: the key the host presented is not the one recorded in {kh}")
        }
    } else if stderr.contains("Permission denied") {
        format!(
            "the management key {} was refused",
            target.key_path.display()
        )
    } else if stderr.contains("Connection refused") {
        "connection refused (is sshd running on that port?)".to_owned()
    } else if stderr.contains("timed out") {
        "the connection timed out".to_owned()
    } else if stderr.contains("No route to host")
        || stderr.contains("Could not resolve")
        || stderr.contains("Network is unreachable")
    {
        "the host cannot be reached".to_owned()
    } else if stderr.trim().is_empty() {
        "the connection closed unexpectedly".to_owned()
    } else {
        last_lines(stderr, 2)
    };
    format!("ssh to {who}: {why}")
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// Quotes `value` for a POSIX shell: inside single quotes nothing is
/// special, and a single quote itself is closed, escaped and reopened.
pub fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            address: "10.0.0.5".into(),
            port: 2222,
            user: "ops".into(),
            key_path: "/etc/parasol/key".into(),
            known_hosts: "/etc/parasol/known_hosts".into(),
        }
    }

    #[test]
    fn quoting_survives_quotes_dollars_and_newlines() {
        assert_eq!(quote("plain"), "'plain'");
        assert_eq!(quote("it's"), "'it'\\''s'");
        assert_eq!(quote("$(rm -rf /)\n`x`"), "'$(rm -rf /)\n`x`'");
    }

    #[test]
    fn connection_failures_are_explained_in_words() {
        let t = target();
        let changed = "@@@@@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n";
        assert!(explain_connect(&t, changed)
            .contains("not the one recorded in /etc/parasol/known_hosts"));
        let unknown = "No ED25519 host key is known for [10.0.0.5]:2222 and you have requested strict checking.\nHost key verification failed.\n";
        assert!(explain_connect(&t, unknown).contains("not in /etc/parasol/known_hosts"));
        let refused = "ssh: connect to host 10.0.0.5 port 2222: Connection refused\n";
        assert_eq!(
            explain_connect(&t, refused),
            "ssh to ops@10.0.0.5:2222: connection refused (is sshd running on that port?)"
        );
        assert!(
            explain_connect(&t, "ops@10.0.0.5: Permission denied (publickey).")
                .contains("management key /etc/parasol/key was refused")
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed_in_labels() {
        let mut t = target();
        t.address = "fd00::5".into();
        assert_eq!(t.label(), "ops@[fd00::5]:2222");
    }
}
