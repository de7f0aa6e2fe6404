//! Webhooks over GraphQL (platform operators only): subscribe a URL to tenant life-cycle events,
//! see each delivery's state, unsubscribe.

use async_graphql::{Context, Enum, ID, InputObject, Object};
use chrono::{DateTime, FixedOffset};
use entity::public::{webhook_deliveries, webhooks};

use crate::{
    audit::Actor,
    error::AppError,
    graphql::{ContextExt, MAX_PAGE_SIZE, all_errors, parse_id},
    webhooks::{self as service, WebhookDraft},
};

#[derive(InputObject, Debug, Clone)]
pub struct CreateWebhookInput {
    /// An `http` or `https` URL (at most 2,048 bytes) of a public host, or of a host named in
    /// `WEBHOOK_ALLOWED_HOSTS`. Redirects are not followed.
    pub url: String,
    /// The events to deliver: `tenant.created`, `tenant.provisioned`, `tenant.failed`,
    /// `tenant.updated`, `tenant.deactivated`, `tenant.deleted`, `tenant.migrated`,
    /// `batch.finished` (each at most once).
    pub events: Vec<String>,
    /// The HMAC-SHA256 key of `X-Tenantgraph-Signature`, 16 to 256 bytes; it is never shown again.
    pub secret: String,
    /// At most 1,000 bytes.
    pub description: Option<String>,
}

/// Where a delivery stands.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WebhookDeliveryStatus {
    /// Not yet accepted by the receiver; tried again after a backoff.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Every attempt failed; it is not tried again.
    Failed,
}

/// A subscription of a URL to tenant life-cycle events. Its secret is never readable.
pub struct Webhook(webhooks::Model);

#[Object]
impl Webhook {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    async fn events(&self) -> Vec<String> {
        service::events_of(&self.0)
    }
    async fn description(&self) -> Option<&str> {
        self.0.description.as_deref()
    }
    async fn created_at(&self) -> DateTime<FixedOffset> {
        self.0.created_at
    }
    /// The latest deliveries, newest first (`first` is 1 to 100).
    #[graphql(complexity = "crate::graphql::page_cost(first, 20, child_complexity)")]
    async fn deliveries(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
    ) -> async_graphql::Result<Vec<WebhookDelivery>> {
        let first = first.unwrap_or(20);
        if !(1..=MAX_PAGE_SIZE).contains(&first) {
            return Err(
                AppError::bad_input("first", format!("first is 1 to {MAX_PAGE_SIZE}")).into(),
            );
        }
        let found = service::deliveries(&ctx.state().db, self.0.id, first as u64).await?;
        Ok(found.into_iter().map(WebhookDelivery).collect())
    }
}

/// One event sent (or to be sent) to one webhook.
pub struct WebhookDelivery(webhook_deliveries::Model);

#[Object]
impl WebhookDelivery {
    /// Also the payload's `id` and the `X-Tenantgraph-Delivery` header: the same on every attempt.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn event(&self) -> &str {
        &self.0.event
    }
    async fn status(&self) -> WebhookDeliveryStatus {
        match self.0.status.as_str() {
            "DELIVERED" => WebhookDeliveryStatus::Delivered,
            "FAILED" => WebhookDeliveryStatus::Failed,
            _ => WebhookDeliveryStatus::Pending,
        }
    }
    /// Attempts made so far (including one under way).
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// The HTTP status of the last answer; null when the receiver could not be reached.
    async fn last_status_code(&self) -> Option<i32> {
        self.0.last_status_code
    }
    /// When the event happened (the payload's `occurredAt`).
    async fn created_at(&self) -> DateTime<FixedOffset> {
        self.0.created_at
    }
    async fn delivered_at(&self) -> Option<DateTime<FixedOffset>> {
        self.0.delivered_at
    }
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Every webhook, oldest first.
    async fn webhooks(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Webhook>> {
        ctx.request().require_platform()?;
        let found = service::list(&ctx.state().db).await?;
        Ok(found.into_iter().map(Webhook).collect())
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Subscribes a URL to events; from now on each is POSTed to it, signed with the secret.
    async fn create_webhook(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookInput,
    ) -> async_graphql::Result<Webhook> {
        let request = ctx.request();
        request.require_platform()?;
        let draft = WebhookDraft {
            url: input.url,
            events: input.events,
            secret: input.secret,
            description: input.description,
        };
        let created = service::create(ctx.state(), &Actor::from(request), &draft)
            .await
            .map_err(|errors| all_errors(ctx, errors))?;
        Ok(Webhook(created))
    }

    /// Deletes the webhook and its deliveries; nothing more is sent to it.
    async fn delete_webhook(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<bool> {
        let request = ctx.request();
        request.require_platform()?;
        let id = parse_id("id", &id)?;
        service::delete(ctx.state(), &Actor::from(request), id).await?;
        Ok(true)
    }
}
