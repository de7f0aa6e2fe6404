//! Sessions and their refresh tokens, and the triggers that announce every change ending or
//! narrowing access on the `tenantgraph_access` notification channel.

use sea_orm_migration::{prelude::*, schema::*};

use crate::columns::{pk_uuid, timestamptz_now};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The channel every server listens on; the payloads are small JSON objects with a `kind`.
const CHANNEL: &str = "tenantgraph_access";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(pk_uuid(Sessions::Id))
                    .col(text(Sessions::Kind))
                    // No foreign key: a session's history outlives its tenant's registry row.
                    .col(uuid_null(Sessions::TenantId))
                    .col(uuid(Sessions::UserId))
                    // Hex SHA-256 of the password hash when the session began: a new password
                    // (even the same one again, with a new salt) ends the session.
                    .col(text_null(Sessions::PasswordFingerprint))
                    .col(timestamptz_now(Sessions::CreatedAt))
                    .col(timestamptz_now(Sessions::LastUsedAt))
                    .col(text_null(Sessions::ClientAddr))
                    .col(text_null(Sessions::UserAgent))
                    .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                    .col(text_null(Sessions::RevokedReason))
                    .check((
                        "sessions_kind_check",
                        Expr::cust(
                            "(kind = 'platform' AND tenant_id IS NULL) \
                             OR (kind = 'tenant' AND tenant_id IS NOT NULL)",
                        ),
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RefreshTokens::Table)
                    // Hex SHA-256 of the token; the token itself is never stored.
                    .col(text(RefreshTokens::Hash).primary_key())
                    .col(uuid(RefreshTokens::SessionId))
                    .col(timestamptz_now(RefreshTokens::IssuedAt))
                    .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                    // Set when the token was exchanged; presenting it again ends the session.
                    .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_refresh_tokens_session_id")
                            .from(RefreshTokens::Table, RefreshTokens::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            // Ending every live session of a user or of a tenant finds them by index.
            "CREATE INDEX idx_sessions_tenant_user_live ON public.sessions (tenant_id, user_id) \
                 WHERE revoked_at IS NULL;
             CREATE INDEX idx_sessions_user_live ON public.sessions (user_id) \
                 WHERE revoked_at IS NULL;
             CREATE INDEX idx_refresh_tokens_session_id ON public.refresh_tokens (session_id);",
        )
        .await?;
        db.execute_unprepared(&triggers()).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(RefreshTokens::Table)
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        // The sessions trigger went with its table; the others go before their functions.
        manager
            .get_connection()
            .execute_unprepared(
                "DROP TRIGGER tenants_access_changed ON public.tenants;
                 DROP TRIGGER tenants_access_ended ON public.tenants;
                 DROP TRIGGER platform_users_access_changed ON public.platform_users;
                 DROP TRIGGER platform_users_access_ended ON public.platform_users;
                 DROP FUNCTION public.tenantgraph_notify_row();
                 DROP FUNCTION public.tenantgraph_notify_session();",
            )
            .await?;
        Ok(())
    }
}

/// The notifications are sent by the database itself, inside the transaction that makes the
/// change (so they are delivered on commit, and never for a change rolled back), whoever makes
/// it: the server, the CLI, a restore, or SQL typed by hand.
fn triggers() -> String {
    format!(
        "-- `{{\"kind\": <the trigger's argument>, \"id\": <the row's id>}}`
         CREATE FUNCTION public.tenantgraph_notify_row() RETURNS trigger
         LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_notify('{CHANNEL}', json_build_object('kind', TG_ARGV[0], 'id', OLD.id)::text);
             RETURN NULL;
         END $$;

         -- Any change but the activity bookkeeping: status, schema, deletion, API key, settings.
         CREATE TRIGGER tenants_access_changed AFTER UPDATE ON public.tenants
             FOR EACH ROW
             WHEN ((to_jsonb(OLD) - 'last_activity_at' - 'updated_at')
                   IS DISTINCT FROM (to_jsonb(NEW) - 'last_activity_at' - 'updated_at'))
             EXECUTE FUNCTION public.tenantgraph_notify_row('tenant');
         CREATE TRIGGER tenants_access_ended AFTER DELETE ON public.tenants
             FOR EACH ROW EXECUTE FUNCTION public.tenantgraph_notify_row('tenant');

         CREATE TRIGGER platform_users_access_changed AFTER UPDATE ON public.platform_users
             FOR EACH ROW
             WHEN (OLD.is_active IS DISTINCT FROM NEW.is_active
                   OR OLD.password_hash IS DISTINCT FROM NEW.password_hash)
             EXECUTE FUNCTION public.tenantgraph_notify_row('operator');
         CREATE TRIGGER platform_users_access_ended AFTER DELETE ON public.platform_users
             FOR EACH ROW EXECUTE FUNCTION public.tenantgraph_notify_row('operator');

         CREATE FUNCTION public.tenantgraph_notify_session() RETURNS trigger
         LANGUAGE plpgsql AS $$
         BEGIN
             PERFORM pg_notify('{CHANNEL}', json_build_object(
                 'kind', 'session', 'id', NEW.id, 'tenant', NEW.tenant_id, 'user', NEW.user_id)::text);
             RETURN NULL;
         END $$;

         CREATE TRIGGER sessions_access_ended AFTER UPDATE OF revoked_at ON public.sessions
             FOR EACH ROW
             WHEN (OLD.revoked_at IS NULL AND NEW.revoked_at IS NOT NULL)
             EXECUTE FUNCTION public.tenantgraph_notify_session();"
    )
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    Kind,
    TenantId,
    UserId,
    PasswordFingerprint,
    CreatedAt,
    LastUsedAt,
    ClientAddr,
    UserAgent,
    RevokedAt,
    RevokedReason,
}

#[derive(DeriveIden)]
enum RefreshTokens {
    Table,
    Hash,
    SessionId,
    IssuedAt,
    ExpiresAt,
    UsedAt,
}
