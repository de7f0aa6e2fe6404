//! SeaORM entities: [`public`] (the registry, always schema-qualified) and [`tenant`]
//! (unqualified; resolved through the transaction's `search_path` to the caller's tenant).

pub mod public;
pub mod tenant;
