//! Which replica a page read goes to first, and when to send a second
//! (hedged) read (sans-IO: the caller passes the clock).
//!
//! Each daemon's page-read latency is an exponentially weighted moving
//! average (EWMA) of the answers it gave. A read goes first to the candidate
//! with the lowest estimate among those that have not failed recently; if it
//! has not answered within the hedge delay (twice that estimate, bounded),
//! the client sends the same read to the next candidate and takes whichever
//! answers first. A read abandoned because the other one won is recorded as
//! taking at least as long as it had run, so a stalled daemon (SIGSTOP, a
//! long GC pause) sinks in the order after one or two reads. An estimate not
//! refreshed for `ESTIMATE_TTL` is forgotten, so a daemon that recovered gets
//! tried again once the others are slower than `UNMEASURED_LATENCY`.

use crate::ids::NodeId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Weight of a new sample in the average: a few reads move the estimate.
const EWMA_WEIGHT: f64 = 0.25;
/// The shortest hedge delay: below it a second read costs more than it saves.
pub const HEDGE_DELAY_MIN: Duration = Duration::from_millis(2);
/// The longest hedge delay: a slow replica never holds a read longer.
pub const HEDGE_DELAY_MAX: Duration = Duration::from_millis(100);
/// The latency assumed, for ordering, of a replica without a fresh
/// estimate: slower than a healthy local daemon (about 1 ms), faster than
/// one that is struggling.
pub const UNMEASURED_LATENCY: Duration = Duration::from_millis(10);
/// The hedge delay for a replica with no estimate yet.
pub const HEDGE_DELAY_UNKNOWN: Duration = Duration::from_millis(20);
/// Second reads sent per page read: bounds the extra load to one request.
pub const HEDGED_READS_MAX: usize = 1;
/// A daemon that failed a request this recently is tried last.
pub const RECENT_FAILURE: Duration = Duration::from_secs(5);
/// An estimate older than this is dropped: the daemon is tried afresh.
pub const ESTIMATE_TTL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
struct Estimate {
    latency_ms: f64,
    updated: Instant,
}

/// Per-daemon read latency estimates and recent failures.
#[derive(Debug, Default)]
pub struct ReadLatencies {
    estimates: HashMap<NodeId, Estimate>,
    failures: HashMap<NodeId, Instant>,
}

impl ReadLatencies {
    /// No estimates, no failures.
    pub fn new() -> ReadLatencies {
        ReadLatencies::default()
    }

    /// Records an answer from `node` that took `latency`.
    pub fn answered(&mut self, node: NodeId, latency: Duration, now: Instant) {
        let sample_ms = latency.as_secs_f64() * 1000.0;
        let latency_ms = match self.fresh(node, now) {
            Some(old) => old + EWMA_WEIGHT * (sample_ms - old),
            None => sample_ms,
        };
        self.estimates.insert(node, Estimate { latency_ms, updated: now });
    }

    /// Records a read abandoned after `elapsed` because another replica
    /// answered first: the daemon is at least that slow right now. Raises
    /// the estimate (never lowers it).
    pub fn abandoned(&mut self, node: NodeId, elapsed: Duration, now: Instant) {
        let sample_ms = elapsed.as_secs_f64() * 1000.0;
        let latency_ms = match self.fresh(node, now) {
            Some(old) if old >= sample_ms => old,
            Some(old) => old + EWMA_WEIGHT.max(0.5) * (sample_ms - old),
            None => sample_ms,
        };
        self.estimates.insert(node, Estimate { latency_ms, updated: now });
    }

    /// Records a failed request (network error or timeout).
    pub fn failed(&mut self, node: NodeId, now: Instant) {
        self.failures.insert(node, now);
    }

    /// Whether `node` failed within `RECENT_FAILURE`.
    pub fn failed_recently(&self, node: NodeId, now: Instant) -> bool {
        self.failures.get(&node).is_some_and(|at| now.saturating_duration_since(*at) < RECENT_FAILURE)
    }

    /// The estimate in milliseconds if it is fresh.
    fn fresh(&self, node: NodeId, now: Instant) -> Option<f64> {
        self.estimates
            .get(&node)
            .filter(|e| now.saturating_duration_since(e.updated) < ESTIMATE_TTL)
            .map(|e| e.latency_ms)
    }

    /// The current estimate for `node`, if fresh.
    pub fn estimate(&self, node: NodeId, now: Instant) -> Option<Duration> {
        self.fresh(node, now).map(|ms| Duration::from_secs_f64(ms / 1000.0))
    }

    /// `candidates` in the order to try them: those that failed recently
    /// last; the others by estimate, fastest first, a daemon without a fresh
    /// estimate counting as `UNMEASURED_LATENCY` (so it is measured once the
    /// measured ones are slower, and a dead daemon whose estimate expired
    /// does not jump ahead of live, fast ones). Ties keep the caller's order.
    pub fn order(&self, candidates: &[NodeId], now: Instant) -> Vec<NodeId> {
        let unmeasured_ms = UNMEASURED_LATENCY.as_secs_f64() * 1000.0;
        let mut ordered = candidates.to_vec();
        ordered.sort_by(|a, b| {
            let key =
                |node: &NodeId| (self.failed_recently(*node, now), self.fresh(*node, now).unwrap_or(unmeasured_ms));
            let (ka, kb) = (key(a), key(b));
            ka.0.cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
        });
        ordered
    }

    /// How long to wait for `node` before hedging: twice its estimate,
    /// within `[HEDGE_DELAY_MIN, HEDGE_DELAY_MAX]`.
    pub fn hedge_delay(&self, node: NodeId, now: Instant) -> Duration {
        match self.estimate(node, now) {
            Some(estimate) => (estimate * 2).clamp(HEDGE_DELAY_MIN, HEDGE_DELAY_MAX),
            None => HEDGE_DELAY_UNKNOWN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: NodeId = NodeId(0);
    const B: NodeId = NodeId(1);
    const C: NodeId = NodeId(2);

    fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }

    #[test]
    fn the_fastest_replica_goes_first_and_unmeasured_ones_get_tried() {
        let now = Instant::now();
        let mut latencies = ReadLatencies::new();
        latencies.answered(A, ms(30), now);
        latencies.answered(B, ms(1), now);
        assert_eq!(latencies.order(&[A, B, C], now), [B, C, A], "C is unmeasured: tried before a slow one");
        latencies.answered(C, ms(4), now);
        assert_eq!(latencies.order(&[A, B, C], now), [B, C, A]);
    }

    #[test]
    fn the_average_moves_a_quarter_of_the_way_to_each_sample() {
        let now = Instant::now();
        let mut latencies = ReadLatencies::new();
        latencies.answered(A, ms(4), now);
        latencies.answered(A, ms(8), now);
        assert_eq!(latencies.estimate(A, now), Some(ms(5)));
    }

    #[test]
    fn hedge_delay_is_twice_the_estimate_within_bounds() {
        let now = Instant::now();
        let mut latencies = ReadLatencies::new();
        assert_eq!(latencies.hedge_delay(A, now), HEDGE_DELAY_UNKNOWN);
        latencies.answered(A, ms(3), now);
        assert_eq!(latencies.hedge_delay(A, now), ms(6));
        latencies.answered(B, Duration::from_micros(200), now);
        assert_eq!(latencies.hedge_delay(B, now), HEDGE_DELAY_MIN);
        latencies.answered(C, ms(900), now);
        assert_eq!(latencies.hedge_delay(C, now), HEDGE_DELAY_MAX);
    }

    #[test]
    fn a_stalled_replica_sinks_and_is_tried_again_later() {
        let now = Instant::now();
        let mut latencies = ReadLatencies::new();
        latencies.answered(A, ms(1), now);
        latencies.answered(B, ms(2), now);
        // A stops answering: its read is abandoned when B's hedge wins.
        latencies.abandoned(A, ms(10), now);
        assert_eq!(latencies.order(&[A, B], now), [B, A]);
        latencies.abandoned(A, ms(3), now);
        assert!(latencies.estimate(A, now).unwrap() >= ms(5), "an abandonment never lowers the estimate");
        // Much later A's estimate has expired: it goes before a slow B,
        // after a fast one (a dead daemon does not jump the queue).
        let later = now + ESTIMATE_TTL;
        latencies.answered(B, ms(2), later - ms(1));
        assert_eq!(latencies.order(&[A, B], later), [B, A]);
        latencies.answered(B, ms(50), later - ms(1));
        assert_eq!(latencies.order(&[B, A], later), [A, B]);
    }

    #[test]
    fn replicas_that_failed_recently_go_last() {
        let now = Instant::now();
        let mut latencies = ReadLatencies::new();
        latencies.answered(A, ms(1), now);
        latencies.answered(B, ms(5), now);
        latencies.failed(A, now);
        assert_eq!(latencies.order(&[A, B, C], now), [B, C, A]);
        assert_eq!(latencies.order(&[A, B], now + RECENT_FAILURE), [A, B]);
    }
}
