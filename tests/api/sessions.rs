//! Sessions: refresh tokens (one use, reuse ends the session), logout, revocation, and every
//! request held against current state, on every server of a deployment within two seconds.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};
use tenantgraph::{
    auth::listener::APPLICATION_NAME,
    db::notify::{ACCESS_CHANNEL, AccessEvent},
    primitives::refresh_tokens,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::{
    helpers::{
        Gql, OPERATOR_EMAIL, OPERATOR_PASSWORD, TENANT_PASSWORD as ADMIN_PASSWORD, TestApp,
        tenant_input,
    },
    tokens::assert_unauthenticated,
};

const LOGIN: &str = "mutation($input: LoginInput!) { \
    login(input: $input) { token refreshToken expiresAt user { id email roles } tenant { id } } }";
const REFRESH: &str = "mutation($token: String!) { \
    refreshToken(refreshToken: $token) { token refreshToken expiresAt user { id email roles } tenant { id domain } } }";
const ME: &str = "{ me { kind user { id email roles } } }";
const LOGOUT: &str = "mutation { logout }";
const USER_PASSWORD: &str = "user-password-for-tests";

/// The two tokens of a session.
#[derive(Debug, Clone)]
struct Tokens {
    access: String,
    refresh: String,
}

impl Tokens {
    fn from(response: &Gql, field: &str) -> Tokens {
        let payload = &response.data()[field];
        Tokens {
            access: payload["token"].as_str().unwrap().to_owned(),
            refresh: payload["refreshToken"].as_str().unwrap().to_owned(),
        }
    }
}

async fn login(app: &TestApp, email: &str, password: &str, tenant: Option<&str>) -> Gql {
    let mut input = json!({ "email": email, "password": password });
    if let Some(tenant) = tenant {
        input["tenant"] = json!(tenant);
    }
    app.graphql(LOGIN, json!({ "input": input }), None).await
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Gql {
    app.graphql(REFRESH, json!({ "token": refresh_token }), None)
        .await
}

async fn me(app: &TestApp, token: &str) -> Gql {
    app.graphql(ME, json!({}), Some(token)).await
}

/// An app with a tenant `domain`, its id and API key, the operator's token and the tenant
/// admin's session.
struct World {
    app: TestApp,
    operator: String,
    tenant_id: String,
    api_key: String,
    domain: String,
    admin: Tokens,
}

async fn world(domain: &str) -> World {
    let app = TestApp::spawn().await;
    let operator = app.operator_token().await;
    let (tenant_id, api_key) = app.tenant_with_admin(&operator, domain).await;
    let admin = Tokens::from(
        &login(
            &app,
            &format!("admin@{domain}"),
            ADMIN_PASSWORD,
            Some(domain),
        )
        .await,
        "login",
    );
    World {
        app,
        operator,
        tenant_id,
        api_key,
        domain: domain.to_owned(),
        admin,
    }
}

impl World {
    /// Creates `name@<domain>` with `roles` (as the admin) and returns the user's id.
    async fn add_user(&self, name: &str, roles: &[&str]) -> String {
        let created = self
            .app
            .graphql(
                "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }",
                json!({ "input": {
                    "email": format!("{name}@{}", self.domain),
                    "password": USER_PASSWORD,
                    "roles": roles,
                } }),
                Some(&self.admin.access),
            )
            .await;
        created.data()["createUser"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn user_login(&self, name: &str) -> Tokens {
        Tokens::from(
            &login(
                &self.app,
                &format!("{name}@{}", self.domain),
                USER_PASSWORD,
                Some(&self.domain),
            )
            .await,
            "login",
        )
    }

    /// Runs a tenant mutation as the admin, asserting success.
    async fn as_admin(&self, query: &str, variables: Value) -> Value {
        self.app
            .graphql(query, variables, Some(&self.admin.access))
            .await
            .data()
            .clone()
    }

    async fn update_user(&self, id: &str, input: Value) {
        self.as_admin(
            "mutation($id: ID!, $input: UpdateUserInput!) { updateUser(id: $id, input: $input) { id } }",
            json!({ "id": id, "input": input }),
        )
        .await;
    }

    /// How many audit events `action` of this tenant name `actor_id` and come from loopback.
    async fn audited(&self, action: &str, actor_id: &str) -> i64 {
        self.app
            .scalar(&format!(
                "SELECT count(*) FROM public.audit_events \
                  WHERE action = '{action}' AND tenant_id = '{}' AND actor_id = '{actor_id}' \
                    AND client_addr = '127.0.0.1'",
                self.tenant_id
            ))
            .await
    }
}

fn user_id_of(response: &Gql) -> String {
    response.data()["me"]["user"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn login_opens_a_session_that_the_access_token_names_and_a_refresh_token_continues() {
    let app = TestApp::spawn().await;
    let response = app
        .http
        .post(app.url("/graphql"))
        .header("user-agent", "sessions-test/1.0")
        .json(&json!({ "query": LOGIN, "variables": { "input": {
            "email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD } } }))
        .send()
        .await
        .unwrap();
    let login = Gql(response.json().await.unwrap());
    let tokens = Tokens::from(&login, "login");
    assert!(tokens.refresh.starts_with("rt_"), "{}", tokens.refresh);
    assert_eq!(
        tokens.access.split('.').count(),
        3,
        "the access token is a JWT"
    );
    let claims = app.state.jwt.verify(&tokens.access).unwrap();
    // Short-lived by default: JWT_TTL_SECONDS is 900.
    assert_eq!(claims.exp - claims.iat, 900);

    let session = format!(
        "FROM public.sessions WHERE id = '{}' AND kind = 'platform' AND user_id = '{}' \
           AND client_addr = '127.0.0.1' AND user_agent = 'sessions-test/1.0' \
           AND revoked_at IS NULL",
        claims.sid, claims.sub
    );
    assert_eq!(app.scalar(&format!("SELECT count(*) {session}")).await, 1);
    // Only the hash of the refresh token is stored.
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.refresh_tokens WHERE session_id = '{}' AND hash = '{}'",
            claims.sid,
            refresh_tokens::hash(&tokens.refresh)
        ))
        .await,
        1
    );
    assert_eq!(
        app.scalar(&format!(
            "SELECT count(*) FROM public.audit_events WHERE action = 'session.login' \
               AND actor_kind = 'PLATFORM' AND actor_id = '{}' AND client_addr = '127.0.0.1'",
            claims.sub
        ))
        .await,
        1
    );
    assert_eq!(
        me(&app, &tokens.access).await.data()["me"]["kind"],
        "PLATFORM"
    );
}

#[tokio::test]
async fn a_session_is_refreshed_and_ended_and_every_end_is_announced() {
    session_round_trip(&TestApp::spawn().await).await;
}

/// A tenant user's session from login to logout, with a reuse and a suspension on the way, and
/// the notification of each change heard back by this server's listener (which behind PgBouncer
/// listens on `DATABASE_DIRECT_URL`).
pub async fn session_round_trip(app: &TestApp) {
    async fn trip_login(app: &TestApp, user: &str) -> Tokens {
        let email = format!("{user}@trip.sessions");
        let login = login(app, &email, ADMIN_PASSWORD, Some("trip.sessions")).await;
        Tokens::from(&login, "login")
    }

    until_listening(app).await;
    let mut events = app.state.access.subscribe();
    let tenant = app.with_tenant("trip.sessions").await;
    let tenant_id: Uuid = tenant.id.parse().unwrap();
    let admin = trip_login(app, "admin").await;
    let second = Tokens::from(&refresh(app, &admin.refresh).await, "refreshToken");
    assert_eq!(
        me(app, &second.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    // Reuse ends the session; the trigger's notification comes back through the listener.
    assert_unauthenticated(&refresh(app, &admin.refresh).await, "reused");
    assert_unauthenticated(&me(app, &second.access).await, "after reuse");
    let sid = app.state.jwt.verify(&admin.access).unwrap().sid;
    heard(
        &mut events,
        |e| matches!(e, AccessEvent::Session { id, .. } if *id == sid),
    )
    .await;

    // A suspension, published by the server in its transaction.
    let member = trip_login(app, "member").await;
    let member_id = user_id_of(&me(app, &member.access).await);
    app.graphql(
        "mutation($id: ID!) { updateUser(id: $id, input: { status: \"suspended\" }) { id } }",
        json!({ "id": member_id }),
        Some(&tenant.admin),
    )
    .await
    .data();
    assert_unauthenticated(&me(app, &member.access).await, "suspended");
    let user: Uuid = member_id.parse().unwrap();
    heard(&mut events, |e| {
        *e == AccessEvent::User {
            tenant: tenant_id,
            id: user,
        }
    })
    .await;

    // Logout.
    let fresh = trip_login(app, "admin").await;
    assert_eq!(
        app.graphql(LOGOUT, json!({}), Some(&fresh.access))
            .await
            .data()["logout"],
        true
    );
    assert_unauthenticated(&me(app, &fresh.access).await, "after logout");
    assert_unauthenticated(&refresh(app, &fresh.refresh).await, "refresh after logout");
}

#[tokio::test]
async fn a_refresh_token_gives_a_new_pair_once_and_presenting_it_again_ends_the_session() {
    let w = world("rotate.sessions").await;
    let first = w.admin.clone();
    let refreshed = refresh(&w.app, &first.refresh).await;
    let second = Tokens::from(&refreshed, "refreshToken");
    let payload = &refreshed.data()["refreshToken"];
    assert_eq!(payload["user"]["roles"], json!(["admin"]));
    assert_eq!(payload["tenant"]["domain"], "rotate.sessions");
    assert_ne!(second.refresh, first.refresh);
    let claims = |token: &str| w.app.state.jwt.verify(token).unwrap();
    assert_eq!(
        claims(&second.access).sid,
        claims(&first.access).sid,
        "the same session"
    );
    let admin_id = user_id_of(&me(&w.app, &second.access).await);
    assert_eq!(w.audited("session.refresh", &admin_id).await, 1);

    // The new refresh token works (once) too.
    let third = Tokens::from(&refresh(&w.app, &second.refresh).await, "refreshToken");
    assert_eq!(
        me(&w.app, &third.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );

    // The first one again: reuse. The whole session ends, every token of it.
    assert_unauthenticated(&refresh(&w.app, &first.refresh).await, "reused");
    for access in [&first.access, &second.access, &third.access] {
        assert_unauthenticated(&me(&w.app, access).await, "access after reuse");
    }
    assert_unauthenticated(
        &refresh(&w.app, &third.refresh).await,
        "latest refresh after reuse",
    );
    assert_eq!(w.audited("session.reuse_detected", &admin_id).await, 1);
    assert_eq!(
        w.app
            .scalar(&format!(
                "SELECT count(*) FROM public.sessions WHERE id = '{}' \
                  AND revoked_reason = 'refresh token reused'",
                claims(&first.access).sid
            ))
            .await,
        1
    );
    // Logging in again opens a new session.
    let again = login(
        &w.app,
        "admin@rotate.sessions",
        ADMIN_PASSWORD,
        Some("rotate.sessions"),
    )
    .await;
    assert!(!Tokens::from(&again, "login").access.is_empty());
}

#[tokio::test]
async fn bad_refresh_tokens_get_one_answer_and_the_two_kinds_of_token_never_pass_for_each_other() {
    let w = world("bad.sessions").await;
    let session = w.app.state.jwt.verify(&w.admin.access).unwrap().sid;

    // An expired one (its session otherwise fine).
    let expiring = w.user_login_as_admin().await;
    w.app
        .db()
        .execute_unprepared(&format!(
            "UPDATE public.refresh_tokens SET expires_at = now() - interval '1 second' \
              WHERE hash = '{}'",
            refresh_tokens::hash(&expiring.refresh)
        ))
        .await
        .unwrap();
    // One of a session that was logged out.
    let logged_out = w.user_login_as_admin().await;
    w.app
        .graphql(LOGOUT, json!({}), Some(&logged_out.access))
        .await
        .data();

    let bad = [
        ("unknown", refresh_tokens::generate().token),
        ("malformed", "rt_not-hex".to_owned()),
        ("empty", String::new()),
        ("an access token", w.admin.access.clone()),
        ("expired", expiring.refresh.clone()),
        ("of a logged-out session", logged_out.refresh.clone()),
    ];
    let mut messages = Vec::new();
    for (what, token) in &bad {
        let response = refresh(&w.app, token).await;
        assert_unauthenticated(&response, what);
        messages.push(response.error_message().to_owned());
    }
    messages.dedup();
    assert_eq!(messages.len(), 1, "one message for all: {messages:?}");

    // A refresh token is not an access token.
    assert_unauthenticated(
        &me(&w.app, &w.admin.refresh).await,
        "refresh token as bearer",
    );
    // None of that ended the admin's session or used up its refresh token.
    assert_eq!(
        w.app
            .scalar(&format!(
                "SELECT count(*) FROM public.sessions WHERE id = '{session}' AND revoked_at IS NULL"
            ))
            .await,
        1
    );
    assert!(
        !Tokens::from(&refresh(&w.app, &w.admin.refresh).await, "refreshToken")
            .access
            .is_empty()
    );
}

impl World {
    /// Another session of the tenant admin.
    async fn user_login_as_admin(&self) -> Tokens {
        Tokens::from(
            &login(
                &self.app,
                &format!("admin@{}", self.domain),
                ADMIN_PASSWORD,
                Some(&self.domain),
            )
            .await,
            "login",
        )
    }
}

/// Polls until `count` (an SQL count) reaches `n`, for up to ten seconds.
async fn wait_for_count(app: &TestApp, count: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let seen = app.scalar(count).await;
        if seen == n {
            return;
        }
        assert!(Instant::now() < deadline, "{count}: {seen}, not {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn of_two_concurrent_refreshes_with_one_token_exactly_one_succeeds() {
    let w = world("race.sessions").await;
    let hash = refresh_tokens::hash(&w.admin.refresh);
    // Hold the token's row so that both exchanges are waiting for it when it is let go.
    let hold = w.app.db().begin().await.unwrap();
    hold.execute_unprepared(&format!(
        "SELECT 1 FROM public.refresh_tokens WHERE hash = '{hash}' FOR UPDATE"
    ))
    .await
    .unwrap();
    let release = async {
        wait_for_count(
            &w.app,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
               AND wait_event_type = 'Lock' AND query LIKE 'UPDATE public.refresh_tokens%'",
            2,
        )
        .await;
        hold.commit().await.unwrap();
    };
    let (first, second, ()) = tokio::join!(
        refresh(&w.app, &w.admin.refresh),
        refresh(&w.app, &w.admin.refresh),
        release
    );
    let winners: Vec<&Gql> = [&first, &second]
        .into_iter()
        .filter(|response| response.0["errors"].is_null())
        .collect();
    assert_eq!(winners.len(), 1, "{first:?} {second:?}");
    let loser = if first.0["errors"].is_null() {
        &second
    } else {
        &first
    };
    assert_unauthenticated(loser, "the second exchange");
    // The loser presented a used token: as with any reuse, the session is over.
    let winner = Tokens::from(winners[0], "refreshToken");
    assert_unauthenticated(&me(&w.app, &winner.access).await, "after the race");
    assert_eq!(
        w.app
            .scalar(&format!(
                "SELECT count(*) FROM public.refresh_tokens WHERE hash = '{}'",
                refresh_tokens::hash(&winner.refresh)
            ))
            .await,
        1,
        "exactly one new refresh token was issued"
    );
}

#[tokio::test]
async fn losing_the_database_mid_refresh_loses_no_session_and_issues_no_token() {
    let w = world("lost.sessions").await;
    let session = w.app.state.jwt.verify(&w.admin.access).unwrap().sid;
    // Hold the session row: the exchange marks the token used, then waits here, mid-way.
    let hold = w.app.db().begin().await.unwrap();
    hold.execute_unprepared(&format!(
        "SELECT 1 FROM public.sessions WHERE id = '{session}' FOR UPDATE"
    ))
    .await
    .unwrap();
    let waiting = "FROM pg_stat_activity WHERE datname = current_database() \
                   AND wait_event_type = 'Lock' AND query LIKE 'UPDATE public.sessions%'";
    let cut = async {
        wait_for_count(&w.app, &format!("SELECT count(*) {waiting}"), 1).await;
        // The exchange's connection goes away, as when the database is lost.
        w.app
            .scalar(&format!(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) {waiting}) AS cut"
            ))
            .await;
    };
    let (lost, ()) = tokio::join!(refresh(&w.app, &w.admin.refresh), cut);
    hold.rollback().await.unwrap();
    assert!(lost.0["data"].is_null(), "no token: {}", lost.0);
    assert_eq!(lost.error_code(), "INTERNAL", "{}", lost.0);

    // Nothing was lost: the session lives, its token is unused, no other token exists.
    assert_eq!(
        me(&w.app, &w.admin.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    assert_eq!(
        w.app
            .scalar(&format!(
                "SELECT count(*) FROM public.refresh_tokens WHERE session_id = '{session}' \
                  AND used_at IS NULL"
            ))
            .await,
        1
    );
    // And the same refresh token works once the database is back.
    let refreshed = Tokens::from(&refresh(&w.app, &w.admin.refresh).await, "refreshToken");
    assert_eq!(
        me(&w.app, &refreshed.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
}

#[tokio::test]
async fn logout_over_http_ends_the_access_and_the_refresh_token_at_once() {
    let w = world("logout.sessions").await;
    let other = w.user_login_as_admin().await;
    let admin_id = user_id_of(&me(&w.app, &w.admin.access).await);
    let response = w
        .app
        .graphql(LOGOUT, json!({}), Some(&w.admin.access))
        .await;
    assert_eq!(response.data()["logout"], true);

    assert_unauthenticated(&me(&w.app, &w.admin.access).await, "access after logout");
    assert_unauthenticated(
        &refresh(&w.app, &w.admin.refresh).await,
        "refresh after logout",
    );
    assert_unauthenticated(
        &w.app
            .graphql(LOGOUT, json!({}), Some(&w.admin.access))
            .await,
        "logout twice",
    );
    // Only that session: the admin's other one goes on.
    assert_eq!(
        me(&w.app, &other.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    assert_eq!(w.audited("session.logout", &admin_id).await, 1);

    // A platform operator logs out the same way.
    let operator = Tokens::from(
        &login(&w.app, OPERATOR_EMAIL, OPERATOR_PASSWORD, None).await,
        "login",
    );
    assert_eq!(
        w.app
            .graphql(LOGOUT, json!({}), Some(&operator.access))
            .await
            .data()["logout"],
        true
    );
    assert_unauthenticated(&me(&w.app, &operator.access).await, "operator after logout");
    assert_unauthenticated(
        &refresh(&w.app, &operator.refresh).await,
        "operator refresh after logout",
    );

    // An API key has no session; nobody at all has nothing to end.
    let with_key = w
        .app
        .http
        .post(w.app.url("/graphql"))
        .header("x-api-key", &w.api_key)
        .json(&json!({ "query": LOGOUT }))
        .send()
        .await
        .unwrap();
    assert_eq!(
        Gql(with_key.json().await.unwrap()).error_code(),
        "FORBIDDEN"
    );
    assert_eq!(
        w.app.graphql(LOGOUT, json!({}), None).await.error_code(),
        "UNAUTHENTICATED"
    );
}

#[tokio::test]
async fn a_suspended_user_is_refused_on_the_next_request_and_back_when_reactivated() {
    let w = world("suspend.sessions").await;
    let id = w.add_user("ruth", &["member"]).await;
    let ruth = w.user_login("ruth").await;
    assert_eq!(
        me(&w.app, &ruth.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );

    w.update_user(&id, json!({ "status": "suspended" })).await;
    assert_unauthenticated(&me(&w.app, &ruth.access).await, "suspended");
    assert_unauthenticated(&refresh(&w.app, &ruth.refresh).await, "suspended refresh");

    // A suspension can be lifted: the session was not ended, its refresh token not used up.
    w.update_user(&id, json!({ "status": "active" })).await;
    assert_eq!(
        me(&w.app, &ruth.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    assert!(
        !Tokens::from(&refresh(&w.app, &ruth.refresh).await, "refreshToken")
            .access
            .is_empty()
    );
}

#[tokio::test]
async fn a_password_reset_ends_the_sessions_begun_with_the_old_password() {
    let w = world("reset.sessions").await;
    let id = w.add_user("naomi", &["member"]).await;
    let naomi = w.user_login("naomi").await;
    w.update_user(&id, json!({ "password": "a-brand-new-password" }))
        .await;
    assert_unauthenticated(&me(&w.app, &naomi.access).await, "after a reset");
    assert_unauthenticated(
        &refresh(&w.app, &naomi.refresh).await,
        "refresh after a reset",
    );
    // The new password opens a new session.
    let again = login(
        &w.app,
        "naomi@reset.sessions",
        "a-brand-new-password",
        Some("reset.sessions"),
    )
    .await;
    let again = Tokens::from(&again, "login");
    assert_eq!(
        me(&w.app, &again.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
}

#[tokio::test]
async fn a_role_taken_away_stops_counting_on_the_next_request() {
    let w = world("roles.sessions").await;
    let id = w.add_user("boaz", &["admin", "member"]).await;
    let boaz = w.user_login("boaz").await;
    let create_user = "mutation($input: CreateUserInput!) { createUser(input: $input) { id } }";
    let new_user = |email: &str| json!({ "input": { "email": email } });
    w.app
        .graphql(
            create_user,
            new_user("one@roles.sessions"),
            Some(&boaz.access),
        )
        .await
        .data();

    let removed = w
        .as_admin(
            "mutation($id: ID!) { removeRole(userId: $id, role: \"admin\") { id roles } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(removed["removeRole"]["roles"], json!(["member"]));

    let refused = w
        .app
        .graphql(
            create_user,
            new_user("two@roles.sessions"),
            Some(&boaz.access),
        )
        .await;
    assert_eq!(refused.error_code(), "FORBIDDEN", "{}", refused.0);
    assert_eq!(
        me(&w.app, &boaz.access).await.data()["me"]["user"]["roles"],
        json!(["member"])
    );
    // Given back, it counts again.
    w.as_admin(
        "mutation($id: ID!) { assignRole(userId: $id, role: \"admin\") { id } }",
        json!({ "id": id }),
    )
    .await;
    w.app
        .graphql(
            create_user,
            new_user("three@roles.sessions"),
            Some(&boaz.access),
        )
        .await
        .data();

    // removeRole needs users:write, a known user and a known role.
    let member = w.user_login("boaz").await;
    w.as_admin(
        "mutation($id: ID!) { removeRole(userId: $id, role: \"admin\") { id } }",
        json!({ "id": id }),
    )
    .await;
    let remove =
        "mutation($id: ID!, $role: String!) { removeRole(userId: $id, role: $role) { id } }";
    let forbidden = w
        .app
        .graphql(
            remove,
            json!({ "id": id, "role": "member" }),
            Some(&member.access),
        )
        .await;
    assert_eq!(forbidden.error_code(), "FORBIDDEN");
    let admin = Some(w.admin.access.as_str());
    let unknown_user = w
        .app
        .graphql(
            remove,
            json!({ "id": Uuid::new_v4(), "role": "member" }),
            admin,
        )
        .await;
    assert_eq!(unknown_user.error_code(), "NOT_FOUND");
    let unknown_role = w
        .app
        .graphql(remove, json!({ "id": id, "role": "pope" }), admin)
        .await;
    assert_eq!(unknown_role.error_code(), "BAD_USER_INPUT");
    assert_eq!(unknown_role.error_field(), Some("role"));
}

#[tokio::test]
async fn revoke_sessions_ends_every_session_of_one_user() {
    let w = world("revoke.sessions").await;
    let id = w.add_user("orpah", &["member"]).await;
    let first = w.user_login("orpah").await;
    let second = w.user_login("orpah").await;
    let revoke = "mutation($id: ID!) { revokeSessions(userId: $id) }";

    // A member may not.
    let refused = w
        .app
        .graphql(revoke, json!({ "id": id }), Some(&first.access))
        .await;
    assert_eq!(refused.error_code(), "FORBIDDEN");

    let revoked = w.as_admin(revoke, json!({ "id": id })).await;
    assert_eq!(revoked["revokeSessions"], 2);
    for tokens in [&first, &second] {
        assert_unauthenticated(&me(&w.app, &tokens.access).await, "revoked access");
        assert_unauthenticated(&refresh(&w.app, &tokens.refresh).await, "revoked refresh");
    }
    // The admin's own session goes on; nothing is left to end.
    assert_eq!(
        w.as_admin(revoke, json!({ "id": id })).await["revokeSessions"],
        0
    );
    let admin_id = user_id_of(&me(&w.app, &w.admin.access).await);
    assert_eq!(w.audited("session.revoke", &admin_id).await, 2);
    let unknown = w
        .app
        .graphql(
            revoke,
            json!({ "id": Uuid::new_v4() }),
            Some(&w.admin.access),
        )
        .await;
    assert_eq!(unknown.error_code(), "NOT_FOUND");
    // The user may log in again.
    let again = w.user_login("orpah").await;
    assert_eq!(
        me(&w.app, &again.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
}

#[tokio::test]
async fn an_operator_ends_every_session_of_a_tenant_and_deactivation_does_too() {
    let w = world("ended.sessions").await;
    let (_, _) = w.app.tenant_with_admin(&w.operator, "other.sessions").await;
    let other = Tokens::from(
        &login(
            &w.app,
            "admin@other.sessions",
            ADMIN_PASSWORD,
            Some("other.sessions"),
        )
        .await,
        "login",
    );
    let second = w.user_login_as_admin().await;
    let revoke = "mutation($id: ID!) { revokeTenantSessions(tenantId: $id) }";
    // Tenant users may not.
    let refused = w
        .app
        .graphql(revoke, json!({ "id": w.tenant_id }), Some(&w.admin.access))
        .await;
    assert_eq!(refused.error_code(), "FORBIDDEN");

    let ended = w
        .app
        .graphql(revoke, json!({ "id": w.tenant_id }), Some(&w.operator))
        .await;
    assert_eq!(ended.data()["revokeTenantSessions"], 2);
    for tokens in [&w.admin, &second] {
        assert_unauthenticated(&me(&w.app, &tokens.access).await, "revoked tenant");
        assert_unauthenticated(
            &refresh(&w.app, &tokens.refresh).await,
            "revoked tenant refresh",
        );
    }
    // Another tenant is not touched; the tenant stays active and its users log in again.
    assert_eq!(
        me(&w.app, &other.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    let again = w.user_login_as_admin().await;

    // Deactivating ends the sessions too: reactivated, the old ones stay ended.
    for mutation in ["deactivateTenant", "reactivateTenant"] {
        w.app
            .graphql(
                &format!("mutation($id: ID!) {{ {mutation}(id: $id) {{ status }} }}"),
                json!({ "id": w.tenant_id }),
                Some(&w.operator),
            )
            .await
            .data();
    }
    assert_unauthenticated(&me(&w.app, &again.access).await, "after deactivation");
    assert_unauthenticated(
        &refresh(&w.app, &again.refresh).await,
        "refresh after deactivation",
    );
    assert!(!w.user_login_as_admin().await.access.is_empty());
}

#[tokio::test]
async fn a_tenant_deleted_with_its_schema_and_created_again_on_the_same_domain_refuses_old_tokens()
{
    let w = world("again.sessions").await;
    let old_claims = w.app.state.jwt.verify(&w.admin.access).unwrap();
    w.app
        .graphql(
            "mutation($id: ID!, $confirm: String) { deleteTenant(id: $id, dropSchema: true, confirm: $confirm) { schemaDropped } }",
            json!({ "id": w.tenant_id, "confirm": "tenant_again_sessions" }),
            Some(&w.operator),
        )
        .await
        .data();
    // The same domain, schema name, admin email and password.
    let mut input = tenant_input("again.sessions");
    input["admin"] = json!({ "email": "admin@again.sessions", "password": ADMIN_PASSWORD });
    let created = w.app.create_tenant(&w.operator, input).await;
    assert_eq!(
        created["tenant"]["schemaName"],
        old_claims.schema.clone().unwrap()
    );
    assert_ne!(created["tenant"]["id"], json!(w.tenant_id));

    assert_unauthenticated(&me(&w.app, &w.admin.access).await, "old token, new tenant");
    assert_unauthenticated(
        &refresh(&w.app, &w.admin.refresh).await,
        "old refresh token, new tenant",
    );
    let fresh = w.user_login_as_admin().await;
    assert_eq!(
        me(&w.app, &fresh.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
}

/// Waits up to two seconds for `check` to hold.
#[tokio::test]
async fn sessions_that_can_never_be_used_again_are_pruned_and_the_others_kept() {
    let app = TestApp::spawn().await;
    let mut sessions = Vec::new();
    for _ in 0..4 {
        let tokens = Tokens::from(
            &login(&app, OPERATOR_EMAIL, OPERATOR_PASSWORD, None).await,
            "login",
        );
        sessions.push((app.state.jwt.verify(&tokens.access).unwrap().sid, tokens));
    }
    let [
        (ended_long_ago, _),
        (expired, _),
        (idle_but_refreshable, idle_tokens),
        (ended_lately, _),
    ] = &sessions[..]
    else {
        unreachable!()
    };
    let db = app.db();
    db.execute_unprepared(&format!(
        "UPDATE public.sessions SET revoked_at = now() - interval '8 days' WHERE id = '{ended_long_ago}';
         UPDATE public.sessions SET revoked_at = now() - interval '1 day' WHERE id = '{ended_lately}';
         UPDATE public.sessions SET last_used_at = now() - interval '9 days'
          WHERE id IN ('{expired}', '{idle_but_refreshable}');
         UPDATE public.refresh_tokens SET expires_at = now() - interval '1 hour'
          WHERE session_id = '{expired}';"
    ))
    .await
    .unwrap();

    let pruned = tenantgraph::auth::sessions::prune_ended(&app.state)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    let left = |id: &Uuid| format!("SELECT count(*) FROM public.sessions WHERE id = '{id}'");
    assert_eq!(app.scalar(&left(ended_long_ago)).await, 0);
    assert_eq!(app.scalar(&left(expired)).await, 0);
    assert_eq!(app.scalar(&left(ended_lately)).await, 1);
    assert_eq!(app.scalar(&left(idle_but_refreshable)).await, 1);
    assert_eq!(
        app.scalar("SELECT count(*) FROM public.refresh_tokens WHERE expires_at < now()")
            .await,
        0
    );
    // What was kept still works: the idle session continues with its refresh token.
    let refreshed = refresh(&app, &idle_tokens.refresh).await;
    assert!(refreshed.0["errors"].is_null(), "{}", refreshed.0);
}

async fn within_two_seconds(mut check: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The next event on `events` that `wanted` accepts, within two seconds.
async fn heard(
    events: &mut broadcast::Receiver<AccessEvent>,
    wanted: impl Fn(&AccessEvent) -> bool,
) -> AccessEvent {
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.recv().await {
                Ok(event) if wanted(&event) => return event,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("the feed closed"),
            }
        }
    })
    .await
    .expect("the event within two seconds")
}

async fn until_listening(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !app.state.access.feed().is_listening() {
        assert!(Instant::now() < deadline, "the listener never connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn two_servers_on_one_database_agree_within_two_seconds() {
    let w = world("two.sessions").await;
    let b = TestApp::spawn_on(&w.app.database.url, |_| {}).await;
    until_listening(&w.app).await;
    until_listening(&b).await;
    let tenant: Uuid = w.tenant_id.parse().unwrap();
    let mut events = b.state.access.subscribe();
    let refused_on_b = async |token: &str| {
        me(&b, token).await.0["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    };

    // Logout on A; B has the session cached.
    let session = w.user_login_as_admin().await;
    assert_eq!(
        me(&b, &session.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    w.app
        .graphql(LOGOUT, json!({}), Some(&session.access))
        .await
        .data();
    let sid = w.app.state.jwt.verify(&session.access).unwrap().sid;
    heard(
        &mut events,
        |e| matches!(e, AccessEvent::Session { id, .. } if *id == sid),
    )
    .await;
    assert!(
        within_two_seconds(async || refused_on_b(&session.access).await).await,
        "logout"
    );

    // A suspension on A.
    let id = w.add_user("mahlon", &["admin"]).await;
    let mahlon = w.user_login("mahlon").await;
    assert_eq!(
        me(&b, &mahlon.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    w.update_user(&id, json!({ "status": "suspended" })).await;
    let user: Uuid = id.parse().unwrap();
    heard(&mut events, |e| {
        *e == AccessEvent::User { tenant, id: user }
    })
    .await;
    assert!(
        within_two_seconds(async || refused_on_b(&mahlon.access).await).await,
        "suspension"
    );

    // A role taken away on A: `users` needs users:read, which only the role gave.
    w.update_user(&id, json!({ "status": "active" })).await;
    let users = async |token: &str| b.graphql("{ users { id } }", json!({}), Some(token)).await;
    assert!(
        within_two_seconds(async || users(&mahlon.access).await.0["errors"].is_null()).await,
        "reactivation"
    );
    w.as_admin(
        "mutation($id: ID!) { removeRole(userId: $id, role: \"admin\") { id } }",
        json!({ "id": id }),
    )
    .await;
    assert!(
        within_two_seconds(async || {
            users(&mahlon.access).await.0["errors"][0]["extensions"]["code"] == "FORBIDDEN"
        })
        .await,
        "role removal"
    );

    // The API key rotated on A.
    assert_eq!(
        b.graphql_with_key(ME, json!({}), &w.api_key).await.data()["me"]["kind"],
        "API_KEY"
    );
    w.app
        .graphql(
            "mutation($id: ID!) { rotateApiKey(tenantId: $id) }",
            json!({ "id": w.tenant_id }),
            Some(&w.operator),
        )
        .await
        .data();
    heard(&mut events, |e| *e == AccessEvent::Tenant { id: tenant }).await;
    assert!(
        within_two_seconds(async || b
            .graphql_with_key(ME, json!({}), &w.api_key)
            .await
            .error_code()
            == "UNAUTHENTICATED")
        .await,
        "key rotation"
    );

    // The tenant deactivated on A.
    assert_eq!(
        me(&b, &w.admin.access).await.data()["me"]["kind"],
        "TENANT_USER"
    );
    w.app
        .graphql(
            "mutation($id: ID!) { deactivateTenant(id: $id) { status } }",
            json!({ "id": w.tenant_id }),
            Some(&w.operator),
        )
        .await
        .data();
    assert!(
        within_two_seconds(async || refused_on_b(&w.admin.access).await).await,
        "deactivation"
    );

    // An operator deactivated by hand on the database: B reads operators on every request.
    let operator_on_b = Tokens::from(
        &login(&b, OPERATOR_EMAIL, OPERATOR_PASSWORD, None).await,
        "login",
    );
    w.app
        .db()
        .execute_unprepared(&format!(
            "UPDATE public.platform_users SET is_active = false WHERE email = '{OPERATOR_EMAIL}'"
        ))
        .await
        .unwrap();
    heard(&mut events, |e| matches!(e, AccessEvent::Operator { .. })).await;
    assert_unauthenticated(&me(&b, &operator_on_b.access).await, "deactivated operator");
    drop(b);
}

#[tokio::test]
async fn a_server_that_loses_its_listening_connection_drops_its_caches_and_listens_again() {
    let app = TestApp::spawn().await;
    until_listening(&app).await;
    let mut events = app.state.access.subscribe();
    let cut = app
        .scalar(&format!(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = current_database() AND application_name = '{APPLICATION_NAME}') AS cut"
        ))
        .await;
    assert_eq!(cut, 1, "one listening connection");
    // Everything cached goes, and subscribers are told that anything may have changed.
    heard(&mut events, |e| *e == AccessEvent::Everything).await;

    // It listens again: a notification sent now (by hand) reaches this server.
    until_listening(&app).await;
    let tenant = Uuid::new_v4();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        app.db()
            .execute_unprepared(&format!(
                "SELECT pg_notify('{ACCESS_CHANNEL}', '{{\"kind\":\"tenant\",\"id\":\"{tenant}\"}}')"
            ))
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                if let Ok(AccessEvent::Tenant { id }) = events.recv().await
                    && id == tenant
                {
                    return;
                }
            }
        })
        .await;
        if event.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the listener did not come back");
    }
}
