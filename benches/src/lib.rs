//! hsmkit's benchmarks: the wrap and sign paths on every backend, side by side.
//!
//! - [`ops`]: what is measured, prepared on any backend through the seam (so a row is a
//!   backend, never a special case) or directly on AWS-LC for the reference row.
//! - [`run`]: how: per-cell preparation, warm-up, interleaved rounds, one session per thread.
//! - [`report`]: the table, the JSON and the bar chart.
//!
//! `hsmkit bench` and the criterion harness (`cargo bench -p hsmkit-benches`) both use it.

pub mod ops;
pub mod report;
pub mod run;

pub use ops::BenchOp;
pub use report::Report;
pub use run::{Cell, Row, Settings};
