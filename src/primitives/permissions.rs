//! What a tenant principal may do: the seeded `permissions.code`s, and the scope of API keys.

use std::fmt;

use crate::error::{AppError, AppResult};

/// A permission; its code is the seeded `permissions.code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    UsersRead,
    UsersWrite,
    PeopleRead,
    PeopleWrite,
    RolesRead,
    SettingsRead,
    SettingsWrite,
}

impl Permission {
    pub const ALL: [Permission; 7] = [
        Permission::UsersRead,
        Permission::UsersWrite,
        Permission::PeopleRead,
        Permission::PeopleWrite,
        Permission::RolesRead,
        Permission::SettingsRead,
        Permission::SettingsWrite,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Permission::UsersRead => "users:read",
            Permission::UsersWrite => "users:write",
            Permission::PeopleRead => "people:read",
            Permission::PeopleWrite => "people:write",
            Permission::RolesRead => "roles:read",
            Permission::SettingsRead => "settings:read",
            Permission::SettingsWrite => "settings:write",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.code() == code)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The scope of a key made without one: everything but `users:write`, so that a key that leaks
/// cannot make users, give roles or reset passwords.
pub fn default_api_key_scope() -> Vec<String> {
    Permission::ALL
        .into_iter()
        .filter(|permission| *permission != Permission::UsersWrite)
        .map(|permission| permission.code().to_owned())
        .collect()
}

/// Checks an asked-for key scope: every code must be a known permission (else
/// `BAD_USER_INPUT` on `field`). Returns the codes without repeats, in [`Permission::ALL`]
/// order.
pub fn parse_api_key_scope(field: &str, codes: &[String]) -> AppResult<Vec<String>> {
    if let Some(unknown) = codes
        .iter()
        .find(|code| Permission::from_code(code).is_none())
    {
        return Err(AppError::bad_input(
            field,
            format!(
                "unknown permission {:?}: expected any of {}",
                unknown.chars().take(40).collect::<String>(),
                Permission::ALL.map(Permission::code).join(", ")
            ),
        ));
    }
    Ok(Permission::ALL
        .into_iter()
        .map(Permission::code)
        .filter(|code| codes.iter().any(|asked| asked == code))
        .map(str::to_owned)
        .collect())
}

/// The scope stored with a key (a JSON array of codes), as permissions; codes this server does
/// not know grant nothing.
pub fn stored_api_key_scope(json: &serde_json::Value) -> Vec<Permission> {
    json.as_array()
        .into_iter()
        .flatten()
        .filter_map(|code| code.as_str().and_then(Permission::from_code))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_scope_is_everything_but_users_write() {
        let scope = default_api_key_scope();
        assert_eq!(scope.len(), Permission::ALL.len() - 1);
        assert!(!scope.iter().any(|code| code == "users:write"));
    }

    #[test]
    fn a_scope_is_checked_ordered_and_deduplicated() {
        let asked = ["people:write", "people:read", "people:write"].map(String::from);
        assert_eq!(
            parse_api_key_scope("permissions", &asked).unwrap(),
            ["people:read", "people:write"]
        );
        let err = parse_api_key_scope("permissions", &["people:admin".into()]).unwrap_err();
        assert!(
            matches!(&err, AppError::BadUserInput { field: Some(field), .. } if field == "permissions")
        );
        assert_eq!(
            stored_api_key_scope(&serde_json::json!(["people:read", "teleport", 3])),
            [Permission::PeopleRead]
        );
    }
}
