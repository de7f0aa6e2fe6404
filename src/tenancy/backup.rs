//! One tenant's backup in one file, and its restore as the same tenant or as a new one.
//!
//! The file is a line `TENANTGRAPH-BACKUP 1`, a line of JSON (the [`Header`]: the registry
//! record without its API key hash, the revision, the dump's length and SHA-256), then the
//! `pg_dump --format=custom` of the tenant's schema to the end of the file. The tail is a plain
//! custom-format dump: `tail -c <dumpBytes> FILE | pg_restore -l` reads it.
//!
//! A restore checks the whole file before it changes anything, then sends the dump's SQL, the
//! schema renamed where asked, and the registry row through one `psql` session in one
//! transaction: it commits all of it or nothing (a failure, a crash, or a broken file part-way
//! ends the session before its `COMMIT`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use chrono::Utc;
use entity::public::tenants;
use migration::tenant_migration_names;
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::{
    fs::File,
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader},
    process::Child,
};
use uuid::Uuid;

use crate::{
    audit::{self, Actor},
    db::tools::PgTools,
    primitives::{
        api_keys,
        schema_name::{SchemaName, is_valid_identifier},
    },
    state::SharedState,
    tenancy::{
        TenantStatus, guard, health, migrator,
        registry::{self, find_by_schema, schema_of},
        servers,
        validation::is_valid_domain,
    },
};

const MAGIC: &str = "TENANTGRAPH-BACKUP 1";
/// The header line is a registry row and a few numbers; anything longer is not ours.
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// What the file says about the dump that follows it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub format: u32,
    pub created_at: String,
    pub tenantgraph_version: String,
    pub schema_name: String,
    /// The last migration applied when the dump was taken; `None` at base.
    pub revision: Option<String>,
    /// The registry row (`public.tenants` columns), without `api_key_hash`.
    pub tenant: Value,
    pub dump_bytes: u64,
    pub dump_sha256: String,
}

pub struct BackedUp {
    pub tenant: tenants::Model,
    pub revision: Option<String>,
    pub bytes: u64,
}

pub struct Restored {
    pub tenant: tenants::Model,
    /// The restored tenant's new API key, shown once.
    pub api_key: String,
    pub health: health::HealthReport,
}

/// The live tenant named by its id, domain or schema name.
pub async fn find_tenant(db: &impl ConnectionTrait, name: &str) -> anyhow::Result<tenants::Model> {
    let found = if let Ok(id) = Uuid::parse_str(name) {
        registry::find_live(db, id).await.ok()
    } else if let Some(tenant) = registry::find_live_by_domain(db, name).await? {
        Some(tenant)
    } else if let Ok(schema) = SchemaName::parse(name) {
        find_by_schema(db, &schema)
            .await?
            .filter(|tenant| tenant.deleted_at.is_none())
    } else {
        None
    };
    found.with_context(|| format!("no live tenant has the id, domain or schema name {name:?}"))
}

/// Writes the backup of `tenant` to `out` (replaced only once the new file is complete).
pub async fn backup(
    state: &SharedState,
    tools: &PgTools,
    tenant: &tenants::Model,
    out: &Path,
) -> anyhow::Result<BackedUp> {
    let result = write_backup(state, tools, tenant, out).await;
    if let Err(err) = &result {
        audit_failure(state, "tenant.backup", Some(tenant.id), out, err).await;
    }
    result
}

async fn write_backup(
    state: &SharedState,
    tools: &PgTools,
    tenant: &tenants::Model,
    out: &Path,
) -> anyhow::Result<BackedUp> {
    // Dumped from the tenant's own server.
    let db = &servers::pool_of(state, tenant).await?;
    let server_tools;
    let tools = match tenant.server_name.as_deref() {
        Some(server) => {
            let url = servers::url_of(&state.db, server).await?;
            server_tools = PgTools::find(
                state.config.pg_bin.as_deref(),
                secrecy::ExposeSecret::expose_secret(&url),
            )
            .await?;
            &server_tools
        }
        None => tools,
    };
    let schema = schema_of(tenant);
    ensure!(
        migrator::schema_exists(db, &schema).await?,
        "tenant {} has no schema {schema} to back up",
        tenant.domain
    );
    let dump = sibling(out, "dump");
    let _cleanup = RemoveOnDrop(dump.clone());
    // The schema's migration lock is held while the dump is taken, so the revision read here is
    // the one the dump has.
    // pg_dump writes into the file made here, private to this user like the backup itself: it
    // holds the tenant's data and its users' password hashes.
    create_private(&dump).await?;
    let (txn, migrations) = migrator::begin_locked(db, &schema).await?;
    let revision = migrations.current_revision().map(str::to_owned);
    let registry_row = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT to_jsonb(t) - 'api_key_hash' AS registry_row FROM public.tenants t \
         WHERE id = $1 AND deleted_at IS NULL",
        [tenant.id.into()],
    );
    // Read under the schema's lock: in its transaction when the registry is on the same server.
    let row = match tenant.server_name {
        None => txn.query_one_raw(registry_row).await?,
        Some(_) => state.db.query_one_raw(registry_row).await?,
    }
    .context("the tenant was deleted meanwhile")?
    .try_get::<Value>("", "registry_row")?;
    let output = tools
        .command("pg_dump")
        .args([
            "--format=custom",
            "--no-owner",
            "--no-privileges",
            "--schema",
        ])
        .arg(schema.as_str())
        .arg("--file")
        .arg(&dump)
        .output()
        .await
        .context("could not run pg_dump")?;
    txn.rollback().await?;
    ensure!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );

    let (dump_bytes, dump_sha256) =
        copy_digest(&mut File::open(&dump).await?, &mut tokio::io::sink()).await?;
    let header = Header {
        format: 1,
        created_at: Utc::now().to_rfc3339(),
        tenantgraph_version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_name: schema.as_str().to_owned(),
        revision: revision.clone(),
        tenant: row,
        dump_bytes,
        dump_sha256,
    };
    let partial = sibling(out, "partial");
    let _partial_cleanup = RemoveOnDrop(partial.clone());
    let mut file = create_private(&partial)
        .await
        .with_context(|| format!("could not create {}", partial.display()))?;
    file.write_all(format!("{MAGIC}\n{}\n", serde_json::to_string(&header)?).as_bytes())
        .await?;
    tokio::io::copy(&mut File::open(&dump).await?, &mut file).await?;
    file.sync_all().await?;
    drop(file);
    tokio::fs::rename(&partial, out)
        .await
        .with_context(|| format!("could not write {}", out.display()))?;
    let bytes = tokio::fs::metadata(out).await?.len();
    audit::tenant_success(
        &state.db,
        &Actor::system(),
        "tenant.backup",
        tenant,
        json!({ "file": out.display().to_string(), "revision": revision, "bytes": bytes }),
    )
    .await;
    Ok(BackedUp {
        tenant: tenant.clone(),
        revision,
        bytes,
    })
}

/// Restores the backup in `file`: as the tenant it was (when no tenant has its id, domain or
/// schema any more), or with `as_domain` as a new tenant with a new id and the schema name of
/// the new domain. Either way the tenant gets a new API key and starts without sessions.
pub async fn restore(
    state: &SharedState,
    tools: &PgTools,
    file: &Path,
    as_domain: Option<&str>,
) -> anyhow::Result<Restored> {
    let result = restore_file(state, tools, file, as_domain).await;
    if let Err(err) = &result {
        audit_failure(state, "tenant.restore", None, file, err).await;
    }
    result
}

/// A failed backup or restore in the audit trail, with the file and the whole message (the
/// operator at the terminal saw the same).
async fn audit_failure(
    state: &SharedState,
    action: &str,
    tenant_id: Option<Uuid>,
    file: &Path,
    err: &anyhow::Error,
) {
    audit::record(
        &state.db,
        &Actor::system(),
        action,
        tenant_id,
        audit::Outcome::Failure,
        json!({ "file": file.display().to_string(), "error": format!("{err:#}") }),
    )
    .await;
}

async fn restore_file(
    state: &SharedState,
    tools: &PgTools,
    file: &Path,
    as_domain: Option<&str>,
) -> anyhow::Result<Restored> {
    let db = &state.db;
    let dump = std::env::temp_dir().join(format!("tenantgraph-restore-{}.dump", Uuid::new_v4()));
    let _cleanup = RemoveOnDrop(dump.clone());
    let header = read_backup(file, &dump).await?;
    let old_schema =
        SchemaName::parse(&header.schema_name).context("the backup names an invalid schema")?;
    let original_id = header.tenant["id"]
        .as_str()
        .and_then(|id| Uuid::parse_str(id).ok())
        .context("the backup's registry record has no tenant id")?;
    let names = tenant_migration_names();
    if let Some(revision) = &header.revision {
        ensure!(
            names.contains(revision),
            "the backup is at revision {revision}, which this tenantgraph does not know (made by a newer version?)"
        );
    }

    let (id, domain, schema) = match as_domain {
        Some(domain) => {
            let domain = domain.trim().to_ascii_lowercase();
            ensure!(
                is_valid_domain(&domain),
                "--as: {domain:?} is not a valid domain"
            );
            let schema = SchemaName::from_domain(&state.config.tenant_schema_prefix, &domain)
                .with_context(|| format!("--as: no schema name can be made from {domain:?}"))?;
            (Uuid::new_v4(), domain, schema)
        }
        None => {
            let domain = header.tenant["domain"]
                .as_str()
                .filter(|domain| is_valid_domain(domain))
                .context("the backup's registry record has no valid domain")?
                .to_owned();
            (original_id, domain, old_schema.clone())
        }
    };
    refuse_taken(db, id, &domain, &schema).await?;

    let key = api_keys::generate(&state.config.api_key_prefix);
    let now = Utc::now().fixed_offset();
    let mut row = header.tenant.clone();
    let fields = row
        .as_object_mut()
        .context("the backup's registry record is not an object")?;
    for (field, value) in [
        ("id", json!(id)),
        ("domain", json!(domain)),
        ("schema_name", json!(schema.as_str())),
        ("api_key_hash", json!(key.hash)),
        ("api_key_prefix", json!(key.display_prefix)),
        ("api_key_created_at", json!(now)),
        ("schema_provisioned", json!(true)),
        ("current_revision", json!(header.revision)),
        (
            "migrations_applied",
            json!(header.revision.as_ref() == names.last()),
        ),
        ("pending_admin", Value::Null),
        ("pending_roles", Value::Null),
        ("deleted_at", Value::Null),
        ("updated_at", json!(now)),
        // Restored onto the control database, wherever it lived before.
        ("server_name", Value::Null),
    ] {
        fields.insert(field.to_owned(), value);
    }
    // Restored into a tenantgraph with newer migrations, an active tenant is below head: parked
    // INACTIVE like any tenant moved there, until a migration takes it to head.
    if header.revision.as_ref() != names.last()
        && fields.get("status") == Some(&json!(TenantStatus::Active.as_db()))
    {
        fields.insert("status".to_owned(), json!(TenantStatus::Inactive.as_db()));
        fields.insert(
            "failure_reason".to_owned(),
            json!(guard::below_head_reason(header.revision.as_deref())),
        );
    }
    if id != original_id {
        fields.insert("created_at".to_owned(), json!(now));
        fields.insert("last_activity_at".to_owned(), Value::Null);
    }

    let tail = closing_sql(id, &old_schema, &schema, &row)?;
    let renamed_to = format!("{}.", schema.quoted());
    run_restore(
        tools,
        &dump,
        |line| {
            let line = old_schema.replace_qualifier(line, &renamed_to);
            if line.trim_end() == format!("CREATE SCHEMA {old_schema};") {
                format!("CREATE SCHEMA {};\n", schema.quoted())
            } else {
                line
            }
        },
        &tail,
    )
    .await?;

    let tenant = registry::find_live(db, id).await?;
    state.directory.forget(id).await;
    audit::tenant_success(
        db,
        &Actor::system(),
        "tenant.restore",
        &tenant,
        json!({
            "file": file.display().to_string(),
            "revision": header.revision,
            "fromTenantId": original_id,
            "fromSchemaName": header.schema_name,
        }),
    )
    .await;
    let health = health::check(db, &tenant).await;
    Ok(Restored {
        tenant,
        api_key: key.key,
        health,
    })
}

/// Reads and checks the whole backup, copying its dump to `dump`; nothing else is touched.
async fn read_backup(file: &Path, dump: &Path) -> anyhow::Result<Header> {
    let opened = File::open(file)
        .await
        .with_context(|| format!("could not open {}", file.display()))?;
    let mut reader = BufReader::new(opened);
    let mut magic = Vec::new();
    (&mut reader)
        .take(MAGIC.len() as u64 + 1)
        .read_until(b'\n', &mut magic)
        .await?;
    ensure!(
        magic == format!("{MAGIC}\n").as_bytes(),
        "{} is not a tenantgraph backup (it does not start with {MAGIC:?})",
        file.display()
    );
    let mut line = Vec::new();
    (&mut reader)
        .take(MAX_HEADER_BYTES)
        .read_until(b'\n', &mut line)
        .await?;
    ensure!(
        line.ends_with(b"\n"),
        "{} is truncated or damaged: its header is incomplete",
        file.display()
    );
    let header: Header = serde_json::from_slice(&line)
        .with_context(|| format!("{} is damaged: its header is not readable", file.display()))?;
    ensure!(
        header.format == 1,
        "backup format {} is not supported",
        header.format
    );

    let mut out = create_private(dump)
        .await
        .with_context(|| format!("could not create {}", dump.display()))?;
    let (copied, digest) = copy_digest(&mut reader, &mut out).await?;
    out.flush().await?;
    ensure!(
        copied == header.dump_bytes,
        "{} is truncated or damaged: it holds {copied} bytes of dump where {} were written; nothing was restored",
        file.display(),
        header.dump_bytes
    );
    ensure!(
        digest == header.dump_sha256,
        "{} is damaged: its dump does not match its checksum; nothing was restored",
        file.display()
    );
    Ok(header)
}

/// Refuses a restore onto anything taken: a registry row (live, or deleted but for the same
/// tenant) with the id, domain or schema, or a schema of that name in the database.
async fn refuse_taken(
    db: &impl ConnectionTrait,
    id: Uuid,
    domain: &str,
    schema: &SchemaName,
) -> anyhow::Result<()> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT id, domain, schema_name, deleted_at IS NULL AS live FROM public.tenants \
             WHERE id = $1 OR domain = $2 OR schema_name = $3",
            [id.into(), domain.into(), schema.as_str().into()],
        ))
        .await?;
    for row in rows {
        let (taken_id, taken_domain, live): (Uuid, String, bool) = (
            row.try_get("", "id")?,
            row.try_get("", "domain")?,
            row.try_get("", "live")?,
        );
        if live {
            bail!(
                "refused: the live tenant {taken_domain} ({taken_id}) has this tenant's id, domain or schema; \
                 delete it first, or restore as a new tenant with --as NEW_DOMAIN"
            );
        }
        if taken_id != id {
            bail!(
                "refused: the deleted tenant {taken_domain} ({taken_id}) still holds domain {domain:?} or schema {schema}; \
                 restore with --as NEW_DOMAIN"
            );
        }
    }
    if migrator::schema_exists(db, schema).await? {
        bail!(
            "refused: schema {schema} exists in the database (kept by a deleted tenant, or belonging to none); \
             drop it first, or restore with --as NEW_DOMAIN"
        );
    }
    Ok(())
}

/// What follows the dump's SQL in the restore's transaction: a check that no object of the
/// renamed schema still names the old one, the registry row (replacing the same tenant's
/// deleted row), ending its old sessions, and the `COMMIT`.
fn closing_sql(
    id: Uuid,
    old: &SchemaName,
    new: &SchemaName,
    row: &Value,
) -> anyhow::Result<String> {
    // Only the columns the record has: a column added since the backup takes its default.
    let columns: Vec<&str> = row
        .as_object()
        .context("the backup's registry record is not an object")?
        .keys()
        .map(String::as_str)
        .collect();
    ensure!(
        columns.iter().all(|column| is_valid_identifier(column)),
        "the backup's registry record has a field that is no column name"
    );
    let columns = columns.join(", ");
    let row = serde_json::to_string(row)?;
    let tag = format!("tg{}", Uuid::new_v4().simple());
    ensure!(!row.contains(&tag), "the registry record cannot be quoted");
    let mut sql = String::new();
    if old != new {
        // Names are validated identifiers ([a-z0-9_]), safe inside a literal.
        let (old, new) = (old.as_str(), new.as_str());
        sql.push_str(&format!(
            "DO ${tag}$ BEGIN IF EXISTS ( \
               SELECT 1 FROM pg_catalog.pg_attrdef d JOIN pg_catalog.pg_class c ON c.oid = d.adrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{new}' AND pg_catalog.pg_get_expr(d.adbin, d.adrelid) ~ '\\m{old}\\.' \
               UNION ALL SELECT 1 FROM pg_catalog.pg_constraint k JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace \
                 WHERE n.nspname = '{new}' AND pg_catalog.pg_get_constraintdef(k.oid) ~ '\\m{old}\\.' \
               UNION ALL SELECT 1 FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class c ON c.oid = x.indexrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = '{new}' AND pg_catalog.pg_get_indexdef(x.indexrelid) ~ '\\m{old}\\.') \
             THEN RAISE EXCEPTION 'restored objects still name schema {old}'; END IF; END ${tag}$;\n"
        ));
    }
    sql.push_str(&format!(
        "DELETE FROM public.tenants WHERE id = '{id}' AND deleted_at IS NOT NULL;\n\
         UPDATE public.sessions SET revoked_at = now(), revoked_reason = 'tenant restored' \
           WHERE tenant_id = '{id}' AND revoked_at IS NULL;\n\
         INSERT INTO public.tenants ({columns}) SELECT {columns} \
           FROM pg_catalog.jsonb_populate_record(NULL::public.tenants, ${tag}${row}${tag}$::jsonb);\n\
         COMMIT;\n"
    ));
    Ok(sql)
}

/// Streams `pg_restore`'s SQL for `dump`, each statement line passed through `rewrite` (data
/// lines of `COPY … FROM stdin` pass untouched), into one `psql` transaction closed by `tail`.
async fn run_restore(
    tools: &PgTools,
    dump: &Path,
    rewrite: impl Fn(&str) -> String,
    tail: &str,
) -> anyhow::Result<()> {
    let mut restore = tools
        .offline("pg_restore")
        .args(["--no-owner", "--no-privileges", "--file", "-"])
        .arg(dump)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("could not run pg_restore")?;
    let mut psql = tools
        .command("psql")
        .args(["--no-psqlrc", "--quiet", "--set", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("could not run psql")?;
    let restore_errors = tokio::spawn(read_all(restore.stderr.take()));
    let psql_errors = tokio::spawn(read_all(psql.stderr.take()));
    let mut input = psql.stdin.take().context("psql has no input")?;
    let mut sql = BufReader::new(restore.stdout.take().context("pg_restore has no output")?);

    let sent: anyhow::Result<()> = async {
        input.write_all(b"BEGIN;\n").await?;
        let mut line = Vec::new();
        let mut in_copy_data = false;
        loop {
            line.clear();
            if sql.read_until(b'\n', &mut line).await? == 0 {
                break;
            }
            if in_copy_data {
                in_copy_data = line != b"\\.\n";
                input.write_all(&line).await?;
                continue;
            }
            let text = String::from_utf8_lossy(&line);
            if text.starts_with("COPY ") && text.trim_end().ends_with("FROM stdin;") {
                in_copy_data = true;
            }
            input.write_all(rewrite(&text).as_bytes()).await?;
        }
        Ok(())
    }
    .await;
    if sent.is_err() {
        // psql stopped reading: pg_restore would wait forever to write the rest.
        let _ = restore.start_kill();
    }
    let restored = wait(&mut restore).await;
    let restore_errors = restore_errors.await.unwrap_or_default();
    // Only a complete dump gets its COMMIT; otherwise psql's input ends inside the transaction
    // and PostgreSQL rolls it back.
    let finished = match (&sent, restored) {
        (Ok(()), true) => input.write_all(tail.as_bytes()).await.is_ok(),
        _ => false,
    };
    drop(input);
    let committed = wait(&mut psql).await;
    let psql_errors = psql_errors.await.unwrap_or_default();
    if !restored {
        bail!("pg_restore could not read the dump; nothing was restored: {restore_errors}");
    }
    if !committed || !finished {
        bail!("the restore failed and was rolled back; nothing was restored: {psql_errors}");
    }
    sent.context("the restore was interrupted; nothing was restored")
}

async fn wait(child: &mut Child) -> bool {
    child.wait().await.is_ok_and(|status| status.success())
}

async fn read_all(stream: Option<impl AsyncRead + Unpin>) -> String {
    let mut text = String::new();
    if let Some(mut stream) = stream {
        let _ = stream.read_to_string(&mut text).await;
    }
    text.trim().to_owned()
}

/// Copies `from` to `to`, returning how many bytes and their SHA-256 in hex.
async fn copy_digest(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> anyhow::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = from.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        to.write_all(&buffer[..read]).await?;
        total += read as u64;
    }
    Ok((total, hex::encode(hasher.finalize())))
}

/// `FILE.<what>-<random>` beside `path`, for work files renamed or removed afterwards.
fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{what}-{}", Uuid::new_v4().simple()));
    path.with_file_name(name)
}

/// Creates (or empties) `path` readable and writable by this user only.
async fn create_private(path: &Path) -> std::io::Result<File> {
    tokio::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .await
}

/// Removes a work file however the function holding it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
