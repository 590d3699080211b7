//! The shell scripts Parasol runs on a host, and the parsing of what they
//! print.
//!
//! Each script is idempotent, so a call cut off halfway (a lost connection,
//! a timeout) is finished by simply running it again. Everything a script
//! leaves on the host for an instance lives in one directory,
//! `~/.parasol/instances/<instance id>/`, plus the instance's line in
//! `~/.ssh/authorized_keys`, which carries the marker
//! `parasol-instance=<instance id>` as its comment; the teardown script
//! removes exactly those two things.
//!
//! Every value that comes from a user or the config is passed through
//! [`quote`], so none of it is ever interpreted by the host's shell.

use parasol_api::{Env, LaunchConfiguration, LaunchType};
use parasol_hostinfo::{DiscoveryOutput, DF, FREE, GPU_QUERY, LSCPU, OS_RELEASE, TOPO_QUERY};
use uuid::Uuid;

use super::ssh::quote;
use crate::agent::machine::{install_commands, Placement};
use crate::agent::AgentBootstrap;

/// The comment that marks the `authorized_keys` line Parasol added for an
/// instance.
pub fn key_marker(id: Uuid) -> String {
    format!("parasol-instance={id}")
}

/// The docker container Parasol runs for an instance.
pub fn container_name(id: Uuid) -> String {
    format!("parasol-{id}")
}

/// Exit status of the setup script when a docker launch finds no docker.
pub const EXIT_NO_DOCKER: i32 = 3;
/// Exit status of the setup script when the workload never recorded its
/// process id.
pub const EXIT_NOT_STARTED: i32 = 4;

const SECTION: &str = "@@parasol-section ";

/// Prints every discovery command's output under a section header. A host
/// without `nvidia-smi` prints empty GPU sections, which the parsers read
/// as "no GPUs"; an `nvidia-smi` that exists but fails prints its error,
/// which the parsers reject with that text, because a GPU host whose driver
/// is broken must not be sold as a CPU machine.
pub fn discovery_script() -> String {
    format!(
        "export LC_ALL=C\n\
         echo '{SECTION}gpu'\n\
         if command -v nvidia-smi >/dev/null 2>&1; then\n\
         {GPU_QUERY} 2>&1\n\
         echo '{SECTION}topo'\n\
         {TOPO_QUERY} 2>&1\n\
         else\n\
         echo '{SECTION}topo'\n\
         fi\n\
         echo '{SECTION}lscpu'\n\
         {LSCPU} 2>&1\n\
         echo '{SECTION}free'\n\
         {FREE} 2>&1\n\
         echo '{SECTION}df'\n\
         {DF} 2>&1\n\
         echo '{SECTION}os'\n\
         {OS_RELEASE} 2>&1\n\
         echo '{SECTION}boot'\n\
         cat /proc/sys/kernel/random/boot_id 2>&1\n\
         exit 0\n"
    )
}

/// The discovery script's output, split back into its sections.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sections {
    pub gpu: String,
    pub topo: String,
    pub lscpu: String,
    pub free: String,
    pub df: String,
    pub os: String,
    pub boot: String,
}

impl Sections {
    /// Splits the output of [`discovery_script`].
    pub fn parse(text: &str) -> Sections {
        let mut s = Sections::default();
        let mut current: Option<&mut String> = None;
        for line in text.lines() {
            if let Some(name) = line.strip_prefix(SECTION) {
                current = match name.trim() {
                    "gpu" => Some(&mut s.gpu),
                    "topo" => Some(&mut s.topo),
                    "lscpu" => Some(&mut s.lscpu),
                    "free" => Some(&mut s.free),
                    "df" => Some(&mut s.df),
                    "os" => Some(&mut s.os),
                    "boot" => Some(&mut s.boot),
                    _ => None,
                };
                continue;
            }
            if let Some(buf) = current.as_deref_mut() {
                buf.push_str(line);
                buf.push('\n');
            }
        }
        s
    }

    /// The sections in the shape the hostinfo parsers take.
    pub fn as_discovery(&self) -> DiscoveryOutput<'_> {
        DiscoveryOutput {
            gpu_query: &self.gpu,
            topo: &self.topo,
            lscpu: &self.lscpu,
            free: &self.free,
            df: &self.df,
            os_release: &self.os,
        }
    }
}

/// Reduces a user's public key to `type base64`, dropping the user's
/// comment (the marker takes its place) and refusing anything that could
/// smuggle `authorized_keys` options or a second line.
pub fn key_line(public_key: &str, id: Uuid) -> Result<String, String> {
    let mut parts = public_key.split_ascii_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return Err("the instance's SSH key is not \"<type> <base64> [comment]\"".into());
    };
    let kind_ok = kind
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"@.-_".contains(&b));
    let blob_ok = blob
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b));
    if !kind_ok || !blob_ok {
        return Err("the instance's SSH key contains characters a key cannot have".into());
    }
    Ok(format!("{kind} {blob} {}", key_marker(id)))
}

/// What to run detached on the host for an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workload {
    /// Body of `run`, executed with `sh run <instance dir>`.
    pub run: String,
    /// The user's script, still base64, for the host to decode (a script
    /// may hold bytes a shell string cannot).
    pub script_base64: Option<String>,
    /// Docker must be installed for `run` to work.
    pub needs_docker: bool,
}

/// Turns an instance's launch configuration into a [`Workload`], or
/// `None` when there is nothing to run.
pub fn workload(
    id: Uuid,
    launch: Option<&LaunchConfiguration>,
    envs: &[Env],
    has_gpus: bool,
) -> Result<Option<Workload>, String> {
    let Some(lc) = launch else {
        return Ok(None);
    };
    match lc.kind {
        LaunchType::Script => {
            let sc = lc
                .script_configuration
                .as_ref()
                .ok_or("a script launch configuration needs script_configuration")?;
            let b64: String = sc
                .base64_script
                .chars()
                .filter(|c| !c.is_ascii_whitespace())
                .collect();
            if !b64
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            {
                return Err("script_configuration.base64_script is not base64".into());
            }
            let mut run = String::from("D=\"$1\"\ncd \"$HOME\"\n");
            for e in envs {
                run.push_str(&format!(
                    "export {}={}\n",
                    env_name(&e.name)?,
                    quote(&e.value)
                ));
            }
            // A script with a shebang picks its own interpreter; anything
            // else runs under bash where there is one, as on a cloud image.
            run.push_str(
                "if head -c 2 \"$D/script\" | grep -q '^#!'; then exec \"$D/script\"; fi\n\
                 if command -v bash >/dev/null 2>&1; then exec bash \"$D/script\"; fi\n\
                 exec sh \"$D/script\"\n",
            );
            Ok(Some(Workload {
                run,
                script_base64: Some(b64),
                needs_docker: false,
            }))
        }
        LaunchType::Docker => {
            let dc = lc
                .docker_configuration
                .as_ref()
                .ok_or("a docker launch configuration needs docker_configuration")?;
            let mut run = String::from("cd \"$HOME\"\n");
            if let Some(creds) = &dc.registry_credentials {
                if let (Some(user), Some(password)) = (&creds.username, &creds.password) {
                    let registry = registry_of(&dc.image);
                    run.push_str(&format!(
                        "printf '%s' {} | docker login --username {} --password-stdin {}\n",
                        quote(password),
                        quote(user),
                        registry.map(quote).unwrap_or_default()
                    ));
                }
            }
            let mut cmd = vec![
                "exec".to_owned(),
                "docker".to_owned(),
                "run".to_owned(),
                "--name".to_owned(),
                quote(&container_name(id)),
            ];
            if has_gpus {
                cmd.push("--gpus all".to_owned());
            }
            if let Some(gb) = dc.shared_memory_in_gb {
                cmd.push(format!("--shm-size={gb}g"));
            }
            for p in dc.port_mappings.iter().flatten() {
                cmd.push(format!("-p {}:{}", p.host_port, p.container_port));
            }
            for v in dc.volume_mounts.iter().flatten() {
                cmd.push(format!(
                    "-v {}",
                    quote(&format!("{}:{}", v.host_path, v.container_path))
                ));
            }
            for e in envs.iter().chain(dc.envs.iter().flatten()) {
                cmd.push(format!(
                    "-e {}",
                    quote(&format!("{}={}", env_name(&e.name)?, e.value))
                ));
            }
            cmd.push(quote(&dc.image));
            // Shadeform passes `args` as one string after the image; it is
            // split on whitespace here, and each word quoted, so it can hold
            // arguments but no shell syntax.
            for word in dc.args.as_deref().unwrap_or("").split_whitespace() {
                cmd.push(quote(word));
            }
            run.push_str(&cmd.join(" "));
            run.push('\n');
            Ok(Some(Workload {
                run,
                script_base64: None,
                needs_docker: true,
            }))
        }
    }
}

fn env_name(name: &str) -> Result<&str, String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(format!("environment variable name {name:?} is not valid"))
    }
}

/// The registry host of an image reference, when it names one (the first
/// path part has a dot or a port, or is `localhost`); Docker Hub otherwise.
fn registry_of(image: &str) -> Option<&str> {
    let (first, _) = image.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

fn dir_of(id: Uuid) -> String {
    format!("d=\"$HOME/.parasol/instances/{id}\"\n")
}

/// Prints whether a process group still has a live (non-zombie) member. A
/// killed workload whose parent never reaps it stays a zombie, which a
/// bare `kill -0` would count as alive.
const ALIVE_FN: &str = "alive() {\n\
    if command -v ps >/dev/null 2>&1; then\n\
    ps -e -o pgid= -o stat= | awk -v g=\"$1\" '$1 == g && $2 !~ /^Z/ { f = 1 } END { exit !f }'\n\
    else\n\
    kill -0 \"-$1\" 2>/dev/null\n\
    fi\n\
    }\n";

/// Where the instance's agent lives on a host: inside the instance
/// directory, so the teardown's removal of that directory takes it too.
const AGENT_DIR: &str = "\"$d/agent\"";

/// Installs the user's key (when there is one), (re)starts the instance's
/// agent (when there is one) and starts the workload (when there is one and
/// it has not been started yet). The agent comes first and cannot fail the
/// script, so the workload starts whatever becomes of it.
pub fn setup_script(
    id: Uuid,
    key_line: Option<&str>,
    workload: Option<&Workload>,
    agent: Option<&AgentBootstrap>,
) -> String {
    let marker = quote(&key_marker(id));
    let mut s = String::from("set -eu\numask 077\n");
    s.push_str(&dir_of(id));
    s.push_str("mkdir -p \"$d\"\n");
    if let Some(line) = key_line {
        s.push_str(&format!(
            "mkdir -p \"$HOME/.ssh\"\n\
             ak=\"$HOME/.ssh/authorized_keys\"\n\
             [ -f \"$ak\" ] || : > \"$ak\"\n\
             if ! grep -qF {marker} \"$ak\"; then\n\
             if [ -s \"$ak\" ] && [ -n \"$(tail -c 1 \"$ak\")\" ]; then echo >> \"$ak\"; fi\n\
             printf '%s\\n' {} >> \"$ak\"\n\
             fi\n",
            quote(line)
        ));
    }
    if let Some(agent) = agent {
        s.push_str(&install_commands(agent, id, Placement::Loop(AGENT_DIR)));
    }
    let Some(w) = workload else {
        return s;
    };
    s.push_str("[ -f \"$d/started\" ] && exit 0\n");
    if w.needs_docker {
        s.push_str(&format!(
            "command -v docker >/dev/null 2>&1 || {{ echo 'Docker is not installed on this host, and the launch configuration is a docker one' >&2; exit {EXIT_NO_DOCKER}; }}\n"
        ));
    }
    if let Some(b64) = &w.script_base64 {
        s.push_str(&format!(
            "printf '%s' {} | base64 -d > \"$d/script\"\nchmod 700 \"$d/script\"\n",
            quote(b64)
        ));
    }
    s.push_str(&format!("printf '%s' {} > \"$d/run\"\n", quote(&w.run)));
    s.push_str(&start_commands());
    s
}

/// Starts `run` in a session of its own, so that it outlives the SSH
/// connection and so that its process group id, written to `pid`, names
/// everything it starts.
fn start_commands() -> String {
    format!(
        "rm -f \"$d/pid\"\n\
         cat /proc/sys/kernel/random/boot_id > \"$d/boot\" 2>/dev/null || :\n\
         cd \"$HOME\"\n\
         setsid sh -c 'echo $$ > \"$1/pid.tmp\"; mv \"$1/pid.tmp\" \"$1/pid\"; exec sh \"$1/run\" \"$1\"' parasol-launch \"$d\" > \"$d/log\" 2>&1 < /dev/null &\n\
         i=0\n\
         while [ ! -s \"$d/pid\" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n\
         [ -s \"$d/pid\" ] || {{ echo 'the launch configuration did not start' >&2; exit {EXIT_NOT_STARTED}; }}\n\
         touch \"$d/started\"\n"
    )
}

/// Stops the workload: the recorded process group (TERM, then KILL after
/// five seconds) and the container. Leaves the key and the directory.
fn stop_commands(id: Uuid) -> String {
    format!(
        "{ALIVE_FN}\
         if [ -f \"$d/pid\" ]; then\n\
         pid=$(cat \"$d/pid\")\n\
         case \"$pid\" in ''|*[!0-9]*) pid= ;; esac\n\
         # After a reboot the number may belong to someone else.\n\
         if [ -f \"$d/boot\" ] && [ \"$(cat \"$d/boot\")\" != \"$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)\" ]; then pid= ; fi\n\
         if [ -n \"$pid\" ] && [ \"$pid\" -gt 1 ]; then\n\
         kill -TERM \"-$pid\" 2>/dev/null || :\n\
         i=0\n\
         while alive \"$pid\" && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done\n\
         kill -KILL \"-$pid\" 2>/dev/null || :\n\
         fi\n\
         fi\n\
         rm -f \"$d/pid\" \"$d/started\"\n\
         if command -v docker >/dev/null 2>&1; then docker rm -f {} >/dev/null 2>&1 || :; fi\n",
        quote(&container_name(id))
    )
}

/// Stops the workload and starts it again, for a restart without reboot.
pub fn restart_script(id: Uuid) -> String {
    let mut s = String::from("set -eu\numask 077\n");
    s.push_str(&dir_of(id));
    s.push_str("[ -f \"$d/run\" ] || exit 0\n");
    s.push_str(&stop_commands(id));
    s.push_str(&start_commands());
    s
}

/// Starts the agent and the workload again after a reboot, unless they
/// already run.
pub fn start_script(id: Uuid) -> String {
    let mut s = String::from("set -eu\numask 077\n");
    s.push_str(&dir_of(id));
    s.push_str(&format!(
        "if [ -f {AGENT_DIR}/start ]; then sh {AGENT_DIR}/start || :; fi\n"
    ));
    s.push_str("[ -f \"$d/run\" ] || exit 0\n[ -f \"$d/started\" ] && exit 0\n");
    s.push_str(&start_commands());
    s
}

/// Stops the workload, prints the boot id, and reboots the host a second
/// later (so this session can end cleanly first).
pub fn reboot_script(id: Uuid) -> String {
    let mut s = String::from("set -eu\n");
    s.push_str(&dir_of(id));
    s.push_str(&stop_commands(id));
    s.push_str(
        "cat /proc/sys/kernel/random/boot_id\n\
         nohup sh -c 'sleep 1; sudo -n reboot || reboot' > /dev/null 2>&1 < /dev/null &\n",
    );
    s
}

/// Prints the host's boot id.
pub fn boot_id_script() -> String {
    "cat /proc/sys/kernel/random/boot_id\n".to_owned()
}

/// Removes everything Parasol put on the host for an instance: stops the
/// agent and the workload, deletes exactly the marked `authorized_keys` lines, and
/// deletes the instance directory (log included).
pub fn teardown_script(id: Uuid) -> String {
    let marker = quote(&key_marker(id));
    let mut s = String::from("set -eu\n");
    s.push_str(&dir_of(id));
    s.push_str("if [ -d \"$d\" ]; then\n");
    s.push_str(&format!(
        "if [ -f {AGENT_DIR}/stop ]; then sh {AGENT_DIR}/stop || :; fi\n"
    ));
    s.push_str(&stop_commands(id));
    s.push_str("fi\n");
    s.push_str(&format!(
        "ak=\"$HOME/.ssh/authorized_keys\"\n\
         if [ -f \"$ak\" ] && grep -qF {marker} \"$ak\"; then\n\
         grep -vF {marker} \"$ak\" > \"$ak.parasol-$$\" || :\n\
         cat \"$ak.parasol-$$\" > \"$ak\"\n\
         rm -f \"$ak.parasol-$$\"\n\
         fi\n\
         rm -rf \"$d\"\n\
         rmdir \"$HOME/.parasol/instances\" \"$HOME/.parasol\" 2>/dev/null || :\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use parasol_api::{DockerConfiguration, PortMappings, ScriptConfiguration, VolumeMounts};

    fn id() -> Uuid {
        Uuid::parse_str("6f1c2a44-8d0e-4b4e-9a57-1f2d3c4b5a69").unwrap()
    }

    #[test]
    fn sections_come_back_in_their_fields() {
        let out = "@@parasol-section gpu\n@@parasol-section topo\n@@parasol-section lscpu\nCPU(s): 4\n@@parasol-section free\nMem: 1\n@@parasol-section df\n@@parasol-section os\nID=debian\n@@parasol-section boot\nabc\n";
        let s = Sections::parse(out);
        assert_eq!(s.gpu, "");
        assert_eq!(s.lscpu, "CPU(s): 4\n");
        assert_eq!(s.os, "ID=debian\n");
        assert_eq!(s.boot.trim(), "abc");
    }

    #[test]
    fn the_key_line_keeps_type_and_blob_and_carries_the_marker() {
        let line = key_line("ssh-ed25519 AAAAC3Nza+/= alice@laptop", id()).unwrap();
        assert_eq!(
            line,
            "ssh-ed25519 AAAAC3Nza+/= parasol-instance=6f1c2a44-8d0e-4b4e-9a57-1f2d3c4b5a69"
        );
        assert!(key_line("command=\"sh\" ssh-ed25519 AAAA", id()).is_err());
        assert!(key_line("ssh-ed25519", id()).is_err());
        assert!(key_line("ssh-ed25519 AAAA;rm", id()).is_err());
    }

    #[test]
    fn a_script_workload_exports_quoted_envs() {
        let lc = LaunchConfiguration {
            kind: LaunchType::Script,
            docker_configuration: None,
            script_configuration: Some(ScriptConfiguration {
                base64_script: "ZWNobyBoaQo=".into(),
            }),
        };
        let envs = [Env {
            name: "GREETING".into(),
            value: "it's $HOME".into(),
        }];
        let w = workload(id(), Some(&lc), &envs, false).unwrap().unwrap();
        assert!(
            w.run.contains("export GREETING='it'\\''s $HOME'\n"),
            "{}",
            w.run
        );
        assert_eq!(w.script_base64.as_deref(), Some("ZWNobyBoaQo="));
        assert!(!w.needs_docker);
    }

    #[test]
    fn a_docker_workload_maps_every_field_to_a_flag() {
        let lc = LaunchConfiguration {
            kind: LaunchType::Docker,
            script_configuration: None,
            docker_configuration: Some(DockerConfiguration {
                image: "vllm/vllm-openai:latest".into(),
                args: Some("--model x --port 8000".into()),
                shared_memory_in_gb: Some(8),
                envs: Some(vec![Env {
                    name: "HF_TOKEN".into(),
                    value: "s3cr3t".into(),
                }]),
                port_mappings: Some(vec![PortMappings {
                    host_port: 80,
                    container_port: 8000,
                }]),
                volume_mounts: Some(vec![VolumeMounts {
                    host_path: "/data".into(),
                    container_path: "/root/.cache".into(),
                }]),
                registry_credentials: None,
            }),
        };
        let w = workload(id(), Some(&lc), &[], true).unwrap().unwrap();
        assert!(w.needs_docker);
        assert_eq!(
            w.run.lines().last().unwrap(),
            "exec docker run --name 'parasol-6f1c2a44-8d0e-4b4e-9a57-1f2d3c4b5a69' --gpus all --shm-size=8g -p 80:8000 -v '/data:/root/.cache' -e 'HF_TOKEN=s3cr3t' 'vllm/vllm-openai:latest' '--model' 'x' '--port' '8000'"
        );
    }

    #[test]
    fn registries_are_named_only_by_hosts() {
        assert_eq!(registry_of("ghcr.io/org/img:1"), Some("ghcr.io"));
        assert_eq!(registry_of("localhost:5000/img"), Some("localhost:5000"));
        assert_eq!(registry_of("library/ubuntu"), None);
        assert_eq!(registry_of("ubuntu"), None);
    }

    #[test]
    fn the_agent_starts_before_the_workload_stops_at_teardown_and_restarts_after_a_reboot() {
        let agent = AgentBootstrap {
            url: "http://parasol.example:8080".into(),
            token: crate::providers::clouds::Secret::new("pa_secret"),
            interval_s: 15,
        };
        let w = Workload {
            run: "exec sleep 1\n".into(),
            script_base64: None,
            needs_docker: false,
        };
        let s = setup_script(id(), None, Some(&w), Some(&agent));
        let install = s
            .find("PARASOL_AGENT_DIR=\"$d/agent\" PARASOL_AGENT_SYSTEMD=no")
            .unwrap();
        let started = s.find("[ -f \"$d/started\" ] && exit 0").unwrap();
        assert!(
            install < started,
            "the agent comes first, even on a retried setup"
        );
        assert!(s.contains("PARASOL_AGENT_TOKEN='pa_secret'"));
        assert!(!setup_script(id(), None, Some(&w), None).contains("PARASOL_AGENT"));
        assert!(teardown_script(id()).contains("sh \"$d/agent\"/stop"));
        assert!(start_script(id()).contains("sh \"$d/agent\"/start"));
    }

    #[test]
    fn teardown_removes_only_marked_key_lines() {
        let s = teardown_script(id());
        assert!(s.contains("grep -vF 'parasol-instance=6f1c2a44-8d0e-4b4e-9a57-1f2d3c4b5a69'"));
        assert!(s.contains("rm -rf \"$d\""));
    }
}
