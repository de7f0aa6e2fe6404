//! Moving a tenant online from one data server to another with PostgreSQL's logical
//! replication (`moveTenant`, run as a batch job of kind `MOVE`):
//!
//! 1. the schema is made on the target at the tenant's revision, empty, with its placement
//!    there not active;
//! 2. a publication of the schema and a replication slot on the source (the slot made apart
//!    from the subscription, so that both servers may be databases of one cluster), and a
//!    subscription on the target copying the rows and then streaming every change;
//! 3. once the copy is done and the target has caught up, writes are held: the source placement
//!    is marked not active (the pin refuses new requests) and the transactions that began before
//!    finish; the write pause is measured from here;
//! 4. the last change is awaited, the row counts of every table compared, the sequences set;
//! 5. the switch: the target placement active, then the registry's `server_name` (with the pause,
//!    noted in the job, in the same transaction) — the pause ends;
//! 6. the subscription, slot and publication go, then the source schema and placement.
//!
//! The registry is the record of the switch: a move resumed after a crash finds the tenant
//! either still on the source (everything made on the target is dropped and the source placement
//! made active again, then the move starts over) or already on the target (the clean-up is
//! finished). Every step of both is idempotent.

use std::time::{Duration, Instant};

use entity::public::tenants;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use serde_json::json;
use uuid::Uuid;

use crate::{
    audit::{self, Actor, Outcome},
    db::{Pool, servers::CONTROL_SERVER},
    error::{AppError, AppResult},
    primitives::schema_name::SchemaName,
    state::SharedState,
    tenancy::{
        Progress, Step, StepStatus, TenantStatus,
        migrator::{self, Target},
        registry::{find_live, schema_of, update_registry_in},
        servers::{self, ServerState, drop_placed_schema, mark_placement, write_placement},
    },
};

/// How often the replication's progress is looked at.
const POLL: Duration = Duration::from_millis(100);

/// The publication, slot and subscription of the move of tenant `id` (one name for all three).
pub fn replication_name(id: Uuid) -> String {
    format!("tg_move_{}", id.simple())
}

/// Checks that `tenant_id` may move to `to_server` now; the tenant and the server it is on.
/// `NOT_FOUND` for an unknown tenant or server; `BAD_USER_INPUT` for the same server, a server
/// that is not `ACTIVE`, the control database at either end, a tenant that is not `ACTIVE`, and
/// servers without logical replication; `CONFLICT` for a tenant being moved or migrated.
pub async fn check(
    state: &SharedState,
    tenant_id: Uuid,
    to_server: &str,
) -> AppResult<(tenants::Model, String)> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let to = servers::find(&state.db, to_server.trim()).await?;
    let from = tenant
        .server_name
        .clone()
        .unwrap_or_else(|| CONTROL_SERVER.to_owned());
    if to.name == from {
        return Err(AppError::bad_input(
            "toServer",
            "the tenant is already on this database server",
        ));
    }
    if to.control || from == CONTROL_SERVER {
        return Err(AppError::bad_input(
            if to.control { "toServer" } else { "tenantId" },
            "tenants move between registered data servers; the control database takes part in no move",
        ));
    }
    if to.state != ServerState::Active {
        return Err(AppError::bad_input(
            "toServer",
            format!(
                "the database server is {}: no tenant moves there",
                to.state.as_db()
            ),
        ));
    }
    if tenant.status != TenantStatus::Active || !tenant.schema_provisioned {
        return Err(AppError::bad_input(
            "tenantId",
            format!(
                "only an ACTIVE, provisioned tenant moves; this one is {}",
                tenant.status.as_db()
            ),
        ));
    }
    for (name, field) in [(from.as_str(), "tenantId"), (to.name.as_str(), "toServer")] {
        let db = state.servers.pool(Some(name)).await?;
        let level: String = scalar(&db, "SELECT current_setting('wal_level')")
            .await
            .map_err(|err| state.servers.failed(Some(name), err))?;
        if level != "logical" {
            return Err(AppError::bad_input(
                field,
                format!(
                    "database server {name} has wal_level={level}: a move copies with logical replication, which needs wal_level=logical on both servers"
                ),
            ));
        }
    }
    let target = state.servers.pool(Some(&to.name)).await?;
    if migrator::schema_exists(&target, &schema_of(&tenant))
        .await
        .map_err(|err| state.servers.failed(Some(&to.name), err))?
    {
        return Err(AppError::conflict(
            "toServer",
            format!(
                "a schema named {} already exists on database server {}",
                tenant.schema_name, to.name
            ),
        ));
    }
    if in_batch(state, tenant_id).await? {
        return Err(already_moving());
    }
    let source = state.servers.pool(Some(&from)).await?;
    let txn = source.begin().await?;
    let free = migrator::try_lock_schema(&txn, &schema_of(&tenant)).await?;
    txn.rollback().await?;
    if !free {
        return Err(AppError::conflict(
            "tenantId",
            "the tenant's schema is being migrated",
        ));
    }
    Ok((tenant, from))
}

/// The refusal of a move of a tenant that a batch works on.
pub fn already_moving() -> AppError {
    AppError::conflict(
        "tenantId",
        "the tenant is being moved or migrated by a batch that has not finished",
    )
}

/// Whether an unfinished batch moves or migrates the tenant.
async fn in_batch(state: &SharedState, tenant_id: Uuid) -> AppResult<bool> {
    Ok(state
        .db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT 1 FROM public.provisioning_jobs j \
               JOIN public.provisioning_batches b ON b.id = j.batch_id \
              WHERE j.tenant_id = $1 AND j.status IN ('PENDING', 'RUNNING') \
                AND b.kind IN ('MOVE', 'MIGRATE') LIMIT 1",
            [tenant_id.into()],
        ))
        .await?
        .is_some())
}

/// Which tenant moves, from which server to which.
pub struct MoveOrder<'a> {
    pub tenant_id: Uuid,
    pub from: &'a str,
    pub to: &'a str,
}

/// One move, from where the registry says it is: run from the start (after rolling back what
/// an earlier attempt left when `again`), or finished when the registry already names the
/// target. Steps 1 to 5 have `timeout`; whatever stops them before the switch is rolled back.
/// `note_pause` records the write pause with the job, in the switch's transaction. Returns the
/// write pause, in milliseconds, when this run switched the tenant.
pub async fn run(
    state: &SharedState,
    actor: &Actor,
    MoveOrder {
        tenant_id,
        from,
        to,
    }: MoveOrder<'_>,
    again: bool,
    timeout: Duration,
    progress: &Progress,
    note_pause: impl FnOnce(i64) -> Statement,
) -> AppResult<Option<i64>> {
    let tenant = find_live(&state.db, tenant_id).await?;
    let mv = Move::open(state, actor, &tenant, from, to).await?;
    if tenant.server_name.as_deref() == Some(to) {
        mv.clean_up().await?;
        return Ok(None);
    }
    if again {
        mv.roll_back(progress).await?;
    }
    let copied = tokio::time::timeout(timeout, mv.copy_and_switch(progress, note_pause))
        .await
        .unwrap_or_else(|_| Err(AppError::Timeout("the move took too long".into())));
    let failure = match copied {
        Ok(pause) => {
            mv.clean_up().await?;
            return Ok(Some(pause));
        }
        Err(err) => err,
    };
    // Stopped at the switch's commit, the tenant may be on the target after all.
    if find_live(&state.db, tenant_id)
        .await?
        .server_name
        .as_deref()
        == Some(to)
    {
        mv.clean_up().await?;
        return Ok(None);
    }
    if let Err(undo) = mv.roll_back(progress).await {
        tracing::error!(tenant = %tenant_id, error = ?undo, "could not roll a failed move back; the next run of the batch does");
    }
    Err(failure)
}

/// What one move works with.
struct Move<'a> {
    state: &'a SharedState,
    actor: &'a Actor,
    tenant: tenants::Model,
    schema: SchemaName,
    name: String,
    from: &'a str,
    to: &'a str,
    source: Pool,
    target: Pool,
}

impl<'a> Move<'a> {
    async fn open(
        state: &'a SharedState,
        actor: &'a Actor,
        tenant: &tenants::Model,
        from: &'a str,
        to: &'a str,
    ) -> AppResult<Move<'a>> {
        Ok(Move {
            state,
            actor,
            schema: schema_of(tenant),
            name: replication_name(tenant.id),
            tenant: tenant.clone(),
            from,
            to,
            source: state.servers.pool(Some(from)).await?,
            target: state.servers.pool(Some(to)).await?,
        })
    }

    /// The tenant as placed on `server`.
    fn placed_on(&self, server: &str, status: TenantStatus) -> tenants::Model {
        tenants::Model {
            server_name: Some(server.to_owned()),
            status,
            ..self.tenant.clone()
        }
    }

    /// Steps 1 to 5; the write pause in milliseconds.
    async fn copy_and_switch(
        &self,
        progress: &Progress,
        note_pause: impl FnOnce(i64) -> Statement,
    ) -> AppResult<i64> {
        progress.report(Step::CreateSchema, StepStatus::Started, None);
        self.create_target_schema().await?;
        progress.report(Step::CreateSchema, StepStatus::Succeeded, None);

        progress.report(
            Step::Seed,
            StepStatus::Started,
            Some("copying the rows with logical replication"),
        );
        self.replicate().await?;
        self.wait_until_copied().await?;
        let lsn = self.current_lsn().await?;
        self.wait_until_applied(&lsn).await?;
        progress.report(
            Step::Seed,
            StepStatus::Succeeded,
            Some("the target caught up"),
        );

        progress.report(Step::Verify, StepStatus::Started, Some("holding writes"));
        mark_placement(
            self.state,
            &self.placed_on(self.from, TenantStatus::Active),
            TenantStatus::Inactive,
        )
        .await?;
        let held = Instant::now();
        self.wait_for_earlier_transactions().await?;
        self.verify_structure().await?;
        let lsn = self.current_lsn().await?;
        self.wait_until_applied(&lsn).await?;
        self.verify_row_counts().await?;
        self.copy_sequences().await?;
        progress.report(
            Step::Verify,
            StepStatus::Succeeded,
            Some("row counts agree"),
        );

        progress.report(Step::Register, StepStatus::Started, None);
        let pause = self.switch(held, note_pause).await?;
        progress.report(
            Step::Register,
            StepStatus::Succeeded,
            Some(&format!("on {}; writes were held for {pause} ms", self.to)),
        );
        Ok(pause)
    }

    /// The schema on the target at the source's revision, empty (the subscription copies every
    /// row, the ledger's too), with its placement not active.
    async fn create_target_schema(&self) -> AppResult<()> {
        let at = migrator::status(&self.source, &self.schema)
            .await
            .map_err(|err| self.state.servers.failed(Some(self.from), err))?;
        let target = match at.current_revision() {
            Some(revision) => Target::Revision(revision.to_owned()),
            None => Target::Base,
        };
        let made = async {
            let txn = self.target.begin().await?;
            txn.execute_unprepared(&format!("CREATE SCHEMA {}", self.schema.quoted()))
                .await?;
            migrator::pin_and_lock(&txn, &self.schema).await?;
            migrator::migrate_new_in(&txn, &target).await?;
            let tables = tables_of(&txn, &self.schema).await?;
            if !tables.is_empty() {
                txn.execute_unprepared(&format!("TRUNCATE {}", tables.join(", ")))
                    .await?;
            }
            write_placement(&txn, &self.placed_on(self.to, TenantStatus::Provisioning)).await?;
            txn.commit().await?;
            AppResult::Ok(())
        }
        .await;
        made.map_err(|err| self.failed_on(self.to, err))
    }

    /// The publication and slot on the source, the subscription on the target.
    async fn replicate(&self) -> AppResult<()> {
        let url = servers::url_of(&self.state.db, self.from).await?;
        let name = &self.name;
        let published = async {
            self.source
                .execute_unprepared(&format!(
                    "CREATE PUBLICATION {name} FOR TABLES IN SCHEMA {}",
                    self.schema.quoted()
                ))
                .await?;
            self.source
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                    [name.clone().into()],
                ))
                .await
        }
        .await;
        published.map_err(|err| self.failed_on(self.from, err))?;
        let connection = secrecy::ExposeSecret::expose_secret(&url).replace('\'', "''");
        self.target
            .execute_unprepared(&format!(
                "CREATE SUBSCRIPTION {name} CONNECTION '{connection}' PUBLICATION {name} \
                 WITH (create_slot = false, slot_name = '{name}', copy_data = true)"
            ))
            .await
            .map_err(|err| {
                // The error may quote the connection string: only its code is kept.
                let code = crate::error::code_of(&err).unwrap_or_default();
                AppError::Internal(anyhow::anyhow!(
                    "could not subscribe the target to the source (SQLSTATE {code})"
                ))
            })?;
        Ok(())
    }

    /// Waits until the subscription has copied every table.
    async fn wait_until_copied(&self) -> AppResult<()> {
        loop {
            let copying: i64 = scalar_with(
                &self.target,
                "SELECT count(*) FROM pg_subscription_rel r \
                   JOIN pg_subscription s ON s.oid = r.srsubid \
                  WHERE s.subname = $1 AND r.srsubstate <> 'r'",
                self.name.clone(),
            )
            .await
            .map_err(|err| self.failed_on(self.to, err))?;
            if copying == 0 {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn current_lsn(&self) -> AppResult<String> {
        scalar(&self.source, "SELECT pg_current_wal_lsn()::text")
            .await
            .map_err(|err| self.failed_on(self.from, err))
    }

    /// Waits until the target has confirmed every change up to `lsn`.
    async fn wait_until_applied(&self, lsn: &str) -> AppResult<()> {
        loop {
            let applied: bool = self
                .source
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT coalesce(bool_and(confirmed_flush_lsn >= $2::pg_lsn), false) AS applied \
                       FROM pg_replication_slots WHERE slot_name = $1",
                    [self.name.clone().into(), lsn.into()],
                ))
                .await
                .and_then(|row| {
                    row.map_or(Ok(false), |row| row.try_get::<bool>("", "applied"))
                })
                .map_err(|err| self.failed_on(self.from, err))?;
            if applied {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits for the source's transactions that began before the placement was marked: they
    /// may have passed the pin's check; every later one is refused.
    async fn wait_for_earlier_transactions(&self) -> AppResult<()> {
        let marked: String = scalar(&self.source, "SELECT clock_timestamp()::text")
            .await
            .map_err(|err| self.failed_on(self.from, err))?;
        loop {
            let earlier: i64 = scalar_with(
                &self.source,
                "SELECT count(*) FROM pg_stat_activity \
                  WHERE datname = current_database() AND pid <> pg_backend_pid() \
                    AND backend_type = 'client backend' AND xact_start < $1::timestamptz",
                marked.clone(),
            )
            .await
            .map_err(|err| self.failed_on(self.from, err))?;
            if earlier == 0 {
                return Ok(());
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The schema has the same columns on both servers: a change of its structure on the source
    /// during the move (DDL is not replicated) fails the move instead of stalling it.
    async fn verify_structure(&self) -> AppResult<()> {
        let sql = "SELECT coalesce(string_agg(table_name || '.' || column_name || ' ' || data_type, ',' \
                     ORDER BY table_name, column_name), '') FROM information_schema.columns \
                    WHERE table_schema = $1";
        let schema = self.schema.as_str().to_owned();
        let on_source: String = scalar_with(&self.source, sql, schema.clone())
            .await
            .map_err(|err| self.failed_on(self.from, err))?;
        let on_target: String = scalar_with(&self.target, sql, schema)
            .await
            .map_err(|err| self.failed_on(self.to, err))?;
        if on_source != on_target {
            return Err(AppError::Internal(anyhow::anyhow!(
                "the tenant's schema changed on the source during the move"
            )));
        }
        Ok(())
    }

    /// Every table has as many rows on the target as on the source.
    async fn verify_row_counts(&self) -> AppResult<()> {
        let tables = tables_of(&self.source, &self.schema)
            .await
            .map_err(|err| self.failed_on(self.from, err))?;
        for table in tables {
            let sql = format!("SELECT count(*) FROM {table}");
            let on_source: i64 = scalar(&self.source, &sql)
                .await
                .map_err(|err| self.failed_on(self.from, err))?;
            let on_target: i64 = scalar(&self.target, &sql)
                .await
                .map_err(|err| self.failed_on(self.to, err))?;
            if on_source != on_target {
                return Err(AppError::Internal(anyhow::anyhow!(
                    "table {table} has {on_source} rows on the source and {on_target} on the target"
                )));
            }
        }
        Ok(())
    }

    /// Every sequence of the schema continues on the target where it is on the source.
    async fn copy_sequences(&self) -> AppResult<()> {
        let rows = self
            .source
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT format('%I.%I', schemaname, sequencename) AS qualified, last_value \
                   FROM pg_sequences WHERE schemaname = $1",
                [self.schema.as_str().into()],
            ))
            .await
            .map_err(|err| self.failed_on(self.from, err))?;
        for row in rows {
            let sequence: String = row.try_get("", "qualified")?;
            // A sequence never used on the source is left as new on the target.
            let Some(last) = row.try_get::<Option<i64>>("", "last_value")? else {
                continue;
            };
            self.target
                .execute_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT setval($1::regclass, $2, true)",
                    [sequence.into(), last.into()],
                ))
                .await
                .map_err(|err| self.failed_on(self.to, err))?;
        }
        Ok(())
    }

    /// The target placement active, then the registry pointing at the target with the pause
    /// noted: the tenant is served there from the next request.
    async fn switch(
        &self,
        held: Instant,
        note_pause: impl FnOnce(i64) -> Statement,
    ) -> AppResult<i64> {
        self.target
            .execute_unprepared(&format!("ALTER SUBSCRIPTION {} DISABLE", self.name))
            .await
            .map_err(|err| self.failed_on(self.to, err))?;
        write_placement(&self.target, &self.placed_on(self.to, TenantStatus::Active))
            .await
            .map_err(|err| self.failed_on(self.to, err))?;
        let pause = held.elapsed().as_millis() as i64;
        let txn = self.state.db.begin().await?;
        update_registry_in(&txn, self.tenant.id, |row| {
            row.server_name = sea_orm::ActiveValue::Set(Some(self.to.to_owned()));
        })
        .await?;
        txn.execute_raw(note_pause(pause)).await?;
        audit::record(
            &txn,
            self.actor,
            "tenant.move",
            Some(self.tenant.id),
            Outcome::Success,
            json!({ "from": self.from, "to": self.to, "writePauseMs": pause }),
        )
        .await;
        txn.commit().await?;
        self.state.directory.forget(self.tenant.id).await;
        Ok(pause)
    }

    /// Drops the subscription, the slot and the publication (each if still there).
    async fn drop_replication(&self) -> AppResult<()> {
        let name = &self.name;
        let exists: i64 = scalar_with(
            &self.target,
            "SELECT count(*) FROM pg_subscription WHERE subname = $1",
            name.clone(),
        )
        .await
        .map_err(|err| self.failed_on(self.to, err))?;
        if exists > 0 {
            // Detached from its slot first: the slot is dropped on the source below, which
            // also works when both servers are databases of one cluster.
            self.target
                .execute_unprepared(&format!(
                    "ALTER SUBSCRIPTION {name} DISABLE; \
                     ALTER SUBSCRIPTION {name} SET (slot_name = NONE); \
                     DROP SUBSCRIPTION {name}"
                ))
                .await
                .map_err(|err| self.failed_on(self.to, err))?;
        }
        loop {
            let slot = Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT active FROM pg_replication_slots WHERE slot_name = $1",
                [name.clone().into()],
            );
            let active = match self.source.query_one_raw(slot).await {
                Ok(row) => row.map(|row| row.try_get::<bool>("", "active")).transpose(),
                Err(err) => Err(err),
            }
            .map_err(|err| self.failed_on(self.from, err))?;
            match active {
                None => break,
                // A slot stays active for a moment after its subscription is disabled.
                Some(true) => tokio::time::sleep(POLL).await,
                Some(false) => {
                    self.source
                        .execute_raw(Statement::from_sql_and_values(
                            DbBackend::Postgres,
                            "SELECT pg_drop_replication_slot($1)",
                            [name.clone().into()],
                        ))
                        .await
                        .map_err(|err| self.failed_on(self.from, err))?;
                    break;
                }
            }
        }
        self.source
            .execute_unprepared(&format!("DROP PUBLICATION IF EXISTS {name}"))
            .await
            .map_err(|err| self.failed_on(self.from, err))?;
        Ok(())
    }

    /// Before the switch: back to a tenant that works on the source — its placement there
    /// first, so that a target that cannot be reached leaves only leftovers, which the next run
    /// of the batch drops.
    async fn roll_back(&self, progress: &Progress) -> AppResult<()> {
        progress.report(Step::Rollback, StepStatus::Started, None);
        write_placement(
            &self.source,
            &self.placed_on(self.from, TenantStatus::Active),
        )
        .await
        .map_err(|err| self.failed_on(self.from, err))?;
        self.drop_replication().await?;
        // Only a schema this move made (with its placement, in one transaction) is dropped.
        let made: i64 = scalar_with(
            &self.target,
            "SELECT count(*) FROM public.tenant_placements WHERE id::text = $1",
            self.tenant.id.to_string(),
        )
        .await
        .map_err(|err| self.failed_on(self.to, err))?;
        if made > 0 {
            drop_placed_schema(
                self.state,
                &self.placed_on(self.to, TenantStatus::Provisioning),
            )
            .await?;
        }
        progress.report(
            Step::Rollback,
            StepStatus::Succeeded,
            Some("the tenant stays on its server"),
        );
        Ok(())
    }

    /// After the switch: the replication, then the source's copy.
    async fn clean_up(&self) -> AppResult<()> {
        self.drop_replication().await?;
        drop_placed_schema(
            self.state,
            &self.placed_on(self.from, TenantStatus::Inactive),
        )
        .await
    }

    fn failed_on(&self, server: &str, err: impl Into<AppError>) -> AppError {
        self.state.servers.failed(Some(server), err)
    }
}

/// The schema's tables, quoted and qualified.
async fn tables_of(
    db: &impl ConnectionTrait,
    schema: &SchemaName,
) -> Result<Vec<String>, sea_orm::DbErr> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT format('%I.%I', schemaname, tablename) AS qualified FROM pg_tables \
              WHERE schemaname = $1 ORDER BY tablename",
            [schema.as_str().into()],
        ))
        .await?;
    rows.iter()
        .map(|row| row.try_get("", "qualified"))
        .collect()
}

async fn scalar<T: sea_orm::TryGetable>(db: &Pool, sql: &str) -> Result<T, sea_orm::DbErr> {
    first_column(db, Statement::from_string(DbBackend::Postgres, sql)).await
}

async fn scalar_with<T: sea_orm::TryGetable>(
    db: &Pool,
    sql: &str,
    value: String,
) -> Result<T, sea_orm::DbErr> {
    let statement = Statement::from_sql_and_values(DbBackend::Postgres, sql, [value.into()]);
    first_column(db, statement).await
}

/// The first column of the one row `statement` returns.
async fn first_column<T: sea_orm::TryGetable>(
    db: &Pool,
    statement: Statement,
) -> Result<T, sea_orm::DbErr> {
    let sql = statement.sql.clone();
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or(sea_orm::DbErr::RecordNotFound(sql))?;
    row.try_get_by_index(0)
}
