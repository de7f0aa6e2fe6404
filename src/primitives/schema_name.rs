//! Tenant schema names: derivation from a domain, validation, and quoting.
//!
//! A schema name reaches SQL only as a [`SchemaName`], which can be built only from a string that
//! passed [`SchemaName::parse`]; its `quoted()` form is the one place identifiers are put into SQL.

use std::fmt;

/// PostgreSQL truncates identifiers longer than this many bytes (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// `^[a-z_][a-z0-9_]*$`, ASCII only: no quoting tricks, no look-alike letters.
pub fn is_valid_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// Why a schema name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaNameError {
    #[error("schema name must not be empty")]
    Empty,
    #[error("schema name must be at most {MAX_IDENTIFIER_BYTES} bytes")]
    TooLong,
    #[error("schema name must match ^[a-z_][a-z0-9_]*$")]
    InvalidCharacters,
    #[error("schema name {0:?} is reserved by PostgreSQL")]
    Reserved(String),
}

/// A validated tenant schema name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SchemaName(String);

impl SchemaName {
    pub fn parse(name: &str) -> Result<Self, SchemaNameError> {
        if name.is_empty() {
            return Err(SchemaNameError::Empty);
        }
        if name.len() > MAX_IDENTIFIER_BYTES {
            return Err(SchemaNameError::TooLong);
        }
        if !is_valid_identifier(name) {
            return Err(SchemaNameError::InvalidCharacters);
        }
        if name == "public" || name == "information_schema" || name.starts_with("pg_") {
            return Err(SchemaNameError::Reserved(name.to_owned()));
        }
        Ok(SchemaName(name.to_owned()))
    }

    /// The default schema of a tenant: `prefix` + the domain with every run of characters other
    /// than a-z and 0-9 turned into one `_`, cut to 63 bytes (`stmarys.church` →
    /// `tenant_stmarys_church`).
    pub fn from_domain(prefix: &str, domain: &str) -> Result<Self, SchemaNameError> {
        let mut name = String::with_capacity(prefix.len() + domain.len());
        name.push_str(prefix);
        let mut last_was_separator = name.ends_with('_');
        for c in domain.chars().map(|c| c.to_ascii_lowercase()) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                name.push(c);
                last_was_separator = false;
            } else if !last_was_separator {
                name.push('_');
                last_was_separator = true;
            }
        }
        let trimmed = name.trim_end_matches('_');
        let cut = &trimmed[..trimmed.len().min(MAX_IDENTIFIER_BYTES)];
        Self::parse(cut.trim_end_matches('_'))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a quoted SQL identifier. Validation already excludes `"`, so quoting cannot be
    /// escaped; quoting still keeps keywords such as `user` usable as schema names.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// `text` with every name qualified by this schema (`schema.x` or `"schema".x`) qualified by
    /// `with` instead (`""` leaves it unqualified). Only a qualifier that starts a name counts:
    /// `my_schema.x` stays as it is.
    pub fn replace_qualifier(&self, text: &str, with: &str) -> String {
        let forms = [format!("{}.", self.quoted()), format!("{}.", self.0)];
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        let mut previous: Option<char> = None;
        'scan: while let Some(c) = rest.chars().next() {
            let starts_name = previous.is_none_or(|before| {
                !(before.is_ascii_alphanumeric() || matches!(before, '_' | '"' | '$'))
            });
            if starts_name {
                for form in &forms {
                    if let Some(after) = rest.strip_prefix(form.as_str()) {
                        out.push_str(with);
                        previous = with.chars().last().or(previous);
                        rest = after;
                        continue 'scan;
                    }
                }
            }
            out.push(c);
            previous = Some(c);
            rest = &rest[c.len_utf8()..];
        }
        out
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schema_names_come_from_the_domain() {
        let name = |domain| SchemaName::from_domain("tenant_", domain).unwrap();
        assert_eq!(name("stmarys.church").as_str(), "tenant_stmarys_church");
        assert_eq!(name("demo-church").as_str(), "tenant_demo_church");
        assert_eq!(
            name("Grace--Hall.Example.ORG").as_str(),
            "tenant_grace_hall_example_org"
        );
        let long = format!("{}.com", "a".repeat(80));
        assert_eq!(name(&long).as_str().len(), MAX_IDENTIFIER_BYTES);
    }

    #[test]
    fn hostile_or_reserved_schema_names_are_refused() {
        for bad in [
            "a\"; DROP SCHEMA public; --",
            "Tenant",
            "tenаnt", // Cyrillic а
            "1abc",
            "a-b",
            "a b",
            "",
            "public",
            "information_schema",
            "pg_toast",
        ] {
            assert!(SchemaName::parse(bad).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(
            SchemaName::parse(&"a".repeat(64)),
            Err(SchemaNameError::TooLong)
        );
        assert!(SchemaName::parse(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn qualifiers_are_replaced_only_where_they_start_a_name() {
        let s = SchemaName::parse("tenant_a").unwrap();
        assert_eq!(
            s.replace_qualifier(
                "nextval('tenant_a.users_id_seq'::regclass) REFERENCES tenant_a.users(id)",
                ""
            ),
            "nextval('users_id_seq'::regclass) REFERENCES users(id)"
        );
        assert_eq!(
            s.replace_qualifier("ON my_tenant_a.users x_tenant_a.y", ""),
            "ON my_tenant_a.users x_tenant_a.y"
        );
        assert_eq!(
            s.replace_qualifier("COPY tenant_a.person (id) FROM stdin;", "\"tenant_b\"."),
            "COPY \"tenant_b\".person (id) FROM stdin;"
        );
        let keyword = SchemaName::parse("user").unwrap();
        assert_eq!(
            keyword.replace_qualifier("ON \"user\".people", ""),
            "ON people"
        );
    }

    #[test]
    fn quoting_wraps_the_validated_name() {
        assert_eq!(SchemaName::parse("user").unwrap().quoted(), "\"user\"");
    }
}
