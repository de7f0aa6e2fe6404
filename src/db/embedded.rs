//! The embedded PostgreSQL default: without DATABASE_URL, tenantgraph runs a private cluster
//! under its data directory.
//!
//! Layout of the data directory:
//! - `postgres/`: the cluster, owned by the user the server runs as, mode 0700;
//! - `postgres.json`: port and superuser password, mode 0600;
//! - `postgres.log`: the server log;
//! - `.lock`: held while a process initialises, starts or stops the cluster;
//! - `.in-use`: every [`EmbeddedPostgres`] holds a shared lock on it for as long as it lives.
//!
//! Several processes may use one cluster at once: a server, and CLI commands run beside it. Each
//! handle knows whether it started the server or adopted one already running ([`Ownership`]), and
//! [`EmbeddedPostgres::stop`] stops the server only when no other handle, in any process, still
//! uses it; otherwise the last one to stop does. The kernel drops a process's locks when it dies,
//! so a `kill -9` never leaves a cluster that nobody may stop.
//!
//! Dropping an [`EmbeddedPostgres`] without [`EmbeddedPostgres::stop`] leaves the server running
//! (and no longer counts as a user of it); the next [`EmbeddedPostgres::start`] adopts it.

use std::ffi::OsStr;
use std::fmt;
use std::fs::{File, Permissions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::unistd::{Gid, Uid, User, geteuid};
use rand::Rng;
use rand::distr::Alphanumeric;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const SUPERUSER: &str = "tenantgraph";
const PASSWORD_LENGTH: usize = 40;
const SERVER_BINARIES: [&str; 3] = ["initdb", "pg_ctl", "postgres"];
const DEBIAN_INSTALL_ROOT: &str = "/usr/lib/postgresql";
const HOW_TO_GET_POSTGRES: &str = "install the PostgreSQL server (e.g. `apt-get install postgresql`), \
     set PG_BIN to the directory holding initdb, pg_ctl and postgres, \
     or set DATABASE_URL to use an existing server";
const START_TIMEOUT: Duration = Duration::from_secs(60);
const POLL_INTERVAL: Duration = Duration::from_millis(100);
const TAIL_LINES: usize = 20;
/// Our settings live in their own file, rewritten on every start from postgres.json, so that
/// postgres.json stays the one place to change the port.
const SETTINGS_FILE: &str = "tenantgraph.conf";

/// Where the embedded cluster lives and which PostgreSQL binaries run it.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// DATA_DIR (default `./data`); the cluster lives in `data_dir/postgres`.
    pub data_dir: PathBuf,
    /// PG_BIN: the directory holding `initdb`, `pg_ctl` and `postgres`. When set it is the only
    /// place searched, so a wrong value fails instead of silently using another version.
    pub pg_bin: Option<PathBuf>,
}

/// How an [`EmbeddedPostgres`] came by its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// This handle started the server.
    Started,
    /// The server was already running (for another process, or left behind by one that exited).
    Adopted,
}

/// What [`EmbeddedPostgres::stop`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The server was stopped.
    Stopped,
    /// Another handle still uses the server, so it was left running for that one to stop.
    LeftRunning,
    /// The server had already stopped.
    NotRunning,
}

/// A running embedded PostgreSQL cluster, started or adopted by [`EmbeddedPostgres::start`].
pub struct EmbeddedPostgres {
    cluster: Cluster,
    port: u16,
    password: SecretString,
    ownership: Ownership,
    /// The shared lock on `.in-use` that tells others this handle uses the server.
    in_use: Flock<File>,
}

impl EmbeddedPostgres {
    /// Finds the server binaries, runs `initdb` on first use (reusing the cluster afterwards),
    /// starts the server or adopts one already running on this data dir, and waits until it
    /// accepts connections.
    pub async fn start(options: EmbeddedOptions) -> anyhow::Result<EmbeddedPostgres> {
        let bin_dir = find_server_binaries(options.pg_bin.as_deref()).await?;
        tokio::fs::create_dir_all(&options.data_dir)
            .await
            .with_context(|| format!("could not create data dir {}", options.data_dir.display()))?;
        // Absolute and symlink-free, so it compares equal to what the kernel reports for the server.
        let data_dir = tokio::fs::canonicalize(&options.data_dir)
            .await
            .with_context(|| {
                format!("could not resolve data dir {}", options.data_dir.display())
            })?;

        let _lock = lock_data_dir(&data_dir).await?;
        let server_user = server_user(&data_dir).await?;
        let cluster = Cluster {
            data_dir,
            bin_dir,
            server_user,
        };

        let credentials = if cluster.is_initialised().await? {
            cluster.load_credentials().await?
        } else {
            cluster.initialise().await?
        };
        let (port, ownership) = match cluster.live_postmaster().await? {
            Some(pid) => {
                tracing::info!(
                    pid,
                    data_dir = %cluster.data_dir.display(),
                    "adopting the embedded PostgreSQL already running on this data dir"
                );
                (cluster.wait_until_ready(pid).await?, Ownership::Adopted)
            }
            None => (
                cluster.start_server(credentials.port).await?,
                Ownership::Started,
            ),
        };
        // Taken before the data dir lock is released, so no stop can slip in between.
        let in_use = lock_file(&cluster.in_use_file(), LockKind::Shared).await?;
        Ok(EmbeddedPostgres {
            cluster,
            port,
            password: SecretString::from(credentials.password),
            ownership,
            in_use,
        })
    }

    /// `postgres://USER:PASSWORD@127.0.0.1:PORT/DATABASE`; it holds the password, so never log it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{database}",
            self.password.expose_secret(),
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data dir (absolute); the cluster itself is in its `postgres` subdirectory.
    pub fn data_dir(&self) -> &Path {
        &self.cluster.data_dir
    }

    /// Whether this handle started the server or adopted a running one.
    pub fn ownership(&self) -> Ownership {
        self.ownership
    }

    /// Stops the cluster with a fast shutdown and waits for the server to exit, unless another
    /// handle (a server, a CLI command) still uses it: then it is left running, and the last of
    /// them to stop stops it.
    pub async fn stop(self) -> anyhow::Result<StopOutcome> {
        let EmbeddedPostgres {
            cluster,
            ownership,
            in_use,
            ..
        } = self;
        // Keeps a concurrent start from adopting a server that is about to go away.
        let _lock = lock_data_dir(&cluster.data_dir).await?;
        drop(in_use);
        // Held until the server is down; a start waits for the data dir lock meanwhile.
        let Some(_sole_user) = try_lock_exclusive(&cluster.in_use_file())? else {
            tracing::info!(
                data_dir = %cluster.data_dir.display(),
                started_here = ownership == Ownership::Started,
                "leaving the embedded PostgreSQL running: another tenantgraph process still uses it"
            );
            return Ok(StopOutcome::LeftRunning);
        };
        if cluster.live_postmaster().await?.is_none() {
            tracing::info!(
                data_dir = %cluster.data_dir.display(),
                "embedded PostgreSQL was already stopped"
            );
            return Ok(StopOutcome::NotRunning);
        }
        let output = cluster
            .command("pg_ctl")
            .args(["stop", "-m", "fast", "-w", "-t", "60", "-D"])
            .arg(cluster.cluster_dir())
            .output()
            .await
            .context("could not run pg_ctl stop")?;
        if !output.status.success() {
            bail!(cluster.command_failed("pg_ctl stop", &output).await);
        }
        tracing::info!(data_dir = %cluster.data_dir.display(), "stopped embedded PostgreSQL");
        Ok(StopOutcome::Stopped)
    }
}

impl fmt::Debug for EmbeddedPostgres {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("data_dir", &self.cluster.data_dir)
            .field("bin_dir", &self.cluster.bin_dir)
            .field("port", &self.port)
            .field("ownership", &self.ownership)
            .field("user", &SUPERUSER)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// What a later run needs to reconnect, persisted in `postgres.json`.
#[derive(Serialize, Deserialize)]
struct Credentials {
    port: u16,
    password: String,
}

/// The account the server binaries run as, when it is not ourselves.
struct ServerUser {
    name: String,
    uid: Uid,
    gid: Gid,
}

struct Cluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    /// Set when we are root: PostgreSQL refuses to run as root.
    server_user: Option<ServerUser>,
}

impl Cluster {
    fn cluster_dir(&self) -> PathBuf {
        self.data_dir.join("postgres")
    }

    fn credentials_file(&self) -> PathBuf {
        self.data_dir.join("postgres.json")
    }

    fn log_file(&self) -> PathBuf {
        self.data_dir.join("postgres.log")
    }

    fn in_use_file(&self) -> PathBuf {
        self.data_dir.join(".in-use")
    }

    fn pid_file(&self) -> PathBuf {
        self.cluster_dir().join("postmaster.pid")
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        // The server user may not be allowed into our working directory.
        command.current_dir("/");
        if let Some(user) = &self.server_user {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        command
    }

    fn hand_to_server_user(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(user) = &self.server_user {
            std::os::unix::fs::chown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
                .with_context(|| {
                    format!("could not give {} to user {}", path.display(), user.name)
                })?;
        }
        Ok(())
    }

    async fn is_initialised(&self) -> anyhow::Result<bool> {
        let cluster_dir = self.cluster_dir();
        tokio::fs::try_exists(&cluster_dir)
            .await
            .with_context(|| format!("could not check for a cluster at {}", cluster_dir.display()))
    }

    async fn load_credentials(&self) -> anyhow::Result<Credentials> {
        let path = self.credentials_file();
        let missing = || {
            format!(
                "the cluster at {} exists but its credentials file {} is missing or unreadable; \
                 restore it, or delete the cluster directory to start over (this deletes its data)",
                self.cluster_dir().display(),
                path.display()
            )
        };
        let json = tokio::fs::read_to_string(&path)
            .await
            .with_context(missing)?;
        serde_json::from_str(&json).with_context(missing)
    }

    /// Runs initdb in a staging directory that is renamed into place once complete, so an
    /// interrupted initialisation never leaves a half-made cluster behind.
    async fn initialise(&self) -> anyhow::Result<Credentials> {
        let staging_dir = self.data_dir.join("postgres.initdb");
        match tokio::fs::remove_dir_all(&staging_dir).await {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| {
                    format!("could not remove leftover {}", staging_dir.display())
                });
            }
        }
        tokio::fs::create_dir(&staging_dir)
            .await
            .with_context(|| format!("could not create {}", staging_dir.display()))?;
        tokio::fs::set_permissions(&staging_dir, Permissions::from_mode(0o700))
            .await
            .with_context(|| format!("could not restrict {}", staging_dir.display()))?;
        self.hand_to_server_user(&staging_dir)?;

        let credentials = Credentials {
            port: pick_free_port()?,
            password: rand::rng()
                .sample_iter(Alphanumeric)
                .take(PASSWORD_LENGTH)
                .map(char::from)
                .collect(),
        };
        tracing::info!(
            data_dir = %self.data_dir.display(),
            port = credentials.port,
            "initialising the embedded PostgreSQL cluster"
        );

        let password_file = SecretFile::create(
            self.data_dir.join(".initdb-password"),
            &credentials.password,
        )
        .await?;
        self.hand_to_server_user(&password_file.path)?;
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&staging_dir)
            .arg(format!("--username={SUPERUSER}"))
            .arg("--pwfile")
            .arg(&password_file.path)
            .args([
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ])
            .output()
            .await
            .context("could not run initdb")?;
        drop(password_file);
        if !output.status.success() {
            bail!(
                "initdb failed ({}):\n{}",
                output.status,
                tail(&format!(
                    "{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ))
            );
        }

        // Included last, so our settings override initdb's defaults.
        let main_config = staging_dir.join("postgresql.conf");
        let mut config = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&main_config)
            .await
            .with_context(|| format!("could not open {}", main_config.display()))?;
        config
            .write_all(format!("\ninclude '{SETTINGS_FILE}'\n").as_bytes())
            .await
            .with_context(|| format!("could not write {}", main_config.display()))?;

        self.save_credentials(&credentials).await?;
        tokio::fs::rename(&staging_dir, self.cluster_dir())
            .await
            .with_context(|| {
                format!(
                    "could not move the new cluster to {}",
                    self.cluster_dir().display()
                )
            })?;
        Ok(credentials)
    }

    async fn save_credentials(&self, credentials: &Credentials) -> anyhow::Result<()> {
        let path = self.credentials_file();
        let staged = self.data_dir.join("postgres.json.new");
        let json = serde_json::to_string_pretty(credentials)?;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&staged)
            .await
            .with_context(|| format!("could not create {}", staged.display()))?;
        // The mode above only applies to a new file; a leftover one may be more open.
        file.set_permissions(Permissions::from_mode(0o600)).await?;
        file.write_all(json.as_bytes()).await?;
        file.sync_all().await?;
        tokio::fs::rename(&staged, &path)
            .await
            .with_context(|| format!("could not write {}", path.display()))
    }

    /// The PID of a server running on this cluster, if any. A `postmaster.pid` left behind by a
    /// server that died is removed: its PID may since belong to another process, and then
    /// PostgreSQL would refuse to start.
    async fn live_postmaster(&self) -> anyhow::Result<Option<i32>> {
        let pid_file = self.pid_file();
        let contents = match tokio::fs::read_to_string(&pid_file).await {
            Ok(contents) => contents,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("could not read {}", pid_file.display()));
            }
        };
        if let Some(pid) = parse_pid_file(&contents).map(|status| status.pid)
            && is_postmaster_of(pid, &self.cluster_dir())
        {
            return Ok(Some(pid));
        }
        tracing::warn!(pid_file = %pid_file.display(), "removing stale postmaster.pid");
        match tokio::fs::remove_file(&pid_file).await {
            Ok(()) => Ok(None),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => {
                Err(error).with_context(|| format!("could not remove {}", pid_file.display()))
            }
        }
    }

    async fn start_server(&self, port: u16) -> anyhow::Result<u16> {
        ensure_port_free(port, &self.credentials_file())?;

        let settings_path = self.cluster_dir().join(SETTINGS_FILE);
        tokio::fs::write(&settings_path, server_settings(port))
            .await
            .with_context(|| format!("could not write {}", settings_path.display()))?;
        self.hand_to_server_user(&settings_path)?;

        // The server user writes the log through pg_ctl, but cannot create files in the data dir.
        let log_file = self.log_file();
        tokio::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&log_file)
            .await
            .with_context(|| format!("could not create {}", log_file.display()))?;
        self.hand_to_server_user(&log_file)?;

        let output = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(self.cluster_dir())
            .arg("-l")
            .arg(&log_file)
            .output()
            .await
            .context("could not run pg_ctl start")?;
        if !output.status.success() {
            bail!(self.command_failed("pg_ctl start", &output).await);
        }
        let pid = self
            .live_postmaster()
            .await?
            .ok_or_else(|| anyhow!("pg_ctl start succeeded but no server is running"))?;
        let port = self.wait_until_ready(pid).await?;
        tracing::info!(data_dir = %self.data_dir.display(), port, "started embedded PostgreSQL");
        Ok(port)
    }

    /// Waits until the server reports ready in `postmaster.pid` and its port accepts TCP
    /// connections; returns that port.
    async fn wait_until_ready(&self, pid: i32) -> anyhow::Result<u16> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let contents = tokio::fs::read_to_string(self.pid_file())
                .await
                .unwrap_or_default();
            if let Some(status) = parse_pid_file(&contents)
                && status.pid == pid
                && status.ready
                && let Some(port) = status.port
                && tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                    .await
                    .is_ok()
            {
                return Ok(port);
            }
            if !is_postmaster_of(pid, &self.cluster_dir()) {
                bail!(
                    "PostgreSQL (pid {pid}) exited before accepting connections; last lines of {}:\n{}",
                    self.log_file().display(),
                    self.log_tail().await
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "PostgreSQL (pid {pid}) did not accept connections within {} s; last lines of {}:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log_file().display(),
                    self.log_tail().await
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn command_failed(&self, what: &str, output: &Output) -> String {
        format!(
            "{what} failed ({}):\n{}{}\nlast lines of {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            self.log_file().display(),
            self.log_tail().await
        )
    }

    async fn log_tail(&self) -> String {
        let path = self.log_file();
        tokio::task::spawn_blocking(move || read_end(&path))
            .await
            .ok()
            .and_then(Result::ok)
            .map_or_else(|| "(log unavailable)".to_owned(), |text| tail(&text))
    }
}

/// The first directory holding all server binaries: only `pg_bin` when given, otherwise
/// `pg_config --bindir`, `/usr/lib/postgresql/*/bin` newest first, then `PATH`. Client tools
/// such as `pg_dump` sit beside them.
pub async fn find_server_binaries(pg_bin: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = pg_bin {
        if has_server_binaries(dir) {
            return Ok(dir.to_path_buf());
        }
        bail!(
            "PG_BIN={} does not contain the PostgreSQL server binaries (initdb, pg_ctl, postgres). \
             To fix this, {HOW_TO_GET_POSTGRES}",
            dir.display()
        );
    }
    let mut candidates = Vec::new();
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output().await
        && output.status.success()
    {
        candidates.push(PathBuf::from(
            String::from_utf8_lossy(&output.stdout).trim(),
        ));
    }
    candidates.extend(debian_bin_dirs_newest_first());
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    candidates.into_iter().find(|dir| has_server_binaries(dir)).ok_or_else(|| {
        anyhow!(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via pg_config --bindir, \
             in {DEBIAN_INSTALL_ROOT}/*/bin or on PATH. To fix this, {HOW_TO_GET_POSTGRES}"
        )
    })
}

fn has_server_binaries(dir: &Path) -> bool {
    SERVER_BINARIES.iter().all(|name| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|metadata| metadata.is_file() && metadata.mode() & 0o111 != 0)
    })
}

fn debian_bin_dirs_newest_first() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(DEBIAN_INSTALL_ROOT) else {
        return Vec::new();
    };
    let mut versions: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry
                .file_name()
                .to_str()?
                .split('.')
                .map(str::parse)
                .collect::<Result<Vec<u32>, _>>()
                .ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

/// Exclusive lock on `data_dir/.lock`, so that concurrent processes neither both run initdb nor
/// both start a server.
async fn lock_data_dir(data_dir: &Path) -> anyhow::Result<Flock<File>> {
    lock_file(&data_dir.join(".lock"), LockKind::Exclusive).await
}

#[derive(Clone, Copy)]
enum LockKind {
    Shared,
    Exclusive,
}

/// Locks `path` (created if missing), waiting for other holders without blocking the runtime.
async fn lock_file(path: &Path, kind: LockKind) -> anyhow::Result<Flock<File>> {
    let (now, wait) = match kind {
        LockKind::Shared => (FlockArg::LockSharedNonblock, FlockArg::LockShared),
        LockKind::Exclusive => (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive),
    };
    let file = open_lock_file(path)?;
    let cannot_lock = || format!("could not lock {}", path.display());
    match Flock::lock(file, now) {
        Ok(lock) => Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            tracing::info!(
                lock = %path.display(),
                "waiting for another process using the embedded PostgreSQL"
            );
            tokio::task::spawn_blocking(move || Flock::lock(file, wait))
                .await?
                .map_err(|(_, errno)| errno)
                .with_context(cannot_lock)
        }
        Err((_, errno)) => Err(errno).with_context(cannot_lock),
    }
}

/// An exclusive lock on `path` if nobody else holds one of any kind, else `None`.
fn try_lock_exclusive(path: &Path) -> anyhow::Result<Option<Flock<File>>> {
    match Flock::lock(open_lock_file(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(errno).with_context(|| format!("could not lock {}", path.display())),
    }
}

fn open_lock_file(path: &Path) -> anyhow::Result<File> {
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("could not open {}", path.display()))
}

/// Who runs the server: ourselves unless we are root. As root, an existing cluster keeps its
/// owner (it may come from an unprivileged run or another image's `postgres` uid); a new one is
/// run by the `postgres` user.
async fn server_user(data_dir: &Path) -> anyhow::Result<Option<ServerUser>> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    let cluster_dir = data_dir.join("postgres");
    let owner = match tokio::fs::metadata(&cluster_dir).await {
        Ok(metadata) if metadata.uid() != 0 => Some(metadata),
        Ok(_) => None,
        Err(error) if error.kind() == ErrorKind::NotFound => None,
        Err(error) => {
            return Err(error)
                .with_context(|| format!("could not inspect {}", cluster_dir.display()));
        }
    };
    let user = match owner {
        Some(metadata) => {
            let uid = Uid::from_raw(metadata.uid());
            ServerUser {
                name: User::from_uid(uid)?.map_or_else(|| uid.to_string(), |user| user.name),
                uid,
                gid: Gid::from_raw(metadata.gid()),
            }
        }
        None => {
            let user = User::from_name("postgres")?.ok_or_else(|| {
                anyhow!(
                    "tenantgraph runs as root, but PostgreSQL refuses to run as root and there is no \
                     `postgres` user to run it as. Create one (e.g. `useradd --system postgres`), \
                     run tenantgraph as an unprivileged user, or set DATABASE_URL to use an existing server"
                )
            })?;
            ServerUser {
                name: user.name,
                uid: user.uid,
                gid: user.gid,
            }
        }
    };
    ensure_traversable(data_dir, &user).await?;
    Ok(Some(user))
}

/// The server user must be able to enter every directory down to the data dir. std drops
/// supplementary groups when it switches user, so only the owner, the primary group and others count.
async fn ensure_traversable(data_dir: &Path, user: &ServerUser) -> anyhow::Result<()> {
    for dir in data_dir.ancestors() {
        let metadata = tokio::fs::metadata(dir)
            .await
            .with_context(|| format!("could not inspect {}", dir.display()))?;
        let mode = metadata.mode();
        let can_enter = if metadata.uid() == user.uid.as_raw() {
            mode & 0o100 != 0
        } else if metadata.gid() == user.gid.as_raw() {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !can_enter {
            bail!(
                "PostgreSQL runs as user {name} because tenantgraph runs as root, but {name} cannot \
                 enter {dir}. Allow it (e.g. `chmod o+x {dir}`) or choose a DATA_DIR that {name} can reach",
                name = user.name,
                dir = dir.display()
            );
        }
    }
    Ok(())
}

fn pick_free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("could not find a free TCP port on 127.0.0.1")?;
    Ok(listener.local_addr()?.port())
}

fn ensure_port_free(port: u16, credentials_file: &Path) -> anyhow::Result<()> {
    match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == ErrorKind::AddrInUse => bail!(
            "port {port} on 127.0.0.1, the embedded PostgreSQL's port recorded in {file}, is in use \
             by another program. Stop that program, or change \"port\" in {file}",
            file = credentials_file.display()
        ),
        Err(error) => {
            Err(error).with_context(|| format!("could not check port {port} on 127.0.0.1"))
        }
    }
}

fn server_settings(port: u16) -> String {
    format!(
        "# Written by tenantgraph on every start; change the port in ../postgres.json.\n\
         listen_addresses = '127.0.0.1'\n\
         port = {port}\n\
         # TCP only: a socket under a deep data dir can exceed the 107-byte socket path limit.\n\
         unix_socket_directories = ''\n\
         max_connections = 200\n\
         shared_buffers = 128MB\n"
    )
}

/// What `postmaster.pid` says: line 1 is the PID, line 4 the port, line 8 the status.
struct PidFileStatus {
    pid: i32,
    port: Option<u16>,
    ready: bool,
}

fn parse_pid_file(contents: &str) -> Option<PidFileStatus> {
    let lines: Vec<&str> = contents.lines().collect();
    Some(PidFileStatus {
        pid: lines.first()?.trim().parse().ok()?,
        port: lines.get(3).and_then(|line| line.trim().parse().ok()),
        ready: lines.get(7).is_some_and(|line| line.trim() == "ready"),
    })
}

/// Whether `pid` is a live postmaster serving `cluster_dir`. Zombies have an empty command line
/// and server children rename themselves ("postgres: checkpointer"), so neither passes.
fn is_postmaster_of(pid: i32, cluster_dir: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(cmdline) = std::fs::read(proc_dir.join("cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
    let runs_postgres = args.first().is_some_and(|program| {
        Path::new(OsStr::from_bytes(program)).file_name() == Some(OsStr::new("postgres"))
    });
    if !runs_postgres {
        return false;
    }
    // The postmaster works in its data dir. Reading another user's cwd needs CAP_SYS_PTRACE,
    // which containers rarely grant root, so fall back to the -D that pg_ctl passed.
    match std::fs::read_link(proc_dir.join("cwd")) {
        Ok(cwd) => cwd == cluster_dir,
        Err(_) => args
            .windows(2)
            .any(|pair| pair[0] == b"-D" && Path::new(OsStr::from_bytes(pair[1])) == cluster_dir),
    }
}

/// A file holding a secret, deleted as soon as it goes out of scope.
struct SecretFile {
    path: PathBuf,
}

impl SecretFile {
    async fn create(path: PathBuf, secret: &str) -> anyhow::Result<SecretFile> {
        // A leftover from an interrupted run; its secret was never used.
        let _ = tokio::fs::remove_file(&path).await;
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await
            .with_context(|| format!("could not create {}", path.display()))?;
        let secret_file = SecretFile { path };
        file.write_all(secret.as_bytes())
            .await
            .with_context(|| format!("could not write {}", secret_file.path.display()))?;
        Ok(secret_file)
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The end of a possibly large file, enough for [`tail`].
fn read_end(path: &Path) -> std::io::Result<String> {
    const MAX_BYTES: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(MAX_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pid_file_of_a_ready_server_gives_pid_port_and_readiness() {
        let status = parse_pid_file(
            "4242\n/data/postgres\n1700000000\n54321\n\n127.0.0.1\n  1234   5678\nready   \n",
        )
        .expect("parses");
        assert_eq!(
            (status.pid, status.port, status.ready),
            (4242, Some(54321), true)
        );
    }

    #[test]
    fn a_pid_file_of_a_starting_server_is_not_ready() {
        let status = parse_pid_file("4242\n/data/postgres\n").expect("parses");
        assert_eq!((status.pid, status.port, status.ready), (4242, None, false));
    }

    #[test]
    fn tail_keeps_only_the_last_lines() {
        let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        let kept = tail(&text);
        assert!(kept.starts_with("line 11\n") && kept.ends_with("line 30"));
    }
}
