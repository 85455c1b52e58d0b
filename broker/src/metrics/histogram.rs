//! A histogram of atomics: an observation is a bucket search and three atomic
//! adds, no lock, so request and fsync timings cost nothing measurable on the
//! hot path. (prometheus-client's own histogram takes a mutex per observation.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds (seconds) for request latencies: 0.5 ms to 30 s, roughly
/// 1-2.5-5 per decade, wide enough for long-poll fetches and acks=all produces.
pub(crate) const LATENCY_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Upper bounds (seconds) for fsync durations: 50 µs to 5 s.
pub(crate) const FLUSH_BUCKETS: &[f64] =
    &[0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// Cloning shares the counts (as prometheus-client's metrics do), so a handle can
/// be kept next to the registry's copy.
#[derive(Debug, Clone)]
pub(crate) struct AtomicHistogram {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Finite upper bounds, ascending; an implicit +Inf bucket follows.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); `bounds.len() + 1` entries.
    counts: Box<[AtomicU64]>,
    /// Sum of observations, as f64 bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl AtomicHistogram {
    pub(crate) fn new(bounds: &'static [f64]) -> AtomicHistogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bucket bounds ascend");
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        AtomicHistogram { inner: Arc::new(Inner { bounds, counts, sum: AtomicU64::new(0), count: AtomicU64::new(0) }) }
    }

    /// Records one observation; NaN and negative values count as 0.
    pub(crate) fn observe(&self, v: f64) {
        let v = if v.is_nan() || v < 0.0 { 0.0 } else { v };
        let i = self.inner.bounds.partition_point(|b| *b < v);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        let mut old = self.inner.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + v).to_bits();
            match self.inner.sum.compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => break,
                Err(now) => old = now,
            }
        }
        self.inner.count.fetch_add(1, Ordering::Relaxed);
    }

    /// (sum, count, per-bucket counts with their upper bounds, +Inf last).
    ///
    /// The count is the sum of the buckets read, so a scrape racing an
    /// observation never shows `_count` disagreeing with the `+Inf` bucket.
    pub(crate) fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let buckets: Vec<(f64, u64)> = self
            .inner
            .bounds
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .zip(self.inner.counts.iter().map(|c| c.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, c)| c).sum();
        (f64::from_bits(self.inner.sum.load(Ordering::Relaxed)), count, buckets)
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_is_not_below_them() {
        let h = AtomicHistogram::new(&[0.1, 1.0, 10.0]);
        for v in [0.0, 0.1, 0.10001, 1.0, 9.9, 10.0, 10.5, 1e9, f64::NAN, -3.0] {
            h.observe(v);
        }
        let (sum, count, buckets) = h.snapshot();
        let counts: Vec<u64> = buckets.iter().map(|(_, c)| *c).collect();
        // le=0.1: 0, 0.1, NaN, -3 | le=1: 0.10001, 1 | le=10: 9.9, 10 | +Inf: 10.5, 1e9
        assert_eq!(counts, vec![4, 2, 2, 2]);
        assert_eq!(count, 10);
        assert_eq!(buckets.last().map(|(b, _)| *b), Some(f64::INFINITY));
        let expected = 0.1 + 0.10001 + 1.0 + 9.9 + 10.0 + 10.5 + 1e9;
        assert!((sum - expected).abs() < 1e-3, "sum {sum}");
    }

    #[test]
    fn clones_share_counts_across_threads() {
        let h = AtomicHistogram::new(LATENCY_BUCKETS);
        std::thread::scope(|s| {
            for _ in 0..4 {
                let h = h.clone();
                s.spawn(move || (0..1000).for_each(|_| h.observe(0.002)));
            }
        });
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 4000);
        assert!((sum - 8.0).abs() < 1e-9, "sum {sum}");
        let le_0025 = buckets.iter().find(|(b, _)| *b == 0.0025).map(|(_, c)| *c);
        assert_eq!(le_0025, Some(4000));
    }

    #[test]
    fn bucket_tables_ascend() {
        for t in [LATENCY_BUCKETS, FLUSH_BUCKETS] {
            assert!(t.windows(2).all(|w| w[0] < w[1]));
            assert!(t.iter().all(|b| b.is_finite() && *b > 0.0));
        }
    }
}
