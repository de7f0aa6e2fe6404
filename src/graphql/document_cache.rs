//! Parsed documents kept for the next request with the same text, and automatic persisted
//! queries (Apollo's APQ, version 1) over the same cache.
//!
//! A document is keyed by the SHA-256 of its text. A repeated document skips parsing (and the
//! recursion and directive limits it already passed), and one without variables also skips
//! validation: its result depends only on the document, the operation and the variables. A
//! client may send only the hash (`extensions.persistedQuery.sha256Hash`); an unknown hash is
//! answered `PersistedQueryNotFound`, and the client sends the text with its hash once, which is
//! refused when the hash is not the text's. The cache is bounded by an estimate of its memory.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Request, ServerError, ServerResult, ValidationResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
        NextValidation,
    },
    parser::types::{ExecutableDocument, OperationType},
};
use sha2::{Digest, Sha256};

/// The request extension that names a persisted query.
pub const PERSISTED_QUERY: &str = "persistedQuery";

/// In a request's data: only a query may run (the request came by GET).
pub struct QueriesOnly;

/// Estimated memory the cached documents may take.
const CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

type Hash = [u8; 32];

/// A parsed document and the validations it passed, by operation name (no variables).
struct Cached {
    document: ExecutableDocument,
    validated: Mutex<HashMap<Option<String>, ValidationResult>>,
    weight: u32,
}

impl Cached {
    /// A parsed document takes several times its text (names, positions, maps); the estimate
    /// errs high.
    fn weight(query: &str) -> u32 {
        u32::try_from(query.len().saturating_mul(16).saturating_add(1024)).unwrap_or(u32::MAX)
    }

    fn has_operation(&self, name: Option<&str>) -> bool {
        self.document
            .operations
            .iter()
            .any(|(operation, _)| operation.map(|n| n.as_str()) == name)
    }
}

/// The cache every request shares; [`ExtensionFactory`] of the schema.
#[derive(Clone)]
pub struct DocumentCache {
    documents: moka::sync::Cache<Hash, Arc<Cached>>,
}

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache {
            documents: moka::sync::Cache::builder()
                .max_capacity(CAPACITY_BYTES)
                .weigher(|_, cached: &Arc<Cached>| cached.weight)
                .build(),
        }
    }
}

impl ExtensionFactory for DocumentCache {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(RequestDocument {
            cache: self.clone(),
            state: Mutex::new(None),
        })
    }
}

/// What one request learnt in `prepare_request` for the later steps.
struct State {
    hash: Hash,
    cached: Option<Arc<Cached>>,
    operation_name: Option<String>,
    without_variables: bool,
    queries_only: bool,
}

struct RequestDocument {
    cache: DocumentCache,
    state: Mutex<Option<State>>,
}

impl RequestDocument {
    fn state(&self) -> std::sync::MutexGuard<'_, Option<State>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[derive(serde::Deserialize)]
struct PersistedQuery {
    version: i32,
    #[serde(rename = "sha256Hash")]
    sha256_hash: String,
}

fn refused(message: &str) -> ServerError {
    ServerError::new(message, None)
}

/// The hash a request names, checked against its text when it has one.
fn persisted_hash(value: async_graphql::Value, query: &str) -> ServerResult<Hash> {
    let persisted: PersistedQuery = async_graphql::from_value(value)
        .map_err(|_| refused("extensions.persistedQuery needs version and sha256Hash"))?;
    if persisted.version != 1 {
        return Err(refused("only version 1 of persisted queries is supported"));
    }
    let mut hash = Hash::default();
    hex::decode_to_slice(&persisted.sha256_hash, &mut hash)
        .map_err(|_| refused("sha256Hash must be 64 hexadecimal digits"))?;
    if !query.is_empty() && Hash::from(Sha256::digest(query)) != hash {
        return Err(refused("provided sha does not match query"));
    }
    Ok(hash)
}

#[async_trait::async_trait]
impl Extension for RequestDocument {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let hash = match request.extensions.remove(PERSISTED_QUERY) {
            Some(value) => Some(persisted_hash(value, &request.query)?),
            None if request.query.is_empty() => None,
            None => Some(Sha256::digest(&request.query).into()),
        };
        if let Some(hash) = hash {
            let cached = self.cache.documents.get(&hash);
            if cached.is_none() && request.query.is_empty() {
                return Err(refused("PersistedQueryNotFound"));
            }
            *self.state() = Some(State {
                hash,
                cached,
                operation_name: request.operation_name.clone(),
                without_variables: is_empty(&request.variables),
                queries_only: request
                    .data
                    .contains_key(&std::any::TypeId::of::<QueriesOnly>()),
            });
        }
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let known = self.state().as_ref().map(|state| {
            let queries_only = state.queries_only.then(|| state.operation_name.clone());
            (state.hash, state.cached.clone(), queries_only)
        });
        let Some((hash, cached, queries_only)) = known else {
            return next.run(ctx, query, variables).await;
        };
        if let Some(cached) = cached {
            if let Some(name) = queries_only {
                only_a_query(&cached.document, name.as_deref())?;
            }
            return Ok(cached.document.clone());
        }
        // Parsed, and within the recursion and directive limits.
        let document = next.run(ctx, query, variables).await?;
        let cached = Arc::new(Cached {
            document: document.clone(),
            validated: Mutex::default(),
            weight: Cached::weight(query),
        });
        self.cache.documents.insert(hash, cached.clone());
        if let Some(state) = self.state().as_mut() {
            state.cached = Some(cached);
        }
        Ok(document)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        // Only a result that depends on nothing but the document and the operation is kept.
        let reusable = self.state().as_ref().and_then(|state: &State| {
            let cached = state.cached.clone()?;
            let name = state.operation_name.clone();
            (state.without_variables && cached.has_operation(name.as_deref()))
                .then_some((cached, name))
        });
        let Some((cached, name)) = reusable else {
            return next.run(ctx).await;
        };
        let known = lock(&cached.validated).get(&name).copied();
        if let Some(result) = known {
            return Ok(result);
        }
        let result = next.run(ctx).await?;
        lock(&cached.validated).insert(name, result);
        Ok(result)
    }
}

/// Refuses a persisted mutation or subscription sent by GET (a document sent as text was
/// checked by the HTTP layer already, with its own status code).
fn only_a_query(document: &ExecutableDocument, name: Option<&str>) -> ServerResult<()> {
    let selected = document
        .operations
        .iter()
        .find(|(operation, _)| name.is_none() || operation.map(|n| n.as_str()) == name);
    match selected {
        Some((_, operation)) if operation.node.ty != OperationType::Query => Err(refused(
            "only queries may be sent with GET: mutations go by POST, subscriptions over /graphql/ws",
        )),
        _ => Ok(()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_empty(variables: &Variables) -> bool {
    variables.iter().next().is_none()
}
