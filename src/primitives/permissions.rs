//! What a tenant principal may do: the seeded `permissions.code`s, and the scope of API keys.

use std::{fmt, sync::OnceLock};

use migration::PermissionSeed;

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
    /// A permission of the application, by its code (see [`register_app_permissions`]).
    App(&'static str),
}

impl Permission {
    /// The built-in permissions.
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
            Permission::App(code) => code,
        }
    }

    /// Every permission this server knows: the built-in ones, then the application's.
    pub fn known() -> impl Iterator<Item = Permission> {
        Self::ALL.into_iter().chain(
            app_permissions()
                .iter()
                .map(|seed| Permission::App(seed.code)),
        )
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::known().find(|p| p.code() == code)
    }
}

static APP_PERMISSIONS: OnceLock<&'static [PermissionSeed]> = OnceLock::new();

/// The application's permissions; from the first call on, fixed for the process.
fn app_permissions() -> &'static [PermissionSeed] {
    APP_PERMISSIONS.get_or_init(|| &[])
}

/// Makes the application's permissions known to this process (its migrations seed them into
/// each schema). Once per process, before anything checks a permission: registering the same
/// set again is fine, another set is an error, as are codes not of the form `area:action`
/// (lower-case letters, digits and `_`) or already taken.
pub fn register_app_permissions(seeds: &'static [PermissionSeed]) -> Result<(), String> {
    check_app_permissions(seeds)?;
    if *APP_PERMISSIONS.get_or_init(|| seeds) == seeds {
        Ok(())
    } else {
        Err(
            "the permissions of this process are already fixed; register one set, once, \
             before anything runs"
                .into(),
        )
    }
}

fn check_app_permissions(seeds: &[PermissionSeed]) -> Result<(), String> {
    let mut seen: Vec<&str> = Permission::ALL.map(Permission::code).to_vec();
    for seed in seeds {
        let part = |part: &str| {
            part.starts_with(|c: char| c.is_ascii_lowercase())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        let well_formed = seed
            .code
            .split_once(':')
            .is_some_and(|(area, action)| part(area) && part(action));
        if !well_formed || seen.contains(&seed.code) {
            return Err(format!(
                "permission code {:?} is not of the form area:action, or is already taken",
                seed.code
            ));
        }
        seen.push(seed.code);
    }
    Ok(())
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The scope of a key made without one: everything but `users:write`, so that a key that leaks
/// cannot make users, give roles or reset passwords.
pub fn default_api_key_scope() -> Vec<String> {
    Permission::known()
        .filter(|permission| *permission != Permission::UsersWrite)
        .map(|permission| permission.code().to_owned())
        .collect()
}

/// Checks an asked-for key scope: every code must be a known permission (else
/// `BAD_USER_INPUT` on `field`). Returns the codes without repeats, in [`Permission::known`]
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
                Permission::known()
                    .map(Permission::code)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    Ok(Permission::known()
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
    fn application_codes_are_area_action_and_new() {
        let seed = |code| PermissionSeed {
            code,
            description: "",
            roles: &[],
        };
        assert!(check_app_permissions(&[seed("donations:write"), seed("donations:read")]).is_ok());
        for bad in [
            "donations",
            "Donations:write",
            "donations:",
            ":write",
            "a:b:c",
            "people:read",
        ] {
            assert!(check_app_permissions(&[seed(bad)]).is_err(), "{bad}");
        }
        assert!(check_app_permissions(&[seed("gifts:read"), seed("gifts:read")]).is_err());
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
