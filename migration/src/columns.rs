//! Column shapes shared by both migration sets.

use sea_orm_migration::{prelude::*, schema};

/// `uuid PRIMARY KEY DEFAULT gen_random_uuid()`; the function lives in `pg_catalog`, so it
/// resolves whatever the tenant `search_path` is.
pub fn pk_uuid<T: IntoIden>(col: T) -> ColumnDef {
    schema::pk_uuid(col)
        .default(Expr::cust("gen_random_uuid()"))
        .take()
}

/// `timestamptz NOT NULL DEFAULT now()`.
pub fn timestamptz_now<T: IntoIden>(col: T) -> ColumnDef {
    schema::timestamp_with_time_zone(col)
        .default(Expr::cust("now()"))
        .take()
}

/// `jsonb NOT NULL DEFAULT <literal>`, e.g. `'{}'` or `'[]'`.
pub fn jsonb_default<T: IntoIden>(col: T, literal: &str) -> ColumnDef {
    schema::json_binary(col)
        .default(Expr::cust(format!("'{literal}'::jsonb")))
        .take()
}
