//! Shared pieces of the benchmark harness: the record payload with its send
//! timestamp, latency histograms, and the JSON result every load generator prints.

pub mod payload;
pub mod result;

pub use result::{Latency, RunResult, Spread};
