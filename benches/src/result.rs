//! The JSON document every load generator prints for one run, and the HDR
//! histogram helpers behind its latency fields.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, up to a minute, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // 1 µs .. 60 s at 3 significant figures is a valid configuration.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Records `us` microseconds, clamped into the histogram's range.
pub fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.max(1));
}

/// Percentiles of one latency histogram, in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    /// (percentile, µs) points for plotting a percentile curve.
    pub curve: Vec<(f64, u64)>,
}

/// Percentiles plotted on the latency curve (log-spaced towards the tail).
pub const CURVE: &[f64] = &[0.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 100.0];

impl Latency {
    pub fn from_histogram(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            curve: CURVE.iter().map(|&p| (p, h.value_at_quantile(p / 100.0))).collect(),
        }
    }
}

/// How evenly messages spread over partitions (consumer side, in the window).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Spread {
    pub partitions: usize,
    /// Partitions that received nothing in the measured window.
    pub empty: usize,
    pub min: u64,
    pub median: u64,
    pub max: u64,
    /// Coefficient of variation (stddev / mean) of per-partition counts.
    pub cv: f64,
}

impl Spread {
    pub fn from_counts(counts: &[u64]) -> Spread {
        if counts.is_empty() {
            return Spread::default();
        }
        let mut v = counts.to_vec();
        v.sort_unstable();
        let n = v.len() as f64;
        let mean = v.iter().sum::<u64>() as f64 / n;
        let var = v.iter().map(|&c| (c as f64 - mean).powi(2)).sum::<f64>() / n;
        Spread {
            partitions: v.len(),
            empty: v.iter().filter(|&&c| c == 0).count(),
            min: v[0],
            median: v[v.len() / 2],
            max: v[v.len() - 1],
            cv: if mean > 0.0 { var.sqrt() / mean } else { 0.0 },
        }
    }
}

/// One run of one workload against one system.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunResult {
    pub system: String,
    pub workload: String,
    pub durability: String,
    pub record_size: usize,
    pub partitions: usize,
    pub producers: usize,
    pub consumers: usize,
    pub groups: usize,
    /// Length of the measured window (after warm-up), seconds.
    pub duration_s: f64,
    /// Target rate for fixed-rate runs (msgs/s over all producers).
    pub target_rate: Option<f64>,
    /// Records acknowledged whose send time fell in the window.
    pub produced: u64,
    pub produce_msgs_per_s: f64,
    pub produce_mb_per_s: f64,
    /// Records received by consumers in the window, summed over groups.
    pub consumed: u64,
    /// Per group (each group reads every record).
    pub consume_msgs_per_s: f64,
    pub consume_mb_per_s: f64,
    /// All records acknowledged over the whole run (warm-up included).
    pub acked_total: u64,
    /// Acknowledged records some group never received before the drain timeout.
    pub missing: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
    /// Send → acknowledgement.
    pub ack_latency: Latency,
    /// Send → consumption (the embedded timestamp).
    pub e2e_latency: Latency,
    pub spread: Option<Spread>,
    /// Catch-up reads: seconds to read the backlog, and whether caches were dropped.
    pub catchup_s: Option<f64>,
    pub backlog_bytes: Option<u64>,
    pub page_cache_dropped: Option<bool>,
    /// Seconds CreateTopics took (until metadata showed every partition).
    pub create_topic_s: Option<f64>,
    /// Seconds from CreateTopics until every partition had acknowledged a record (`--ready-probe`).
    #[serde(default)]
    pub ready_s: Option<f64>,
    pub notes: Vec<String>,
    /// Peak VmRSS and RssAnon of the server while this run's load ran (filled in by the harness).
    #[serde(default)]
    pub server_rss_peak: Option<u64>,
    #[serde(default)]
    pub server_anon_peak: Option<u64>,
}

impl RunResult {
    /// Fills the rate fields from counts.
    pub fn finish_rates(&mut self) {
        let d = self.duration_s.max(1e-9);
        let mb = |msgs: f64| msgs * self.record_size as f64 / 1_000_000.0;
        self.produce_msgs_per_s = self.produced as f64 / d;
        self.produce_mb_per_s = mb(self.produce_msgs_per_s);
        let per_group = self.consumed as f64 / self.groups.max(1) as f64;
        self.consume_msgs_per_s = per_group / d;
        self.consume_mb_per_s = mb(self.consume_msgs_per_s);
    }

    pub fn add_error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.error_samples.len() < 5 {
            self.error_samples.push(e.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_of_counts() {
        let s = Spread::from_counts(&[0, 10, 10, 20]);
        assert_eq!((s.partitions, s.empty, s.min, s.median, s.max), (4, 1, 0, 10, 20));
        assert!(s.cv > 0.0);
    }

    #[test]
    fn latency_percentiles() {
        let mut h = histogram();
        for v in 1..=1000 {
            record(&mut h, v);
        }
        let l = Latency::from_histogram(&h);
        assert_eq!(l.count, 1000);
        assert!((495..=505).contains(&l.p50_us));
        assert_eq!(l.max_us, 1000);
        assert_eq!(l.curve.len(), CURVE.len());
    }
}
