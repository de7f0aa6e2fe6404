//! The rules a credential follows, in one place: how an email address is checked and compared,
//! and how long a password may be.

use crate::error::{AppError, AppResult};

/// Longest accepted email address (RFC 5321 path limit).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Longest accepted password: argon2 accepts more, but unbounded input is free CPU for attackers.
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MIN_PASSWORD_BYTES: usize = 8;

/// Why an email address was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmailFault {
    #[error("email must be at most {MAX_EMAIL_BYTES} bytes")]
    TooLong,
    #[error("not a valid email address")]
    Invalid,
}

/// The stored form of a valid email address: trimmed and lower-cased.
pub fn parse_email(email: &str) -> Result<String, EmailFault> {
    let email = email.trim();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(EmailFault::TooLong);
    }
    if !email_address::EmailAddress::is_valid(email) {
        return Err(EmailFault::Invalid);
    }
    Ok(email_key(email))
}

/// Lower-cases and checks an email address given in `field`.
pub fn normalize_email(field: &str, email: &str) -> AppResult<String> {
    parse_email(email).map_err(|fault| AppError::bad_input(field, fault.to_string()))
}

/// The form an email address is looked up and counted under (as [`parse_email`] stores it),
/// without checking it: a login with a malformed address must fail like any other.
pub fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Checks the length rules shared by every place that accepts a new password.
pub fn check_password_rules(field: &str, password: &str) -> AppResult<()> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::bad_input(
            field,
            format!("password must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    if password.len() < MIN_PASSWORD_BYTES {
        return Err(AppError::bad_input(
            field,
            format!("password must be at least {MIN_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Refuses login input longer than any stored credential can be, before any work is done for it.
pub fn check_login_lengths(email: &str, password: &str) -> AppResult<()> {
    if email.len() > MAX_EMAIL_BYTES {
        return Err(AppError::bad_input("email", "email is too long"));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::bad_input("password", "password is too long"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_stored_and_looked_up_in_one_form() {
        assert_eq!(
            parse_email("  Pastor@StMarys.Church "),
            Ok("pastor@stmarys.church".into())
        );
        assert_eq!(email_key(" Pastor@StMarys.Church"), "pastor@stmarys.church");
        assert_eq!(parse_email("not-an-email"), Err(EmailFault::Invalid));
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(parse_email(&long), Err(EmailFault::TooLong));
    }

    #[test]
    fn passwords_are_8_to_1024_bytes() {
        assert!(check_password_rules("password", "1234567").is_err());
        assert!(check_password_rules("password", "12345678").is_ok());
        assert!(check_password_rules("password", &"x".repeat(1024)).is_ok());
        assert!(check_password_rules("password", &"x".repeat(1025)).is_err());
    }
}
