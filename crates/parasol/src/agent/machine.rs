//! The machine side of the agent.
//!
//! The agent is a POSIX `sh` script rather than a binary: GPU images differ
//! in everything but a shell, `curl` and the vendor's `nvidia-smi` (or
//! `amd-smi`/`rocm-smi`), and a script runs the same on x86_64 and arm64
//! (GH200) with nothing to build, sign or serve per architecture. Every
//! figure it reports comes from those tools, the kernel log, `ps` and
//! `/proc`, so nothing a binary would add is needed.
//!
//! One installer serves every way in: `curl {url}/agent/install.sh | sh`
//! by hand, the hosts provider over SSH, and a cloud machine's first-boot
//! script, which carries the installer itself because the machine may not
//! reach Parasol before it runs.

use std::sync::OnceLock;

use uuid::Uuid;

use super::AgentBootstrap;
use crate::providers::hosts::quote;

/// The agent itself.
pub const AGENT_SH: &str = include_str!("scripts/agent.sh");

const INSTALL_SH: &str = include_str!("scripts/install.sh");
const AGENT_SLOT: &str = "@@PARASOL_AGENT_SH@@";

/// The installer with the agent inside it, as `GET /agent/install.sh`
/// serves it. It holds no secret: the settings come from the environment.
pub fn installer() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| INSTALL_SH.replacen(AGENT_SLOT, AGENT_SH.trim_end(), 1))
}

/// `GET /agent/install.sh`: the installer, to anyone (it holds no secret).
pub async fn serve_installer() -> impl axum::response::IntoResponse {
    (
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/x-shellscript; charset=utf-8",
            ),
            (axum::http::header::CACHE_CONTROL, "no-cache"),
        ],
        installer(),
    )
}

/// Where the installed agent lives relative to a directory the caller
/// manages, and whether systemd may run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement<'a> {
    /// The installer's default: a systemd service when run as root on a
    /// systemd machine, else a background loop of the user.
    Default,
    /// A background loop in this directory (a shell word, e.g.
    /// `"$d/agent"`), which its owner stops with `<dir>/stop`.
    Loop(&'a str),
}

/// Shell commands that install and start the agent for `instance_id`. They
/// never fail the script they are part of: a machine whose agent cannot
/// start still runs its workload, and Parasol's health check notices the
/// silence.
pub fn install_commands(agent: &AgentBootstrap, instance_id: Uuid, at: Placement<'_>) -> String {
    let dir = match at {
        Placement::Default => String::new(),
        Placement::Loop(dir) => format!("PARASOL_AGENT_DIR={dir} PARASOL_AGENT_SYSTEMD=no "),
    };
    format!(
        "parasol_agent_install=$(mktemp)\n\
         cat > \"$parasol_agent_install\" <<'PARASOL_AGENT_INSTALL_EOF'\n\
         {installer}\n\
         PARASOL_AGENT_INSTALL_EOF\n\
         {dir}PARASOL_URL={url} PARASOL_AGENT_TOKEN={token} PARASOL_INSTANCE_ID={id} PARASOL_AGENT_INTERVAL={interval} \\\n  \
         sh \"$parasol_agent_install\" < /dev/null || echo 'the Parasol agent did not start; the workload starts regardless' >&2\n\
         rm -f \"$parasol_agent_install\"\n",
        installer = installer().trim_end(),
        url = quote(&agent.url),
        token = quote(agent.token.expose()),
        id = quote(&instance_id.to_string()),
        interval = agent.interval_s.max(2),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::clouds::Secret;

    #[test]
    fn the_installer_carries_the_agent_and_no_slot() {
        let text = installer();
        assert!(!text.contains(AGENT_SLOT));
        assert!(text.contains("gpus_nvidia()"));
        // The heredoc delimiters the composition relies on appear only as
        // delimiters.
        assert_eq!(text.matches("\nPARASOL_AGENT_SH_EOF\n").count(), 1);
        assert!(!AGENT_SH.contains("PARASOL_AGENT_SH_EOF"));
        assert!(!text.contains("PARASOL_AGENT_INSTALL_EOF"));
    }

    #[test]
    fn install_commands_quote_every_value() {
        let b = AgentBootstrap {
            url: "https://parasol.example/x'y".into(),
            token: Secret::new("pa_tok"),
            interval_s: 15,
        };
        let id = Uuid::nil();
        let s = install_commands(&b, id, Placement::Loop("\"$d/agent\""));
        assert!(
            s.contains("PARASOL_URL='https://parasol.example/x'\\''y'"),
            "{s}"
        );
        assert!(s.contains("PARASOL_AGENT_TOKEN='pa_tok'"));
        assert!(s.contains("PARASOL_AGENT_DIR=\"$d/agent\" PARASOL_AGENT_SYSTEMD=no PARASOL_URL="));
        assert!(s.contains("PARASOL_AGENT_INTERVAL=15 "));
        let s = install_commands(&b, id, Placement::Default);
        assert!(
            s.contains("\nPARASOL_URL="),
            "no directory, and systemd allowed"
        );
    }
}
