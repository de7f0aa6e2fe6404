//! argon2id password hashing on a bounded pool of its own, so it never stalls the async runtime,
//! never queues minutes of CPU work, and never grows the heap.

use std::{
    cell::RefCell,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{
    error::{AppError, AppResult},
    primitives::metrics::Metrics,
};

/// OWASP's recommended argon2id cost: 19 MiB, 2 passes, 1 lane.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;
const LANES: u32 = 1;
/// What a job is assumed to take before one has been timed.
const FIRST_GUESS_MICROS: u64 = 50_000;

/// Hashes and verifies passwords with argon2id on a pool of one thread per core.
///
/// - **Bounded queue**: at most `queue` jobs are running or waiting at once. A login finding the
///   queue full is answered `RATE_LIMITED` with `retryAfterSeconds` at once, instead of queueing
///   CPU work for minutes; hashing for a new account (an authenticated operation) waits for a
///   place instead, as async tasks that hold no memory.
/// - **Bounded memory**: each hashing thread fills one 19 MiB block buffer of its own, allocated
///   once and reused by every job; no job allocates or frees its blocks, so nothing is left in
///   the allocator's arenas.
#[derive(Clone)]
pub struct PasswordHasherPool {
    inner: Arc<Pool>,
}

struct Pool {
    workers: rayon::ThreadPool,
    threads: usize,
    /// One place per job running or waiting.
    queue: Arc<Semaphore>,
    capacity: usize,
    /// Moving average of a job's time, for `retryAfterSeconds`.
    mean_job_micros: AtomicU64,
    metrics: Metrics,
}

impl Default for PasswordHasherPool {
    fn default() -> Self {
        PasswordHasherPool::new(
            crate::config::default_password_hash_queue(),
            Metrics::default(),
        )
    }
}

/// A place in the hashing queue, held from before a job is handed to the pool until it ends.
pub struct QueuePlace {
    _permit: OwnedSemaphorePermit,
}

impl PasswordHasherPool {
    /// A pool of one thread per core, `queue` jobs running or waiting at most, counting its jobs
    /// in `metrics`.
    pub fn new(queue: usize, metrics: Metrics) -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("argon2-{i}"))
            .build()
            .expect("starting the password hashing threads");
        let capacity = queue.max(1);
        PasswordHasherPool {
            inner: Arc::new(Pool {
                workers,
                threads,
                queue: Arc::new(Semaphore::new(capacity)),
                capacity,
                mean_job_micros: AtomicU64::new(FIRST_GUESS_MICROS),
                metrics,
            }),
        }
    }

    /// Takes a place in the queue now, or answers `RATE_LIMITED` with the time a full queue
    /// takes to drain.
    pub fn try_place(&self) -> AppResult<QueuePlace> {
        match self.inner.queue.clone().try_acquire_owned() {
            Ok(permit) => Ok(QueuePlace { _permit: permit }),
            Err(_) => {
                self.inner.metrics.count_password_queue_full();
                Err(AppError::RateLimited {
                    reason: "too many logins waiting for a password check",
                    retry_after_secs: self.drain_time().as_secs_f64().ceil().max(1.0) as u64,
                })
            }
        }
    }

    /// How long the jobs of a full queue take, at the mean job time so far.
    fn drain_time(&self) -> Duration {
        let mean = Duration::from_micros(self.inner.mean_job_micros.load(Ordering::Relaxed));
        let rounds = self.inner.capacity.div_ceil(self.inner.threads);
        mean.saturating_mul(u32::try_from(rounds).unwrap_or(u32::MAX))
    }

    /// Passwords verified since the pool started (every login that reached argon2id).
    pub fn verifications(&self) -> u64 {
        self.inner.metrics.password_verifications()
    }

    /// Hashes a new password, waiting for a place in the queue.
    pub async fn hash(&self, password: SecretString) -> AppResult<String> {
        let place = QueuePlace {
            _permit: self
                .inner
                .queue
                .clone()
                .acquire_owned()
                .await
                .context("the password hashing queue is closed")?,
        };
        self.run(place, false, move || {
            hash_phc(password.expose_secret().as_bytes())
        })
        .await
    }

    /// Verifies `password` against `stored_hash`; with no stored hash (unknown user) it verifies
    /// against a dummy hash instead, so both cases cost the same time and give the same answer.
    /// A full queue is `RATE_LIMITED` at once, before any work.
    pub async fn verify(
        &self,
        password: SecretString,
        stored_hash: Option<String>,
    ) -> AppResult<bool> {
        let place = self.try_place()?;
        let known_user = stored_hash.is_some();
        let matches = self
            .run(place, true, move || {
                let stored = match &stored_hash {
                    Some(hash) => hash.as_str(),
                    None => dummy_hash(),
                };
                verify_phc(password.expose_secret().as_bytes(), stored)
            })
            .await?;
        Ok(known_user && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        place: QueuePlace,
        verify: bool,
        job: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> AppResult<T> {
        let span = tracing::Span::current();
        let (done, result) = tokio::sync::oneshot::channel();
        let pool = self.inner.clone();
        self.inner.metrics.count_password_job(verify);
        self.inner.workers.spawn(move || {
            // The place is held until the job ends, even when its caller has gone away, and is
            // free again before the caller hears the outcome.
            let started = Instant::now();
            let outcome = span.in_scope(job);
            pool.record_job_time(started.elapsed());
            drop(place);
            let _ = done.send(outcome);
        });
        result
            .await
            .context("password hashing task failed")?
            .map_err(AppError::internal)
    }
}

impl Pool {
    /// Folds a job's time into the moving average (weight 1/8).
    fn record_job_time(&self, took: Duration) {
        let took = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let _ = self
            .mean_job_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                Some(mean - mean / 8 + took / 8)
            });
    }
}

fn params() -> Params {
    Params::new(MEMORY_KIB, PASSES, LANES, None).expect("valid argon2 parameters")
}

thread_local! {
    /// This thread's argon2 memory, allocated by its first job and reused by every later one.
    static BLOCKS: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
}

/// Runs `fill` on `count` blocks of this thread's reused buffer. A stored hash of a larger cost
/// than ours gets a buffer of its own for that one job, so the kept buffer never grows past it.
fn with_thread_blocks<T>(count: usize, fill: impl FnOnce(&mut [Block]) -> T) -> T {
    if count > params().block_count() {
        return fill(&mut vec![Block::default(); count]);
    }
    BLOCKS.with_borrow_mut(|blocks| {
        if blocks.len() < count {
            blocks.resize(count, Block::default());
        }
        fill(&mut blocks[..count])
    })
}

/// Computes the argon2 output of `password` and `salt` with the given settings, into a buffer of
/// `len` bytes, on this thread's blocks.
fn compute(
    argon2: &Argon2<'_>,
    password: &[u8],
    salt: &argon2::password_hash::Salt<'_>,
    len: usize,
) -> anyhow::Result<Output> {
    let mut salt_buffer = [0u8; 64];
    let salt = salt
        .decode_b64(&mut salt_buffer)
        .map_err(|e| anyhow::anyhow!("argon2 salt: {e}"))?;
    Output::init_with(len, |out| {
        with_thread_blocks(argon2.params().block_count(), |blocks| {
            argon2.hash_password_into_with_memory(password, salt, out, blocks)
        })
        .map_err(Into::into)
    })
    .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of `password` with a new salt.
fn hash_phc(password: &[u8]) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    let params = params();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let output = compute(
        &argon2,
        password,
        &salt.as_salt(),
        Params::DEFAULT_OUTPUT_LEN,
    )?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params)
            .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored`, computed with the stored algorithm,
/// version and cost, and compared in constant time.
fn verify_phc(password: &[u8], stored: &str) -> anyhow::Result<bool> {
    let malformed = |e: &dyn std::fmt::Display| anyhow::anyhow!("stored password hash: {e}");
    let parsed = PasswordHash::new(stored).map_err(|e| malformed(&e))?;
    let (Some(salt), Some(expected)) = (parsed.salt, &parsed.hash) else {
        anyhow::bail!("stored password hash has no salt or no hash");
    };
    let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| malformed(&e))?;
    let version = match parsed.version {
        Some(version) => Version::try_from(version).map_err(|e| malformed(&e))?,
        None => Version::default(),
    };
    let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
    let argon2 = Argon2::new(algorithm, version, params);
    let computed = compute(&argon2, password, &salt, expected.len())?;
    // `Output`'s equality is constant-time.
    Ok(&computed == expected)
}

/// A hash of a random password with the live parameters, made once (on a hashing thread).
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let random_password = uuid::Uuid::new_v4().to_string();
        hash_phc(random_password.as_bytes()).expect("hashing a dummy password")
    })
}

#[cfg(test)]
mod tests {
    use argon2::{PasswordHasher, PasswordVerifier};

    use super::*;

    async fn matches(pool: &PasswordHasherPool, password: &str, stored: Option<&str>) -> bool {
        pool.verify(password.to_owned().into(), stored.map(str::to_owned))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let pool = PasswordHasherPool::default();
        let hash = pool.hash("correct horse".to_owned().into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(matches(&pool, "correct horse", Some(&hash)).await);
        assert!(!matches(&pool, "wrong horse", Some(&hash)).await);
        assert!(!matches(&pool, "correct horse", None).await);
        assert_eq!(pool.verifications(), 3);
    }

    #[tokio::test]
    async fn hashes_agree_with_the_argon2_crates_own_hasher_both_ways() {
        let pool = PasswordHasherPool::default();
        // Ours, checked by the crate's verifier.
        let ours = pool.hash("battery staple".to_owned().into()).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"battery staple", &parsed)
                .is_ok()
        );
        // The crate's, at another cost, checked by ours.
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        )
        .hash_password(b"battery staple", &salt)
        .unwrap()
        .to_string();
        assert!(matches(&pool, "battery staple", Some(&cheap)).await);
        assert!(!matches(&pool, "battery stable", Some(&cheap)).await);
        // A malformed stored hash is an error, not a match.
        assert!(
            pool.verify("x".to_owned().into(), Some("$argon2id$nope".into()))
                .await
                .is_err()
        );
    }

    #[test]
    fn a_thread_reuses_its_blocks_and_a_costlier_hash_does_not_grow_them() {
        let count = params().block_count();
        let address = |count| with_thread_blocks(count, |blocks| blocks.as_ptr() as usize);
        let kept = address(count);
        assert_eq!(address(count), kept);
        assert_eq!(address(count / 2), kept);
        assert_ne!(address(count + 8), kept);
        assert_eq!(address(count), kept);
        BLOCKS.with_borrow(|blocks| assert_eq!(blocks.len(), count));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_logins_at_once_and_says_when_to_retry() {
        let pool = PasswordHasherPool::new(1, Metrics::default());
        let held = pool.try_place().unwrap();
        let refused = pool
            .verify("correct horse".to_owned().into(), None)
            .await
            .unwrap_err();
        assert!(
            matches!(refused, AppError::RateLimited { retry_after_secs, .. } if retry_after_secs >= 1)
        );
        assert_eq!(pool.verifications(), 0);
        drop(held);
        assert!(!matches(&pool, "correct horse", None).await);
        assert_eq!(pool.verifications(), 1);
    }
}
