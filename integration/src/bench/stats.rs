//! Latency samples and their summaries.
//!
//! A workload records one duration per operation into a `Latencies`; the
//! summary sorts them once and reads percentiles by the nearest-rank method,
//! so p50 and p99 are always latencies that some operation really had.

use std::time::Duration;

/// At most this many samples are kept per measurement: a bound on memory
/// (8 bytes each, 80 MB at most) far above what a 60-s run at 100k op/s makes.
pub const SAMPLES_MAX: usize = 10_000_000;

/// Operation latencies of one measurement, in nanoseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies {
    samples_ns: Vec<u64>,
    /// Operations done past `SAMPLES_MAX` that were counted but not kept.
    dropped_count: u64,
}

impl Latencies {
    /// Records one operation's latency.
    pub fn record(&mut self, latency: Duration) {
        if self.samples_ns.len() < SAMPLES_MAX {
            self.samples_ns.push(u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX));
        } else {
            self.dropped_count += 1;
        }
    }

    /// Moves every sample of `other` into `self`.
    pub fn merge(&mut self, other: Latencies) {
        let room = SAMPLES_MAX.saturating_sub(self.samples_ns.len());
        let kept = other.samples_ns.len().min(room);
        self.dropped_count += other.dropped_count + (other.samples_ns.len() - kept) as u64;
        self.samples_ns.extend_from_slice(&other.samples_ns[..kept]);
    }

    /// How many operations were recorded, kept or not.
    pub fn count(&self) -> u64 {
        self.samples_ns.len() as u64 + self.dropped_count
    }

    /// Sorts the samples and summarizes them; `None` when there are none.
    pub fn summary(mut self) -> Option<Summary> {
        if self.samples_ns.is_empty() {
            return None;
        }
        self.samples_ns.sort_unstable();
        let sorted = &self.samples_ns;
        let sum_ns: u128 = sorted.iter().map(|&ns| u128::from(ns)).sum();
        Some(Summary {
            count: self.count(),
            p50_ms: nanos_to_ms(percentile(sorted, 50.0)?),
            p99_ms: nanos_to_ms(percentile(sorted, 99.0)?),
            max_ms: nanos_to_ms(*sorted.last()?),
            mean_ms: sum_ns as f64 / sorted.len() as f64 / 1e6,
        })
    }
}

/// Percentiles of one measurement, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Operations recorded.
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// A timed measurement: operations per second and their latencies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throughput {
    /// Operations finished per second of the measured time.
    pub per_s: f64,
    pub latency: Summary,
}

impl Throughput {
    /// The throughput of `latencies` recorded over `duration`.
    pub fn over(latencies: Latencies, duration: Duration) -> Option<Throughput> {
        let latency = latencies.summary()?;
        Some(Throughput { per_s: latency.count as f64 / duration.as_secs_f64().max(1e-9), latency })
    }
}

fn nanos_to_ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

/// The nearest-rank percentile `p` (0 < p ≤ 100) of ascending `sorted`:
/// the smallest sample with at least p% of the samples at or below it.
pub fn percentile(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    debug_assert!(sorted.windows(2).all(|pair| pair[0] <= pair[1]), "samples not sorted");
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// The median of `values` (mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|value| value.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[middle - 1] + sorted[middle]) / 2.0 } else { sorted[middle] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<u64> = (1..=100).collect();
        for (p, want) in [(50.0, 50), (99.0, 99), (100.0, 100), (1.0, 1), (0.5, 1), (99.5, 100)] {
            assert_eq!(percentile(&samples, p), Some(want), "p{p}");
        }
        assert_eq!(percentile(&[7], 50.0), Some(7));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[1, 2], 0.0), None);
        assert_eq!(percentile(&[1, 2], 101.0), None);
    }

    #[test]
    fn summary_in_milliseconds() {
        let mut latencies = Latencies::default();
        for ms in [3, 1, 2, 4, 10] {
            latencies.record(Duration::from_millis(ms));
        }
        let summary = latencies.summary().expect("five samples");
        assert_eq!(summary.count, 5);
        assert_eq!(summary.p50_ms, 3.0);
        assert_eq!(summary.p99_ms, 10.0);
        assert_eq!(summary.max_ms, 10.0);
        assert_eq!(summary.mean_ms, 4.0);
        assert!(Latencies::default().summary().is_none());
    }

    #[test]
    fn merge_keeps_counts() {
        let mut all = Latencies::default();
        let mut part = Latencies::default();
        part.record(Duration::from_micros(5));
        part.record(Duration::from_micros(7));
        all.merge(part);
        all.record(Duration::from_micros(6));
        assert_eq!(all.count(), 3);
        assert_eq!(all.summary().map(|summary| summary.p50_ms), Some(0.006));
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[f64::NAN]), None);
        assert_eq!(median(&[]), None);
    }
}
