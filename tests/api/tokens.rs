//! Platform tokens: anything but a token we signed, unmodified, in date and for us, is refused.

use std::time::Duration;

use sea_orm::ConnectionTrait;
use serde_json::json;
use tenantgraph::auth::jwt::{AUDIENCE, Claims, ISSUER, JwtKeys, TokenKind, TokenUse};
use uuid::Uuid;

use crate::helpers::{Gql, JWT_SECRET, OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp};

const ME: &str = "{ me { kind } }";

fn keys(secret: &str) -> JwtKeys {
    JwtKeys::new(&secret.to_owned().into(), Duration::from_secs(3600))
}

/// The bootstrap operator and the session of their real token.
#[derive(Debug, Clone, Copy)]
struct Holder {
    operator: Uuid,
    session: Uuid,
}

/// Claims as the server would issue them for `holder`, valid for an hour: forged with the real
/// session, so that every refusal below is for the one thing each test changes.
fn platform_claims(holder: Holder) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        sub: holder.operator,
        kind: TokenKind::Platform,
        sid: holder.session,
        typ: TokenUse::Access,
        iat: now,
        exp: now + 3600,
        iss: ISSUER.into(),
        aud: AUDIENCE.into(),
        jti: Uuid::new_v4(),
        tid: None,
        schema: None,
        roles: Vec::new(),
    }
}

/// Unpadded base64url, as JWTs use.
pub fn base64url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The three dot-separated parts of a JWT.
fn parts(token: &str) -> [&str; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT has three parts: {token}");
    [parts[0], parts[1], parts[2]]
}

/// The app, the bootstrap operator's id and session, and their real token.
async fn app_with_operator() -> (TestApp, Holder, String) {
    let app = TestApp::spawn().await;
    let login = app.login(OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let token = login.data()["login"]["token"].as_str().unwrap().to_owned();
    let operator = login.data()["login"]["user"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let session = app.state.jwt.verify(&token).unwrap().sid;
    (app, Holder { operator, session }, token)
}

async fn me(app: &TestApp, token: &str) -> Gql {
    app.graphql(ME, json!({}), Some(token)).await
}

#[track_caller]
pub fn assert_unauthenticated(response: &Gql, what: &str) {
    assert_eq!(
        response.error_code(),
        "UNAUTHENTICATED",
        "{what}: {}",
        response.0
    );
    assert!(
        response.0["data"].is_null(),
        "{what} must not yield data: {}",
        response.0
    );
}

#[tokio::test]
async fn a_token_forged_here_with_the_server_secret_is_accepted_so_the_refusals_below_mean_something()
 {
    let (app, holder, _) = app_with_operator().await;
    let forged = keys(JWT_SECRET).sign(&platform_claims(holder)).unwrap();
    assert_eq!(me(&app, &forged).await.data()["me"]["kind"], "PLATFORM");
}

#[tokio::test]
async fn an_alg_none_token_with_the_real_claims_is_unauthenticated() {
    let (app, _, token) = app_with_operator().await;
    let [_, payload, _] = parts(&token);
    let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
    assert_unauthenticated(&me(&app, &format!("{header}.{payload}.")).await, "alg none");
    // The same with the original signature left in place.
    let [_, _, signature] = parts(&token);
    assert_unauthenticated(
        &me(&app, &format!("{header}.{payload}.{signature}")).await,
        "alg none with a signature",
    );
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_unauthenticated() {
    let (app, holder, _) = app_with_operator().await;
    let foreign = keys("another-secret-another-secret-another-secret")
        .sign(&platform_claims(holder))
        .unwrap();
    assert_unauthenticated(&me(&app, &foreign).await, "foreign secret");
}

#[tokio::test]
async fn a_token_whose_payload_was_changed_after_signing_is_unauthenticated() {
    let (app, holder, token) = app_with_operator().await;
    let [header, _, signature] = parts(&token);
    let server_keys = keys(JWT_SECRET);

    // Another subject, then another kind, each spliced under the real token's signature.
    let other_subject = platform_claims(Holder {
        operator: Uuid::new_v4(),
        ..holder
    });
    let mut other_kind = platform_claims(holder);
    other_kind.kind = TokenKind::TenantUser;
    other_kind.tid = Some(Uuid::new_v4());
    other_kind.schema = Some("tenant_acme".into());
    for (what, claims) in [("sub", other_subject), ("kind", other_kind)] {
        let resigned = server_keys.sign(&claims).unwrap();
        let [_, payload, _] = parts(&resigned);
        let tampered = format!("{header}.{payload}.{signature}");
        assert_unauthenticated(&me(&app, &tampered).await, what);
    }

    // The raw payload edited in place: the JSON of the real claims with `sub` swapped.
    let mut claims = platform_claims(holder);
    claims.sub = Uuid::new_v4();
    let payload = base64url(serde_json::to_string(&claims).unwrap().as_bytes());
    assert_unauthenticated(
        &me(&app, &format!("{header}.{payload}.{signature}")).await,
        "edited payload",
    );
}

#[tokio::test]
async fn an_expired_token_is_unauthenticated() {
    let (app, holder, _) = app_with_operator().await;
    let mut claims = platform_claims(holder);
    claims.iat -= 7200;
    claims.exp = chrono::Utc::now().timestamp() - 600;
    let expired = keys(JWT_SECRET).sign(&claims).unwrap();
    assert_unauthenticated(&me(&app, &expired).await, "expired");
}

#[tokio::test]
async fn a_token_for_another_audience_or_from_another_issuer_is_unauthenticated() {
    let (app, holder, _) = app_with_operator().await;
    let server_keys = keys(JWT_SECRET);

    let mut claims = platform_claims(holder);
    claims.aud = "someone-else".into();
    let wrong_audience = server_keys.sign(&claims).unwrap();
    assert_unauthenticated(&me(&app, &wrong_audience).await, "wrong audience");

    let mut claims = platform_claims(holder);
    claims.iss = "not-tenantgraph".into();
    let wrong_issuer = server_keys.sign(&claims).unwrap();
    assert_unauthenticated(&me(&app, &wrong_issuer).await, "wrong issuer");
}

#[tokio::test]
async fn a_token_of_an_operator_that_does_not_exist_is_unauthenticated() {
    let (app, _, _) = app_with_operator().await;
    // A live session row and all, only the operator is not there.
    let stranger = Holder {
        operator: Uuid::new_v4(),
        session: Uuid::new_v4(),
    };
    app.db()
        .execute_unprepared(&format!(
            "INSERT INTO public.sessions (id, kind, user_id) VALUES ('{}', 'platform', '{}')",
            stranger.session, stranger.operator
        ))
        .await
        .unwrap();
    let stranger = keys(JWT_SECRET).sign(&platform_claims(stranger)).unwrap();
    assert_unauthenticated(&me(&app, &stranger).await, "unknown operator");
}

#[tokio::test]
async fn malformed_authorization_headers_are_unauthenticated_not_anonymous() {
    let (app, _, token) = app_with_operator().await;
    for header in [
        format!("Token {token}"),
        format!("Basic {token}"),
        format!("Bearer{token}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer not.a.jwt".to_owned(),
        "Bearer garbage".to_owned(),
        token.clone(),
    ] {
        let response = app
            .http
            .post(app.url("/graphql"))
            .header("authorization", &header)
            .json(&json!({ "query": ME }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "for {header:?}");
        let body = Gql(response.json().await.unwrap());
        assert_unauthenticated(&body, &format!("Authorization: {header:?}"));
    }
    // A schema-only query is refused too: a bad header is never downgraded to anonymous.
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("authorization", "Bearer garbage")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .unwrap();
    assert_unauthenticated(
        &Gql(response.json().await.unwrap()),
        "__typename with a bad token",
    );
}

#[tokio::test]
async fn the_real_token_still_works_after_every_kind_of_forgery_was_refused() {
    let (app, holder, token) = app_with_operator().await;
    let [header, payload, _] = parts(&token);
    let mut expired = platform_claims(holder);
    expired.exp = chrono::Utc::now().timestamp() - 600;
    let forgeries = [
        format!("{}.{payload}.", base64url(br#"{"alg":"none","typ":"JWT"}"#)),
        format!("{header}.{payload}.{}", base64url(b"not the signature")),
        keys("another-secret-another-secret-another-secret")
            .sign(&platform_claims(holder))
            .unwrap(),
        keys(JWT_SECRET).sign(&expired).unwrap(),
    ];
    for forged in &forgeries {
        assert_unauthenticated(&me(&app, forged).await, forged);
    }
    assert_eq!(me(&app, &token).await.data()["me"]["kind"], "PLATFORM");
}

#[tokio::test]
async fn a_deactivated_operators_token_stops_working_at_once() {
    let (app, _, token) = app_with_operator().await;
    assert_eq!(me(&app, &token).await.data()["me"]["kind"], "PLATFORM");

    let updated = app
        .db()
        .execute_unprepared(&format!(
            "UPDATE public.platform_users SET is_active = false WHERE email = '{OPERATOR_EMAIL}'"
        ))
        .await
        .unwrap();
    assert_eq!(updated.rows_affected(), 1);

    assert_unauthenticated(&me(&app, &token).await, "deactivated operator");
    // And they cannot log in again either.
    assert_eq!(
        app.login(OPERATOR_EMAIL, OPERATOR_PASSWORD)
            .await
            .error_code(),
        "UNAUTHENTICATED"
    );
}
