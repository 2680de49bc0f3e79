//! A token credential for adapter tests: every call hands out a fresh token, `token-1`,
//! `token-2`, …, valid for an hour, and the calls are counted.

use async_trait::async_trait;
use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use std::sync::atomic::{AtomicU32, Ordering};

/// Hands out `token-1`, then `token-2`, …; counts the asks.
#[derive(Debug, Default)]
pub struct Tokens(AtomicU32);

impl Tokens {
    /// Tokens handed out so far.
    pub fn asked(&self) -> u32 {
        self.0.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenCredential for Tokens {
    async fn get_token(
        &self,
        _: &[&str],
        _: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(AccessToken::new(
            format!("token-{n}"),
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1),
        ))
    }
}
