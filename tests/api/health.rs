use crate::helpers::TestApp;

#[tokio::test]
async fn health_and_database_readiness_answer_ok() {
    let app = TestApp::spawn().await;
    let live = app.http.get(app.url("/health")).send().await.unwrap();
    assert_eq!(live.status(), 200);
    assert_eq!(
        live.json::<serde_json::Value>().await.unwrap()["status"],
        "ok"
    );

    let ready = app.http.get(app.url("/health/db")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test]
async fn typename_answers_over_http() {
    let app = TestApp::spawn().await;
    let response = app
        .graphql("{ __typename }", serde_json::json!({}), None)
        .await;
    assert_eq!(response.data()["__typename"], "Query");
}
