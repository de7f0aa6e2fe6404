//! Parsed documents kept for the next request with the same text, and automatic persisted
//! queries (Apollo's APQ, version 1) over the same cache.
//!
//! A document is keyed by the SHA-256 of its text. A repeated document skips parsing, and one
//! without variables whose operation passed validation before skips the validation rules (only
//! the limits are checked again, see [`super::operations`]): the result depends only on the
//! document, the operation and the variables. A
//! client may send only the hash (`extensions.persistedQuery.sha256Hash`); an unknown hash is
//! answered `PersistedQueryNotFound`, and the client sends the text with its hash once, which is
//! refused when the hash is not the text's. The cache is bounded by an estimate of its memory.

use std::{
    any::TypeId,
    collections::HashSet,
    sync::{Arc, Mutex},
};

use async_graphql::{
    Request, ServerError, ServerResult, Variables,
    parser::{
        parse_query,
        types::{DocumentOperations, ExecutableDocument, OperationType},
    },
};
use sha2::{Digest, Sha256};

/// The request extension that names a persisted query.
pub const PERSISTED_QUERY: &str = "persistedQuery";

/// In a request's data: only a query may run (the request came by GET).
pub struct QueriesOnly;

/// Estimated memory the cached documents may take.
const CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

type Hash = [u8; 32];

/// A parsed document and the operations that passed validation with no variables.
struct Cached {
    document: ExecutableDocument,
    validated: Mutex<HashSet<Option<String>>>,
    weight: u32,
}

impl Cached {
    /// A parsed document takes several times its text (names, positions, maps); the estimate
    /// errs high.
    fn weight(query: &str) -> u32 {
        u32::try_from(query.len().saturating_mul(16).saturating_add(1024)).unwrap_or(u32::MAX)
    }
}

/// The cache every request shares, kept in the schema's data.
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

impl DocumentCache {
    /// Gives the request its parsed document: the cached one, or its text parsed now and kept.
    /// `None` when the request names no document (async-graphql refuses the empty text).
    pub(super) fn prepare(&self, request: &mut Request) -> ServerResult<Option<RequestDocument>> {
        let hash = match request.extensions.remove(PERSISTED_QUERY) {
            Some(value) => persisted_hash(value, &request.query)?,
            None if request.query.is_empty() => return Ok(None),
            None => Sha256::digest(&request.query).into(),
        };
        let cached = match self.documents.get(&hash) {
            Some(cached) => {
                if request.data.contains_key(&TypeId::of::<QueriesOnly>()) {
                    only_a_query(&cached.document, request.operation_name.as_deref())?;
                }
                cached
            }
            None if request.query.is_empty() => return Err(refused("PersistedQueryNotFound")),
            None => {
                let cached = Arc::new(Cached {
                    document: parse_query(&request.query)?,
                    validated: Mutex::default(),
                    weight: Cached::weight(&request.query),
                });
                self.documents.insert(hash, cached.clone());
                cached
            }
        };
        // async-graphql still checks the recursion and directive limits of a parsed document.
        request.set_parsed_query(cached.document.clone());
        Ok(Some(RequestDocument {
            operation_name: request.operation_name.clone(),
            without_variables: is_empty(&request.variables),
            cached,
        }))
    }
}

/// The cached document of one request, and what decides whether its validation is reusable.
pub(super) struct RequestDocument {
    cached: Arc<Cached>,
    operation_name: Option<String>,
    without_variables: bool,
}

impl RequestDocument {
    /// The operation the request runs, when the document has it.
    pub(super) fn operation(&self) -> Option<(Option<&str>, OperationType)> {
        let operations = &self.cached.document.operations;
        let (name, operation) = match (&self.operation_name, operations) {
            (None, DocumentOperations::Single(operation)) => (None, operation),
            (None, DocumentOperations::Multiple(map)) if map.len() == 1 => {
                let (name, operation) = map.iter().next()?;
                (Some(name.as_str()), operation)
            }
            (Some(name), DocumentOperations::Multiple(map)) => {
                (Some(name.as_str()), map.get(name.as_str())?)
            }
            _ => return None,
        };
        Some((name, operation.node.ty))
    }

    /// Whether this document and operation passed validation before, with no variables: then
    /// the result holds again, as it depends on nothing else.
    pub(super) fn validated(&self) -> bool {
        self.without_variables && lock(&self.cached.validated).contains(&self.operation_name)
    }

    /// Notes that the operation passed validation, if the result is reusable.
    pub(super) fn passed_validation(&self) {
        if self.without_variables && self.operation().is_some() {
            lock(&self.cached.validated).insert(self.operation_name.clone());
        }
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
