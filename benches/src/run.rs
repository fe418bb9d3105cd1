//! How it is measured: every cell (row x operation x threads) is prepared once, warmed up, then
//! timed in interleaved rounds (round 1 of every cell, then round 2 of every cell, ...), so a
//! machine that drifts (thermal throttling, a neighbour's load) affects every row alike. Each
//! call is timed on its own; a cell reports operations per second (calls over wall time, all
//! threads together), the median and 99th-percentile latency, and the spread between its rounds.

use std::time::{Duration, Instant};

use hsmkit_backend::{Backend, Pin, Result, SessionMode, SlotId, UserKind};

use hsmkit_transfer::engine::Officer;

use crate::ops::{self, BenchOp, Material, Worker};

/// A row of the table: a backend, or the AWS-LC reference.
pub enum Row<'a> {
    /// A backend, its slot and the user PIN its private keys need (if any).
    Backend {
        /// The row's name in the report.
        name: String,
        /// The backend.
        backend: &'a dyn Backend,
        /// The slot.
        slot: SlotId,
        /// The user PIN, for a backend whose private keys need a login.
        pin: Option<Pin>,
        /// Who approves the package step's narrowing (the world's cards or the security
        /// officer's PIN); without one, the package step is not run on this row.
        officer: Option<Officer>,
    },
    /// AWS-LC called directly: the limit.
    Reference,
}

impl Row<'_> {
    /// The row's name.
    pub fn name(&self) -> String {
        match self {
            Row::Backend { name, .. } => name.clone(),
            Row::Reference => "reference (AWS-LC)".into(),
        }
    }

    /// Whether the row runs `op`: the reference runs everything but the package step (which
    /// needs a module); a backend runs everything but `noop`, and the package step only when the
    /// row has an officer to approve the narrowing.
    pub fn runs(&self, op: BenchOp) -> bool {
        match self {
            Row::Reference => op != BenchOp::Package,
            Row::Backend { officer, .. } => op != BenchOp::Noop && (op != BenchOp::Package || officer.is_some()),
        }
    }

    /// A worker for `op` on this row: a session of its own (logged in when the row has a PIN)
    /// with the operation's keys.
    pub fn worker(&self, op: BenchOp, m: &Material) -> Result<Worker<'_>> {
        match self {
            Row::Reference => ops::reference::prepare(op, m),
            Row::Backend { backend, slot, pin, officer, .. } => {
                let s = backend.open_session(*slot, SessionMode::ReadWrite)?;
                if let Some(pin) = pin {
                    match s.login(UserKind::User, pin) {
                        Ok(()) => {}
                        // The login belongs to the application: another session made it.
                        Err(e) if e.kind() == &hsmkit_backend::ErrorKind::UserAlreadyLoggedIn => {}
                        Err(e) => return Err(e),
                    }
                }
                let access = ops::Access { backend: *backend, user: pin.as_ref(), officer: officer.as_ref() };
                ops::prepare(s, &access, op, m)
            }
        }
    }
}

/// How long and how often.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time measured per cell, over all rounds.
    pub duration: Duration,
    /// Interleaved rounds the time is split into.
    pub rounds: u32,
    /// Untimed calls before a cell's first round, per thread.
    pub warmup: Duration,
    /// Thread counts (one session per thread).
    pub threads: Vec<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings { duration: Duration::from_secs(3), rounds: 3, warmup: Duration::from_millis(200), threads: vec![1] }
    }
}

/// One measured cell.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cell {
    /// The row.
    pub row: String,
    /// The operation's name.
    pub op: String,
    /// Threads (one session each).
    pub threads: usize,
    /// Calls per second, all threads together.
    pub ops_per_sec: f64,
    /// Median latency of a call, nanoseconds.
    pub median_ns: u64,
    /// 99th-percentile latency, nanoseconds.
    pub p99_ns: u64,
    /// Calls timed.
    pub calls: u64,
    /// Calls per second in each round.
    pub round_rates: Vec<f64>,
    /// (highest - lowest) / median of the round rates: above [`UNTRUSTED_SPREAD`] the figure is
    /// flagged.
    pub spread: f64,
    /// How the backend does it ("native" or "composed"), where that differs between backends.
    pub how: Option<String>,
    /// Why the cell failed (set-up or a call), if it did.
    pub error: Option<String>,
}

/// The spread between rounds above which a figure is flagged as not to be trusted.
pub const UNTRUSTED_SPREAD: f64 = 0.15;

/// Progress, for a bar: cells finished and in all, and what runs now.
#[derive(Debug, Clone)]
pub struct Progress {
    /// Timed slots done.
    pub done: usize,
    /// Timed slots in all.
    pub total: usize,
    /// The cell being measured.
    pub current: String,
}

struct Timed {
    calls: u64,
    wall: Duration,
    latencies: Vec<u64>,
}

/// Runs `workers` (one per thread) for `time`; the first error ends the slot.
fn timed(workers: &mut [Worker<'_>], time: Duration) -> std::result::Result<Timed, String> {
    let barrier = std::sync::Barrier::new(workers.len());
    let start = Instant::now();
    let results: Vec<std::result::Result<Vec<u64>, String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = workers
            .iter_mut()
            .map(|w| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let deadline = Instant::now() + time;
                    let mut lat = Vec::with_capacity(4096);
                    loop {
                        let t = Instant::now();
                        w().map_err(|e| e.to_string())?;
                        let now = Instant::now();
                        lat.push(u64::try_from((now - t).as_nanos()).unwrap_or(u64::MAX));
                        if now >= deadline {
                            return Ok(lat);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("the operation panicked".into()))).collect()
    });
    let wall = start.elapsed();
    let mut latencies = Vec::new();
    for r in results {
        latencies.extend(r?);
    }
    Ok(Timed { calls: latencies.len() as u64, wall, latencies })
}

fn warm(workers: &mut [Worker<'_>], time: Duration) -> std::result::Result<(), String> {
    if time.is_zero() {
        return Ok(());
    }
    timed(workers, time).map(drop)
}

/// Measures every operation of `ops` on every row at every thread count of `settings`.
pub fn run(
    rows: &[Row<'_>],
    ops_list: &[BenchOp],
    settings: &Settings,
    progress: &mut dyn FnMut(&Progress),
) -> Result<Vec<Cell>> {
    let material = Material::for_ops(ops_list)?;
    struct Slot<'w> {
        cell: Cell,
        workers: Vec<Worker<'w>>,
        timed: Vec<(u64, Duration)>,
        latencies: Vec<u64>,
    }
    let mut slots: Vec<Slot<'_>> = Vec::new();
    // The package step's narrowing logs the user out and in again, which (PKCS#11 says) destroys
    // the application's private session objects: its cells are prepared before any other's,
    // then put back in their place.
    let mut order: Vec<(usize, BenchOp)> = ops_list.iter().copied().enumerate().collect();
    order.sort_by_key(|(_, op)| *op != BenchOp::Package);
    let mut places = Vec::new();
    for (place, op) in order {
        for &threads in &settings.threads {
            for row in rows.iter().filter(|r| r.runs(op)) {
                let how = match row {
                    Row::Backend { backend, .. } => ops::how(*backend, op).map(str::to_string),
                    Row::Reference => None,
                };
                let mut cell = Cell {
                    row: row.name(),
                    op: op.name(),
                    threads,
                    ops_per_sec: 0.0,
                    median_ns: 0,
                    p99_ns: 0,
                    calls: 0,
                    round_rates: Vec::new(),
                    spread: 0.0,
                    how,
                    error: None,
                };
                let mut workers = Vec::new();
                for _ in 0..threads {
                    match row.worker(op, &material) {
                        Ok(w) => workers.push(w),
                        Err(e) => {
                            cell.error = Some(e.to_string());
                            break;
                        }
                    }
                }
                if cell.error.is_none()
                    && let Err(e) = warm(&mut workers, settings.warmup)
                {
                    cell.error = Some(e);
                }
                slots.push(Slot { cell, workers, timed: Vec::new(), latencies: Vec::new() });
                places.push(place);
            }
        }
    }
    let mut placed: Vec<(usize, Slot<'_>)> = places.into_iter().zip(slots).collect();
    placed.sort_by_key(|(place, _)| *place);
    let mut slots: Vec<Slot<'_>> = placed.into_iter().map(|(_, slot)| slot).collect();
    let rounds = settings.rounds.max(1);
    let per_round = settings.duration / rounds;
    let total = slots.len() * rounds as usize;
    let mut done = 0;
    // Within each operation and thread count, the rows take turns at going first (round r starts
    // at the group's r-th row), so a position effect (the cell after a change of operation, say)
    // does not always fall on the same row.
    let mut groups: Vec<std::ops::Range<usize>> = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        match groups.last_mut() {
            Some(g) if slots[g.start].cell.op == slot.cell.op && slots[g.start].cell.threads == slot.cell.threads => {
                g.end = i + 1
            }
            _ => groups.push(i..i + 1),
        }
    }
    for round in 0..rounds as usize {
        let order: Vec<usize> = groups
            .iter()
            .flat_map(|g| {
                let n = g.len();
                (0..n).map(move |k| g.start + (k + round) % n)
            })
            .collect();
        for i in order {
            let slot = &mut slots[i];
            progress(&Progress {
                done,
                total,
                current: format!("{} / {} / {} thread(s)", slot.cell.row, slot.cell.op, slot.cell.threads),
            });
            done += 1;
            if slot.cell.error.is_some() {
                continue;
            }
            match timed(&mut slot.workers, per_round) {
                Ok(t) => {
                    slot.timed.push((t.calls, t.wall));
                    slot.latencies.extend(t.latencies);
                }
                Err(e) => slot.cell.error = Some(e),
            }
        }
    }
    progress(&Progress { done, total, current: String::new() });
    Ok(slots
        .into_iter()
        .map(|mut slot| {
            if slot.cell.error.is_none() {
                finish(&mut slot.cell, &slot.timed, &mut slot.latencies);
            }
            slot.cell
        })
        .collect())
}

fn finish(cell: &mut Cell, rounds: &[(u64, Duration)], latencies: &mut [u64]) {
    let calls: u64 = rounds.iter().map(|r| r.0).sum();
    let wall: f64 = rounds.iter().map(|r| r.1.as_secs_f64()).sum();
    cell.calls = calls;
    cell.ops_per_sec = if wall > 0.0 { calls as f64 / wall } else { 0.0 };
    cell.round_rates = rounds.iter().map(|(c, w)| *c as f64 / w.as_secs_f64().max(1e-9)).collect();
    let mut rates = cell.round_rates.clone();
    rates.sort_by(f64::total_cmp);
    if let (Some(lo), Some(hi)) = (rates.first(), rates.last()) {
        let mid = rates[rates.len() / 2];
        cell.spread = if mid > 0.0 { (hi - lo) / mid } else { 0.0 };
    }
    latencies.sort_unstable();
    if !latencies.is_empty() {
        cell.median_ns = latencies[latencies.len() / 2];
        cell.p99_ns = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    }
}
