//! The results: a table a person reads, JSON a program reads, and a bar chart.

use std::fmt::Write as _;

use serde::Serialize;

use crate::run::{Cell, Settings, UNTRUSTED_SPREAD};

/// A whole run, as `--json` writes it (schema: `docs/bench-json.md`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The schema's name and version.
    pub schema: &'static str,
    /// hsmkit's version.
    pub hsmkit: &'static str,
    /// Seconds measured per cell.
    pub duration_s: f64,
    /// Interleaved rounds per cell.
    pub rounds: u32,
    /// Each row's name, in order; the first is the one ratios are taken to.
    pub rows: Vec<String>,
    /// Every cell.
    pub cells: Vec<Cell>,
}

/// The JSON schema's name.
pub const SCHEMA: &str = "hsmkit-bench/1";

impl Report {
    /// The report of `cells`.
    pub fn new(rows: Vec<String>, cells: Vec<Cell>, settings: &Settings) -> Report {
        Report {
            schema: SCHEMA,
            hsmkit: env!("CARGO_PKG_VERSION"),
            duration_s: settings.duration.as_secs_f64(),
            rounds: settings.rounds,
            rows,
            cells,
        }
    }

    fn find(&self, row: &str, op: &str, threads: usize) -> Option<&Cell> {
        self.cells.iter().find(|c| c.row == row && c.op == op && c.threads == threads && c.error.is_none())
    }

    /// The ratio of `cell`'s rate to `other`'s (same operation and threads).
    pub fn ratio(&self, cell: &Cell, other: &str) -> Option<f64> {
        let o = self.find(other, &cell.op, cell.threads)?;
        (o.ops_per_sec > 0.0).then(|| cell.ops_per_sec / o.ops_per_sec)
    }

    /// The table: one line per cell, grouped by operation and threads.
    pub fn table(&self) -> String {
        let first = self.rows.iter().find(|r| !r.starts_with("reference")).cloned().unwrap_or_default();
        let reference = self.rows.iter().find(|r| r.starts_with("reference")).cloned();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<26} {:<42} {:>3} {:>12} {:>11} {:>11} {:>8} {:>8}",
            "operation", "row", "thr", "ops/s", "median", "p99", "vs 1st", "vs ref"
        );
        let mut warnings = Vec::new();
        for c in &self.cells {
            let row = match &c.how {
                Some(h) => format!("{} ({h})", c.row),
                None => c.row.clone(),
            };
            if let Some(e) = &c.error {
                let _ = writeln!(out, "{:<26} {:<42} {:>3} FAILED: {e}", c.op, row, c.threads);
                continue;
            }
            let vs = |other: Option<&String>| {
                other.and_then(|o| self.ratio(c, o)).map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"))
            };
            let _ = writeln!(
                out,
                "{:<26} {:<42} {:>3} {:>12.1} {:>11} {:>11} {:>8} {:>8}",
                c.op,
                row,
                c.threads,
                c.ops_per_sec,
                duration(c.median_ns),
                duration(c.p99_ns),
                vs(Some(&first)),
                vs(reference.as_ref()),
            );
            if c.spread > UNTRUSTED_SPREAD {
                warnings.push(format!(
                    "warning: {} / {} / {} thread(s): the rounds differ by {:.0}% ({}): this figure cannot be trusted; run again on a quieter machine or with a longer --duration",
                    c.op,
                    c.row,
                    c.threads,
                    c.spread * 100.0,
                    c.round_rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        for w in warnings {
            let _ = writeln!(out, "{w}");
        }
        out
    }

    /// The report as JSON.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// A bar chart (SVG): one group of bars per operation and thread count, one bar per row,
    /// each bar its rate relative to the reference row (or the first row) of its group, so
    /// operations of very different speeds share one axis.
    pub fn svg(&self) -> Result<String, String> {
        use plotters::prelude::*;
        let base = self.rows.iter().find(|r| r.starts_with("reference")).or(self.rows.first()).cloned();
        let mut groups: Vec<(String, usize)> = Vec::new();
        for c in &self.cells {
            if !groups.contains(&(c.op.clone(), c.threads)) {
                groups.push((c.op.clone(), c.threads));
            }
        }
        let rows: Vec<&String> = self.rows.iter().collect();
        let per = rows.len().max(1);
        let bars: Vec<(usize, usize, f64)> = self
            .cells
            .iter()
            .filter(|c| c.error.is_none())
            .filter_map(|c| {
                let g = groups.iter().position(|g| g.0 == c.op && g.1 == c.threads)?;
                let r = rows.iter().position(|r| **r == c.row)?;
                // A group the base row has no cell in (the package step has no reference) is
                // drawn relative to the first row that has one, which the chart's group label
                // names.
                let rel = base
                    .as_ref()
                    .and_then(|b| self.ratio(c, b))
                    .or_else(|| self.rows.iter().find_map(|r| self.ratio(c, r)))
                    .unwrap_or(1.0);
                Some((g, r, rel))
            })
            .collect();
        // Room on the right for the legend.
        let top = bars.iter().map(|b| b.2).fold(1.0f64, f64::max) * 1.45;
        let slots = (groups.len() * (per + 1)).max(1) as u32;
        let height = (120 + slots * 16).max(300);
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
            let e = |e: &dyn std::fmt::Display| e.to_string();
            root.fill(&WHITE).map_err(|x| e(&x))?;
            let caption = match &base {
                Some(b) => format!("calls per second relative to {b} (longer is faster)"),
                None => "calls per second".to_string(),
            };
            let names: Vec<String> = groups
                .iter()
                .map(|(op, t)| {
                    let has = |r: &String| self.find(r, op, *t).is_some_and(|c| c.error.is_none());
                    match self.rows.iter().find(|r| has(r)) {
                        Some(r) if !base.as_ref().is_some_and(has) => format!("{op} x{t} (vs {r})"),
                        _ => format!("{op} x{t}"),
                    }
                })
                .collect();
            // Room for the longest group label (about 7 pixels a character at this size).
            let widest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as u32;
            // Horizontal bars: one group per operation and thread count, top to bottom.
            let mut chart = ChartBuilder::on(&root)
                .caption(caption, ("sans-serif", 18))
                .margin(12)
                .x_label_area_size(36)
                .y_label_area_size((widest * 7 + 16).max(200))
                .build_cartesian_2d(0f64..top, 0u32..slots)
                .map_err(|x| e(&x))?;
            let label_of = |y: u32| {
                let Some(y) = (slots - 1).checked_sub(y).map(|y| y as usize) else { return String::new() };
                if y % (per + 1) == per / 2 {
                    names.get(y / (per + 1)).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .disable_y_mesh()
                .y_labels(slots as usize)
                .y_label_formatter(&|y| label_of(*y))
                .y_label_style(("sans-serif", 12))
                .x_desc("ratio")
                .draw()
                .map_err(|x| e(&x))?;
            for (r, name) in rows.iter().enumerate() {
                let color = Palette99::pick(r).to_rgba();
                let series: Vec<_> = bars
                    .iter()
                    .filter(|b| b.1 == r)
                    .map(|&(g, r, v)| {
                        let y = slots - 1 - (g * (per + 1) + r) as u32;
                        Rectangle::new([(0.0, y), (v, y + 1)], color.filled())
                    })
                    .collect();
                chart
                    .draw_series(series)
                    .map_err(|x| e(&x))?
                    .label(name.as_str())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.9))
                .border_style(BLACK)
                .draw()
                .map_err(|x| e(&x))?;
            root.present().map_err(|x| e(&x))?;
        }
        Ok(svg)
    }
}

/// A latency for people: `812 ns`, `42.1 µs`, `3.07 ms`.
pub fn duration(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns} ns"),
        1_000..1_000_000 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2} ms", ns as f64 / 1e6),
        _ => format!("{:.2} s", ns as f64 / 1e9),
    }
}
