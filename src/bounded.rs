//! Many reads at once, with a bound on how many are in flight: enough to hide each call's
//! latency, few enough that a thousand nodes never become a thousand concurrent requests.

use futures::stream::{self, StreamExt};

/// The most reads of one kind in flight at once.
pub const CONCURRENT_READS: usize = 8;

/// Runs `reads` with at most [`CONCURRENT_READS`] in flight, keeping their order. (A `Vec`, not
/// any iterator: a lazy iterator of futures borrowing from its closure makes the caller's
/// future lose `Send` in ways the compiler cannot prove general.)
pub async fn bounded<F: std::future::Future>(reads: Vec<F>) -> Vec<F::Output> {
    stream::iter(reads)
        .buffered(CONCURRENT_READS)
        .collect()
        .await
}
