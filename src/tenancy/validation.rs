//! Checks of a tenant's input before anything is written: every fault becomes its own
//! `BAD_USER_INPUT` naming the field.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{
    config::MAX_RATE_LIMIT_PER_MINUTE,
    error::{AppError, AppResult},
    primitives::{
        credentials::{check_password_rules, normalize_email},
        permissions::{default_api_key_scope, parse_api_key_scope},
        schema_name::{SchemaName, SchemaNameError},
    },
};

/// Features a tenant may have switched on.
pub const ALLOWED_FEATURES: &[&str] = &[
    "basic",
    "analytics",
    "reporting",
    "advanced_security",
    "api_access",
    "webhooks",
];
pub const MAX_USERS_LIMIT: i32 = 10_000;
pub const MAX_STORAGE_GB_LIMIT: i32 = 1_000;

/// A tenant as asked for, before validation (GraphQL input and batch files both become this).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct TenantDraft {
    pub tenant_name: String,
    pub domain: String,
    #[serde(default)]
    pub email: String,
    pub tenant_type: Option<String>,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub schema_name: Option<String>,
    pub description: Option<String>,
    pub settings: Option<SettingsDraft>,
    #[serde(skip)]
    pub admin: Option<AdminDraft>,
    /// Permission codes the tenant's API key may use; `None`: the default scope.
    #[serde(alias = "apiKeyPermissions")]
    pub api_key_permissions: Option<Vec<String>>,
    /// A template's name, to apply it whatever the tenant's type ([`super::templates`]).
    #[serde(default)]
    pub template: Option<String>,
    /// The database server to place the tenant on; `None`: chosen ([`super::servers::place`]).
    #[serde(default)]
    pub server: Option<String>,
}

impl TenantDraft {
    /// The tenant type this draft asks for, as [`validate_new_tenant`] records it (before its
    /// character check): trimmed, `organization` when blank.
    pub fn tenant_type_or_default(&self) -> &str {
        self.tenant_type
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(DEFAULT_TENANT_TYPE)
    }
}

pub const DEFAULT_TENANT_TYPE: &str = "organization";

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct SettingsDraft {
    pub features: Option<Vec<String>>,
    pub limits: Option<LimitsDraft>,
}

impl SettingsDraft {
    /// Reads the registry's settings JSON (written by [`validate_new_tenant`]).
    pub fn from_json(json: &Value) -> Self {
        serde_json::from_value(json.clone()).unwrap_or_default()
    }

    /// These changes applied to `current`: features replace the list, limits change one by one.
    pub fn merged_over(self, current: SettingsDraft) -> SettingsDraft {
        let given = self.limits.unwrap_or_default();
        let now = current.limits.unwrap_or_default();
        SettingsDraft {
            features: self.features.or(current.features),
            limits: Some(LimitsDraft {
                users: given.users.or(now.users),
                storage_gb: given.storage_gb.or(now.storage_gb),
                requests_per_minute: given.requests_per_minute.or(now.requests_per_minute),
            }),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LimitsDraft {
    pub users: Option<i32>,
    #[serde(alias = "storageGb")]
    pub storage_gb: Option<i32>,
    /// Overrides `TENANT_RATE_LIMIT_PER_MINUTE` for this tenant.
    #[serde(alias = "requestsPerMinute")]
    pub requests_per_minute: Option<i32>,
}

/// The tenant's first administrator.
#[derive(Debug, Clone)]
pub struct AdminDraft {
    pub email: String,
    pub password: SecretString,
    pub name: Option<String>,
}

/// A draft that passed every check, normalised.
#[derive(Debug, Clone)]
pub struct ValidTenant {
    pub tenant_name: String,
    pub domain: String,
    pub email: String,
    pub tenant_type: String,
    pub phone: Option<String>,
    pub website: Option<String>,
    pub address: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub schema: SchemaName,
    pub description: Option<String>,
    /// `{"features": [...], "limits": {"users": n, "storageGb": n, "requestsPerMinute": n}}`
    pub settings: Value,
    pub admin: Option<ValidAdmin>,
    /// The API key's scope: known permission codes, in their usual order.
    pub api_key_permissions: Vec<String>,
    /// The database server asked for (checked when the tenant is placed).
    pub server: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ValidAdmin {
    pub email: String,
    pub password: SecretString,
    pub name: Option<String>,
}

/// Collects faults so the caller sees all of them at once.
#[derive(Default)]
pub struct Faults(Vec<AppError>);

impl Faults {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(AppError::bad_input(field, message));
    }

    /// A required, trimmed, length-bounded string.
    pub fn required(&mut self, field: &str, value: &str, max: usize) -> String {
        let value = value.trim();
        if value.is_empty() {
            self.add(field, format!("{field} is required"));
        } else if value.len() > max {
            self.add(field, format!("{field} must be at most {max} bytes"));
        }
        value.to_owned()
    }

    /// An optional, trimmed, length-bounded string; blank counts as absent.
    pub fn optional(&mut self, field: &str, value: Option<&str>, max: usize) -> Option<String> {
        let value = value.map(str::trim).filter(|v| !v.is_empty())?;
        if value.len() > max {
            self.add(field, format!("{field} must be at most {max} bytes"));
        }
        Some(value.to_owned())
    }

    pub fn email(&mut self, field: &str, value: &str) -> String {
        match normalize_email(field, value) {
            Ok(email) => email,
            Err(err) => {
                self.0.push(err);
                String::new()
            }
        }
    }
}

impl Faults {
    /// A name that a new record must have and an update may leave out (but not blank).
    pub fn name(
        &mut self,
        field: &str,
        value: Option<String>,
        creating: bool,
        max: usize,
    ) -> Option<String> {
        match value {
            Some(value) => Some(self.required(field, &value, max)),
            None if creating => Some(self.required(field, "", max)),
            None => None,
        }
    }

    /// A fault found by a check of its own.
    pub fn push(&mut self, fault: AppError) {
        self.0.push(fault);
    }

    /// An optional tenant type: at most 50 letters, digits, `_` and `-`; blank counts as absent.
    pub fn tenant_type(&mut self, value: Option<&str>) -> Option<String> {
        let tenant_type = self.optional("tenantType", value, 50)?;
        if !tenant_type
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            self.add(
                "tenantType",
                "tenantType may hold letters, digits, _ and - only",
            );
        }
        Some(tenant_type)
    }

    /// An optional email address; blank counts as absent.
    pub fn optional_email(&mut self, field: &str, value: Option<String>) -> Option<String> {
        value
            .filter(|v| !v.trim().is_empty())
            .map(|v| self.email(field, &v))
    }

    /// An optional, length-bounded text.
    pub fn text(&mut self, field: &str, value: Option<String>, max: usize) -> Option<String> {
        self.optional(field, value.as_deref(), max)
    }

    /// Every fault found, or nothing.
    pub fn into_result(self) -> Result<(), Vec<AppError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }

    /// The first fault found, for operations that report one.
    pub fn finish(self) -> AppResult<()> {
        self.into_result().map_err(|mut faults| faults.remove(0))
    }
}

/// Validates a new tenant; `schema_prefix` is `TENANT_SCHEMA_PREFIX`.
pub fn validate_new_tenant(
    draft: &TenantDraft,
    schema_prefix: &str,
) -> Result<ValidTenant, Vec<AppError>> {
    let mut faults = Faults::default();
    let tenant_name = faults.required("tenantName", &draft.tenant_name, 200);
    let domain = faults
        .required("domain", &draft.domain, 253)
        .to_ascii_lowercase();
    if !domain.is_empty() && !is_valid_domain(&domain) {
        faults.add(
            "domain",
            "domain must be a hostname (labels of letters, digits and hyphens, with a TLD) or a slug such as demo-church",
        );
    }
    let email = faults.email("email", &draft.email);
    let tenant_type = faults
        .tenant_type(draft.tenant_type.as_deref())
        .unwrap_or_else(|| DEFAULT_TENANT_TYPE.to_owned());
    let phone = faults.optional("phone", draft.phone.as_deref(), 40);
    if phone.as_deref().is_some_and(|phone| {
        !phone
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    }) {
        faults.add("phone", "phone may hold digits, spaces and + - ( ) . only");
    }
    let website = faults.optional("website", draft.website.as_deref(), 2048);
    if website.as_deref().is_some_and(|site| {
        url::Url::parse(site)
            .map(|url| !matches!(url.scheme(), "http" | "https") || url.host_str().is_none())
            .unwrap_or(true)
    }) {
        faults.add("website", "website must be an http(s) URL");
    }
    let address = faults.optional("address", draft.address.as_deref(), 500);
    let city = faults.optional("city", draft.city.as_deref(), 100);
    let state = faults.optional("state", draft.state.as_deref(), 100);
    let description = faults.optional("description", draft.description.as_deref(), 2000);

    let schema = match &draft.schema_name {
        Some(name) => SchemaName::parse(name),
        None => SchemaName::from_domain(schema_prefix, &domain),
    }
    .map_err(|err| match err {
        SchemaNameError::Empty if draft.schema_name.is_none() => {
            "no schema name can be made from this domain; give schemaName".to_owned()
        }
        other => other.to_string(),
    });
    let schema = match schema {
        Ok(schema) => Some(schema),
        Err(message) => {
            faults.add("schemaName", message);
            None
        }
    };

    let settings = validate_settings(&mut faults, draft.settings.as_ref());
    let admin = draft.admin.as_ref().map(|admin| ValidAdmin {
        email: faults.email("admin.email", &admin.email),
        password: {
            if let Err(err) = check_password_rules("admin.password", admin.password.expose_secret())
            {
                faults.0.push(err);
            }
            admin.password.clone()
        },
        name: faults.optional("admin.name", admin.name.as_deref(), 200),
    });

    let api_key_permissions = match &draft.api_key_permissions {
        None => default_api_key_scope(),
        Some(codes) => parse_api_key_scope("apiKeyPermissions", codes).unwrap_or_else(|err| {
            faults.0.push(err);
            Vec::new()
        }),
    };

    match schema {
        Some(schema) if faults.0.is_empty() => Ok(ValidTenant {
            tenant_name,
            domain,
            email,
            tenant_type,
            phone,
            website,
            address,
            city,
            state,
            schema,
            description,
            settings,
            admin,
            api_key_permissions,
            server: draft
                .server
                .as_deref()
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned),
        }),
        _ => Err(faults.0),
    }
}

/// Validates settings into the registry's JSON form.
pub fn validate_settings(faults: &mut Faults, settings: Option<&SettingsDraft>) -> Value {
    let mut features: Vec<String> = Vec::new();
    for feature in settings
        .and_then(|s| s.features.as_ref())
        .into_iter()
        .flatten()
    {
        if !ALLOWED_FEATURES.contains(&feature.as_str()) {
            faults.add(
                "settings.features",
                format!(
                    "unknown feature {:?}: expected any of {}",
                    feature.chars().take(40).collect::<String>(),
                    ALLOWED_FEATURES.join(", ")
                ),
            );
        } else if !features.contains(feature) {
            features.push(feature.clone());
        }
    }
    let limits = settings.and_then(|s| s.limits.as_ref());
    let users = limits.and_then(|l| l.users);
    if users.is_some_and(|n| !(1..=MAX_USERS_LIMIT).contains(&n)) {
        faults.add(
            "settings.limits.users",
            format!("users must be from 1 to {MAX_USERS_LIMIT}"),
        );
    }
    let storage_gb = limits.and_then(|l| l.storage_gb);
    if storage_gb.is_some_and(|n| !(1..=MAX_STORAGE_GB_LIMIT).contains(&n)) {
        faults.add(
            "settings.limits.storageGb",
            format!("storageGb must be from 1 to {MAX_STORAGE_GB_LIMIT}"),
        );
    }
    let requests_per_minute = limits.and_then(|l| l.requests_per_minute);
    if requests_per_minute
        .is_some_and(|n| !(1..=i64::from(MAX_RATE_LIMIT_PER_MINUTE)).contains(&i64::from(n)))
    {
        faults.add(
            "settings.limits.requestsPerMinute",
            format!("requestsPerMinute must be from 1 to {MAX_RATE_LIMIT_PER_MINUTE}"),
        );
    }
    json!({
        "features": features,
        "limits": {
            "users": users,
            "storageGb": storage_gb,
            "requestsPerMinute": requests_per_minute,
        }
    })
}

/// A hostname with a TLD (`stmarys.church`) or a single-label slug (`demo-church`): ASCII letters,
/// digits and inner hyphens only, so look-alike characters and punctuation never reach a name.
pub fn is_valid_domain(domain: &str) -> bool {
    let label_ok = |label: &str| {
        (1..=63).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    let labels: Vec<&str> = domain.split('.').collect();
    let tld_ok = |tld: &str| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_lowercase());
    domain.len() <= 253
        && labels.iter().all(|label| label_ok(label))
        && (labels.len() == 1 || tld_ok(labels[labels.len() - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> TenantDraft {
        TenantDraft {
            tenant_name: "St Mary's".into(),
            domain: "StMarys.Church".into(),
            email: "office@stmarys.church".into(),
            ..Default::default()
        }
    }

    fn faults_of(draft: &TenantDraft) -> Vec<(String, String)> {
        validate_new_tenant(draft, "tenant_")
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|err| match err {
                AppError::BadUserInput {
                    field: Some(field),
                    message,
                } => (field, message),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_good_draft_is_normalised() {
        let valid = validate_new_tenant(&draft(), "tenant_").unwrap();
        assert_eq!(valid.domain, "stmarys.church");
        assert_eq!(valid.schema.as_str(), "tenant_stmarys_church");
        assert_eq!(valid.tenant_type, "organization");
    }

    #[test]
    fn domains_are_hostnames_or_slugs() {
        for good in ["demo-church", "stmarys.church", "a.b.example.org", "x1"] {
            assert!(is_valid_domain(good), "{good}");
        }
        for bad in [
            "a\"; drop schema public; --",
            "-lead.com",
            "trail-.com",
            "ex ample.com",
            "exаmple.com", // Cyrillic а
            "example.c",
            "example.123",
            "a..b.com",
            "",
        ] {
            assert!(!is_valid_domain(bad), "{bad}");
        }
    }

    #[test]
    fn every_fault_is_reported_with_its_field() {
        let mut bad = draft();
        bad.tenant_name = " ".into();
        bad.email = "not-an-email".into();
        bad.schema_name = Some("pg_catalog".into());
        bad.settings = Some(SettingsDraft {
            features: Some(vec!["teleport".into()]),
            limits: Some(LimitsDraft {
                users: Some(0),
                storage_gb: Some(1001),
                requests_per_minute: Some(0),
            }),
        });
        let fields: Vec<String> = faults_of(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "tenantName",
                "email",
                "schemaName",
                "settings.features",
                "settings.limits.users",
                "settings.limits.storageGb",
                "settings.limits.requestsPerMinute"
            ]
        );
    }
}
