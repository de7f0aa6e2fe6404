//! PostgreSQL's client programs (`pg_dump`, `pg_restore`, `psql`), found beside the server
//! binaries and pointed at the same database as the pool.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::Command;

use super::embedded::find_server_binaries;

/// Where the client programs are and which database they talk to.
pub struct PgTools {
    bin_dir: PathBuf,
    /// The connection URL without its password.
    url: String,
    /// Handed over in `PGPASSWORD`, so that it never shows in the process list.
    password: Option<SecretString>,
}

impl PgTools {
    /// Finds the programs (as the server binaries are found: `PG_BIN`, `pg_config --bindir`,
    /// `/usr/lib/postgresql/*/bin`, `PATH`) for the database at `url`, which must be a session
    /// connection (never a transaction pooler).
    pub async fn find(pg_bin: Option<&Path>, url: &str) -> anyhow::Result<PgTools> {
        let bin_dir = find_server_binaries(pg_bin).await?;
        for program in ["pg_dump", "pg_restore", "psql"] {
            if !bin_dir.join(program).is_file() {
                bail!(
                    "{program} is not in {} beside the server binaries: install PostgreSQL's client programs",
                    bin_dir.display()
                );
            }
        }
        let mut parsed = url::Url::parse(url).context("the database URL is not a URL")?;
        let password = parsed
            .password()
            .map(|password| {
                percent_decode(password).map(|password| SecretString::from(password.to_owned()))
            })
            .transpose()?;
        parsed
            .set_password(None)
            .map_err(|()| anyhow::anyhow!("the database URL cannot carry a password"))?;
        Ok(PgTools {
            bin_dir,
            url: parsed.into(),
            password,
        })
    }

    /// `program` with the connection settings; the caller adds its arguments.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command.arg("--dbname").arg(&self.url);
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password.expose_secret());
        }
        command.env_remove("PGSERVICE").kill_on_drop(true);
        command
    }

    /// `program` without connection settings (for `pg_restore` writing SQL to a file).
    pub fn offline(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        command.kill_on_drop(true);
        command
    }
}

fn percent_decode(text: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' && tail.len() >= 2 {
            let hex = std::str::from_utf8(&tail[..2]).context("a bad %-escape in the URL")?;
            bytes.push(u8::from_str_radix(hex, 16).context("a bad %-escape in the URL")?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).context("the URL's password is not UTF-8")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaped_passwords_are_decoded() {
        assert_eq!(super::percent_decode("a%40b%2Fc").unwrap(), "a@b/c");
        assert_eq!(super::percent_decode("plain").unwrap(), "plain");
    }
}
