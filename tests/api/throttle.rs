//! Login throttling that a burst cannot outrun, client addresses behind trusted proxies, and the
//! bounded password hashing queue. Verifications are counted by the password service itself.

use futures_util::future::join_all;
use serde_json::json;
use tenantgraph::auth::throttle::MAX_FAILURES_PER_ACCOUNT;

use crate::{
    helpers::{Gql, OPERATOR_EMAIL, OPERATOR_PASSWORD, TENANT_PASSWORD as ADMIN_PASSWORD, TestApp},
    observability::{metrics, sample},
};

const LOGIN: &str = "mutation($input: LoginInput!) { login(input: $input) { token } }";

/// A login sent with `X-Forwarded-For: forwarded` (believed only when the peer is trusted).
async fn login_via(
    app: &TestApp,
    forwarded: &str,
    tenant: Option<&str>,
    email: &str,
    password: &str,
) -> Gql {
    let mut input = json!({ "email": email, "password": password });
    if let Some(tenant) = tenant {
        input["tenant"] = json!(tenant);
    }
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("x-forwarded-for", forwarded)
        .json(&json!({ "query": LOGIN, "variables": { "input": input } }))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    Gql(response.json().await.unwrap())
}

fn logged_in(response: &Gql) -> bool {
    response.data()["login"]["token"].is_string()
}

fn retry_after(response: &Gql) -> u64 {
    assert_eq!(response.error_code(), "RATE_LIMITED", "{}", response.0);
    response.0["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("retryAfterSeconds in {}", response.0))
}

/// The app behind a trusted proxy on loopback: `X-Forwarded-For` names the client.
async fn behind_a_proxy() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("TRUSTED_PROXIES".into(), "127.0.0.1/32".into());
    })
    .await
}

#[tokio::test]
async fn thirty_concurrent_wrong_passwords_verify_at_most_the_limit_and_the_owner_still_gets_in() {
    let app = behind_a_proxy().await;
    let operator = app.operator_token().await;
    let domain = "burst.church";
    app.tenant_with_admin(&operator, domain).await;
    let email = format!("admin@{domain}");

    let verified_before = app.state.passwords.verifications();
    let burst = join_all((0..30).map(|i| {
        let (app, email) = (&app, &email);
        async move {
            login_via(
                app,
                "127.0.0.20",
                Some(domain),
                email,
                &format!("wrong-{i}"),
            )
            .await
        }
    }))
    .await;
    let verified = app.state.passwords.verifications() - verified_before;

    let refused: Vec<&Gql> = burst
        .iter()
        .filter(|r| r.error_code() == "RATE_LIMITED")
        .collect();
    let wrong = burst
        .iter()
        .filter(|r| r.error_code() == "UNAUTHENTICATED")
        .count();
    assert_eq!(refused.len() + wrong, 30, "only these two answers");
    assert!(
        verified <= u64::from(MAX_FAILURES_PER_ACCOUNT),
        "{verified} passwords verified for 30 concurrent guesses"
    );
    assert_eq!(
        wrong as u64, verified,
        "each wrong answer was one verification"
    );
    for response in refused {
        assert!(retry_after(response) > 0);
    }

    // From the guessing client, even the right password waits now ...
    let locked = login_via(&app, "127.0.0.20", Some(domain), &email, ADMIN_PASSWORD).await;
    assert!(retry_after(&locked) > 0);
    // ... but the owner, from another address, gets in (slowed down, not locked out).
    let owner = login_via(&app, "127.0.0.21", Some(domain), &email, ADMIN_PASSWORD).await;
    assert!(logged_in(&owner), "{}", owner.0);
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() {
    // Untrusted peer: X-Forwarded-For is the client's own claim, and ignored.
    let app = TestApp::spawn().await;
    for _ in 0..MAX_FAILURES_PER_ACCOUNT {
        let wrong = login_via(&app, "127.0.0.30", None, OPERATOR_EMAIL, "wrong-password").await;
        assert_eq!(wrong.error_code(), "UNAUTHENTICATED");
    }
    let spoofed = login_via(&app, "127.0.0.31", None, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    assert!(
        retry_after(&spoofed) > 0,
        "a new X-Forwarded-For is no new client"
    );

    // Trusted peer: the right-most address it forwards is the client.
    let app = behind_a_proxy().await;
    for _ in 0..MAX_FAILURES_PER_ACCOUNT {
        let wrong = login_via(&app, "127.0.0.30", None, OPERATOR_EMAIL, "wrong-password").await;
        assert_eq!(wrong.error_code(), "UNAUTHENTICATED");
    }
    let same = login_via(&app, "127.0.0.30", None, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    assert!(retry_after(&same) > 0);
    // An address the client wrote in front of its real one changes nothing.
    let prefixed = login_via(
        &app,
        "127.0.0.99, 127.0.0.30",
        None,
        OPERATOR_EMAIL,
        OPERATOR_PASSWORD,
    )
    .await;
    assert!(retry_after(&prefixed) > 0);
    let other = login_via(&app, "127.0.0.31", None, OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    assert!(logged_in(&other), "{}", other.0);
}

#[tokio::test]
async fn a_full_hashing_queue_answers_rate_limited_with_retry_after_and_counts_no_failure() {
    let app = TestApp::spawn_with(|env| {
        env.insert("PASSWORD_HASH_QUEUE".into(), "1".into());
    })
    .await;
    // The gate: the queue's one place is taken.
    let held = app.state.passwords.try_place().unwrap();
    let verified_before = app.state.passwords.verifications();
    for _ in 0..2 * MAX_FAILURES_PER_ACCOUNT {
        let full = app.login(OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
        assert!(retry_after(&full) >= 1);
    }
    assert_eq!(app.state.passwords.verifications(), verified_before);
    let metrics = metrics(&app).await;
    assert_eq!(
        sample(&metrics, "tenantgraph_password_queue_full_total"),
        Some(f64::from(2 * MAX_FAILURES_PER_ACCOUNT))
    );

    // The queue drains: the same login goes through, none of the refusals counted as failures.
    drop(held);
    let login = app.login(OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    assert!(logged_in(&login), "{}", login.0);
}
