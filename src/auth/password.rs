//! argon2id password hashing, run on blocking threads so it never stalls the async runtime.

use std::sync::{Arc, OnceLock};

use anyhow::Context;
use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::SaltString,
};
use secrecy::{ExposeSecret, SecretString};

use crate::error::{AppError, AppResult};

/// Hashes and verifies passwords with argon2id at OWASP's recommended cost (19 MiB, 2 passes,
/// 1 lane) on a pool of its own, one thread per core: a login storm queues there instead of
/// starving the async runtime, and the 19 MiB buffers stay in a few threads' allocator arenas
/// instead of spreading over every blocking thread.
#[derive(Clone)]
pub struct PasswordHasherPool {
    workers: Arc<rayon::ThreadPool>,
}

impl Default for PasswordHasherPool {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(cores)
            .thread_name(|i| format!("argon2-{i}"))
            .build()
            .expect("starting the password hashing threads");
        PasswordHasherPool {
            workers: Arc::new(workers),
        }
    }
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl PasswordHasherPool {
    pub async fn hash(&self, password: SecretString) -> AppResult<String> {
        self.run(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            argon2()
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("argon2 hashing failed: {e}"))
        })
        .await
    }

    /// Verifies `password` against `stored_hash`; with no stored hash (unknown user) it verifies
    /// against a dummy hash instead, so both cases cost the same time and give the same answer.
    pub async fn verify(
        &self,
        password: SecretString,
        stored_hash: Option<String>,
    ) -> AppResult<bool> {
        let known_user = stored_hash.is_some();
        let stored_hash = stored_hash.unwrap_or_else(|| dummy_hash().to_owned());
        let matches = self
            .run(move || {
                let parsed = PasswordHash::new(&stored_hash)
                    .map_err(|e| anyhow::anyhow!("stored password hash is malformed: {e}"))?;
                Ok(argon2()
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok())
            })
            .await?;
        Ok(known_user && matches)
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> AppResult<T> {
        let span = tracing::Span::current();
        let (done, result) = tokio::sync::oneshot::channel();
        self.workers.spawn(move || {
            let _ = done.send(span.in_scope(job));
        });
        result
            .await
            .context("password hashing task failed")?
            .map_err(AppError::internal)
    }
}

/// A hash of a random password with the live parameters, made once.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let random_password = uuid::Uuid::new_v4().to_string();
        argon2()
            .hash_password(random_password.as_bytes(), &salt)
            .expect("hashing a dummy password")
            .to_string()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let pool = PasswordHasherPool::default();
        let hash = pool.hash("correct horse".to_owned().into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            pool.verify("correct horse".to_owned().into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify("wrong horse".to_owned().into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify("correct horse".to_owned().into(), None)
                .await
                .unwrap()
        );
    }
}
