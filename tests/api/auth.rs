use serde_json::json;

use crate::helpers::{OPERATOR_EMAIL, OPERATOR_PASSWORD, TestApp};

const ME: &str = "{ me { kind user { id email roles } tenant { id } } }";

#[tokio::test]
async fn an_operator_logs_in_and_me_says_who_they_are() {
    let app = TestApp::spawn().await;
    let login = app.login(OPERATOR_EMAIL, OPERATOR_PASSWORD).await;
    let token = login.data()["login"]["token"].as_str().unwrap();
    assert_eq!(login.data()["login"]["user"]["email"], OPERATOR_EMAIL);

    let me = app.graphql(ME, json!({}), Some(token)).await;
    assert_eq!(me.data()["me"]["kind"], "PLATFORM");
    assert_eq!(me.data()["me"]["user"]["email"], OPERATOR_EMAIL);
    assert!(me.data()["me"]["tenant"].is_null());
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_error() {
    let app = TestApp::spawn().await;
    let wrong_password = app.login(OPERATOR_EMAIL, "not-the-password").await;
    let unknown_email = app
        .login("nobody@tenantgraph.test", OPERATOR_PASSWORD)
        .await;
    assert_eq!(wrong_password.error_code(), "UNAUTHENTICATED");
    assert_eq!(unknown_email.error_code(), "UNAUTHENTICATED");
    assert_eq!(
        wrong_password.error_message(),
        unknown_email.error_message()
    );
}

#[tokio::test]
async fn me_without_a_token_is_unauthenticated() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.graphql(ME, json!({}), None).await.error_code(),
        "UNAUTHENTICATED"
    );
}
