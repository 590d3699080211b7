//! `parasol ssh-keys ...`: the account's public keys.

use std::path::PathBuf;

use parasol_api::{AddSshKeyRequest, AddSshKeyResponse, Confirmation, SshKey, SshKeysResponse};

use super::client::{Api, CliError};
use super::output::{print_raw, Format, Table};

/// `parasol ssh-keys` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SshKeysCommand {
    /// List the account's keys.
    List,
    /// Show one key.
    Get {
        /// Key id.
        id: String,
    },
    /// Add a public key from a file (such as ~/.ssh/id_ed25519.pub).
    Add {
        /// Path of the public key file.
        path: PathBuf,
        /// Name for the key; defaults to the key's comment, or the file name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Make a key the default for new instances.
    SetDefault {
        /// Key id.
        id: String,
    },
    /// Delete a key (not the default, nor one an instance uses).
    Delete {
        /// Key id.
        id: String,
    },
}

/// Runs one `ssh-keys` subcommand.
pub async fn run(api: &Api, format: Format, command: SshKeysCommand) -> Result<(), CliError> {
    match command {
        SshKeysCommand::List => {
            let answer = api.get("/sshkeys").await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let keys: SshKeysResponse = answer.parse()?;
            print_keys(&keys.ssh_keys);
        }
        SshKeysCommand::Get { id } => {
            let answer = api.get(&format!("/sshkeys/{}/info", seg(&id))).await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let key: SshKey = answer.parse()?;
            println!("id          {}", key.id);
            println!("name        {}", key.name);
            println!("default     {}", if key.is_default { "yes" } else { "no" });
            println!("public_key  {}", key.public_key);
        }
        SshKeysCommand::Add { path, name } => {
            let public_key = std::fs::read_to_string(&path).map_err(|e| {
                CliError::new(format!("cannot read the key file {}: {e}", path.display()))
            })?;
            let public_key = public_key.trim().to_string();
            if public_key.contains("PRIVATE KEY") {
                return Err(CliError::new(format!(
                    "{} is a private key; give the public key (usually the .pub file beside it)",
                    path.display()
                )));
            }
            let name = name.unwrap_or_else(|| default_name(&path, &public_key));
            let answer = api
                .post(
                    "/sshkeys/add",
                    Some(&AddSshKeyRequest {
                        name: name.clone(),
                        public_key,
                    }),
                )
                .await?;
            if format == Format::Json {
                print_raw(&answer);
                return Ok(());
            }
            let added: AddSshKeyResponse = answer.parse()?;
            println!("Added key {name:?}: {}", added.id);
        }
        SshKeysCommand::SetDefault { id } => {
            let answer = api
                .post::<()>(&format!("/sshkeys/{}/setdefault", seg(&id)), None)
                .await?;
            confirm(format, &answer, "is now the default key")?;
        }
        SshKeysCommand::Delete { id } => {
            let answer = api
                .post::<()>(&format!("/sshkeys/{}/delete", seg(&id)), None)
                .await?;
            confirm(format, &answer, "deleted")?;
        }
    }
    Ok(())
}

fn confirm(format: Format, answer: &super::client::Answer, what: &str) -> Result<(), CliError> {
    if format == Format::Json {
        print_raw(answer);
    } else {
        let c: Confirmation = answer.parse()?;
        println!("Key {} {what}.", c.id);
    }
    Ok(())
}

/// Prints keys as a table.
pub fn print_keys(keys: &[SshKey]) {
    let mut t = Table::new(&["ID", "NAME", "DEFAULT", "KEY"]);
    for k in keys {
        t.row(vec![
            k.id.to_string().into(),
            k.name.clone().into(),
            (if k.is_default { "yes" } else { "" }).into(),
            short_key(&k.public_key).into(),
        ]);
    }
    t.print("No SSH keys. Add one with `parasol ssh-keys add ~/.ssh/id_ed25519.pub`.");
}

/// `ssh-ed25519 AAAAC3Nz…HR4f comment`: the type, the ends of the body and
/// the comment are what people recognise.
fn short_key(key: &str) -> String {
    let mut parts = key.split_whitespace();
    let kind = parts.next().unwrap_or("");
    let body = parts.next().unwrap_or("");
    let comment: Vec<&str> = parts.collect();
    let body: Vec<char> = body.chars().collect();
    let body = if body.len() > 16 {
        format!(
            "{}…{}",
            body[..8].iter().collect::<String>(),
            body[body.len() - 6..].iter().collect::<String>()
        )
    } else {
        body.iter().collect()
    };
    [kind.to_string(), body, comment.join(" ")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The key's comment when it has one, else the file name without `.pub`.
fn default_name(path: &std::path::Path, key: &str) -> String {
    let comment = key.split_whitespace().skip(2).collect::<Vec<_>>().join(" ");
    if !comment.is_empty() {
        return comment;
    }
    path.file_name()
        .map(|n| n.to_string_lossy().trim_end_matches(".pub").to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "key".to_string())
}

/// A path segment: ids are uuids, but a stray `/` or `?` must not change
/// which route is called.
pub fn seg(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c.to_string()
            } else {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_named_by_comment_then_file() {
        let p = std::path::Path::new("/home/me/.ssh/id_ed25519.pub");
        assert_eq!(default_name(p, "ssh-ed25519 AAAA me@laptop"), "me@laptop");
        assert_eq!(default_name(p, "ssh-ed25519 AAAA"), "id_ed25519");
    }

    #[test]
    fn long_keys_are_shortened_for_tables() {
        assert_eq!(
            short_key("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYH me@x"),
            "ssh-ed25519 AAAAC3Nz…MEBQYH me@x"
        );
        assert_eq!(seg("a/b?c"), "a%2Fb%3Fc");
    }
}
