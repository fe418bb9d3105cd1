//! Crash survival: the cases run in a child process (a worker), which reports each case as it
//! starts and ends, one line each on its standard output. When the module under test crashes,
//! aborts or hangs, the parent records that against the case that was running and starts a new
//! worker after it, so one broken function costs one case, not the run.
//!
//! The protocol, one line per event:
//!
//! ```text
//! start <TAB> case-id
//! end <TAB> {"id": …, "outcome": "pass", "reason": null, "duration_ms": 1.2, "vector_checks": 0}
//! ```
//!
//! Anything else a worker prints (a module's own noise on standard output) is ignored.

use std::io::{BufRead as _, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::{Case, Event, Finding, Outcome};

/// Writes a worker's events to `out` (its standard output), flushed line by line so the parent
/// sees a case start before the module can crash in it.
pub fn worker_events(out: &mut dyn Write) -> impl FnMut(Event<'_>) + '_ {
    move |e| {
        let line = match e {
            Event::Start(case) => format!("start\t{}\n", case.id),
            Event::End(f) => {
                let v = serde_json::json!({
                    "id": f.id,
                    "outcome": f.outcome.name(),
                    "reason": f.outcome.reason(),
                    "duration_ms": f.duration.as_secs_f64() * 1000.0,
                    "vector_checks": f.checks,
                });
                format!("end\t{v}\n")
            }
        };
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
}

/// The cases of `all` a worker resumed after `after` still runs: those that follow it.
pub fn resume_after<'c>(all: &'c [Case], after: Option<&str>) -> &'c [Case] {
    match after.and_then(|id| all.iter().position(|c| c.id == id)) {
        Some(i) => &all[i + 1..],
        None => all,
    }
}

/// A finding read back from a worker's `end` line.
fn parse_end(json: &str, cases: &[Case]) -> Option<Finding> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let id = v["id"].as_str()?;
    let case = cases.iter().find(|c| c.id == id)?;
    let reason = v["reason"].as_str().unwrap_or_default().to_string();
    let outcome = match v["outcome"].as_str()? {
        "pass" => Outcome::Pass,
        "fail" => Outcome::Fail(reason),
        "xfail" => Outcome::ExpectedFailure(reason),
        "xpass" => Outcome::UnexpectedPass(reason),
        "skip" => Outcome::Skip(reason),
        "crash" => Outcome::Crashed(reason),
        _ => return None,
    };
    Some(Finding {
        id: case.id.clone(),
        profile: case.profile,
        clause: case.clause.clone(),
        outcome,
        duration: Duration::from_secs_f64(v["duration_ms"].as_f64().unwrap_or(0.0).max(0.0) / 1000.0),
        checks: v["vector_checks"].as_u64().unwrap_or(0),
    })
}

/// How a worker ended, in words.
fn ended(child: &mut Child) -> String {
    match child.wait() {
        Ok(status) => describe(status),
        Err(e) => format!("the worker could not be waited for: {e}"),
    }
}

/// A worker's exit status in words: the signal that killed it, or its exit code.
pub fn describe(status: std::process::ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt as _;
        if let Some(sig) = status.signal() {
            let name = match sig {
                4 => "SIGILL",
                6 => "SIGABRT",
                7 => "SIGBUS",
                8 => "SIGFPE",
                9 => "SIGKILL",
                11 => "SIGSEGV",
                15 => "SIGTERM",
                _ => "a signal",
            };
            return format!("the module crashed: the process was killed by {name} ({sig})");
        }
    }
    match status.code() {
        Some(code) => format!("the process exited with status {code} in the middle of the case"),
        None => "the process ended in the middle of the case".to_string(),
    }
}

/// Runs `cases` in workers made by `worker` (given the id to resume after), each case given
/// `timeout`; each worker reads `stdin` (its PINs, say) on its standard input. `events` sees each
/// case start and end as the parent learns of it. A case that was running when a worker died or
/// hung is [`Outcome::Crashed`]; the cases after it run in a new worker. A worker that cannot be
/// started fails the cases it would have run.
pub fn run_isolated(
    cases: &[Case],
    worker: &dyn Fn(Option<&str>) -> Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
    events: &mut dyn FnMut(Event<'_>),
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let remaining = resume_after(cases, after.as_deref());
        if remaining.is_empty() {
            return findings;
        }
        let input = if stdin.is_some() { Stdio::piped() } else { Stdio::null() };
        let mut child = match worker(after.as_deref()).stdin(input).stdout(Stdio::piped()).spawn() {
            Ok(c) => c,
            Err(e) => {
                for case in remaining {
                    findings.push(Finding {
                        id: case.id.clone(),
                        profile: case.profile,
                        clause: case.clause.clone(),
                        outcome: Outcome::Fail(format!("the worker process could not be started: {e}")),
                        duration: Duration::ZERO,
                        checks: 0,
                    });
                }
                return findings;
            }
        };
        if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A worker that dies before reading its input makes this fail; its exit says why.
            let _ = pipe.write_all(data);
        }
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            return findings;
        };
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut running: Option<(&Case, Instant)> = None;
        let mut last_done: Option<String> = None;
        let mut started_any = false;
        let crash = loop {
            let wait = match running {
                Some((_, since)) => timeout.saturating_sub(since.elapsed()),
                // Between cases (the worker starting, loading the module): the same bound.
                None => timeout,
            };
            match rx.recv_timeout(wait) {
                Ok(line) => {
                    if let Some(id) = line.strip_prefix("start\t") {
                        if let Some(case) = remaining.iter().find(|c| c.id == id) {
                            started_any = true;
                            events(Event::Start(case));
                            running = Some((case, Instant::now()));
                        }
                    } else if let Some(json) = line.strip_prefix("end\t")
                        && let Some(f) = parse_end(json, cases)
                    {
                        events(Event::End(&f));
                        last_done = Some(f.id.clone());
                        running = None;
                        findings.push(f);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break Some(format!(
                        "the module did not answer within {} s: the worker was stopped",
                        timeout.as_secs()
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let how = ended(&mut child);
                    let done = last_done.as_deref().map(|id| resume_after(remaining, Some(id)).is_empty());
                    // A worker that ended cleanly after its last case is done.
                    if running.is_none() && (done == Some(true) || how.contains("status 0")) {
                        break None;
                    }
                    break Some(how);
                }
            }
        };
        let _ = reader.join();
        match crash {
            None => {
                // Cases the worker never reached (it stopped early without a crash) are failed.
                let reached = last_done.clone();
                for case in resume_after(remaining, reached.as_deref()) {
                    if findings.iter().any(|f| f.id == case.id) {
                        continue;
                    }
                    let f = Finding {
                        id: case.id.clone(),
                        profile: case.profile,
                        clause: case.clause.clone(),
                        outcome: Outcome::Fail("the worker ended before this case ran".into()),
                        duration: Duration::ZERO,
                        checks: 0,
                    };
                    events(Event::End(&f));
                    findings.push(f);
                }
                return findings;
            }
            Some(why) if !started_any => {
                // The worker died before its first case (it could not open the module or the
                // token, or the module crashed while starting): another would too. The rest
                // fail with the reason; the worker's own message is on standard error.
                for case in remaining {
                    let f = Finding {
                        id: case.id.clone(),
                        profile: case.profile,
                        clause: case.clause.clone(),
                        outcome: Outcome::Crashed(format!("the worker ended before its first case: {why}")),
                        duration: Duration::ZERO,
                        checks: 0,
                    };
                    events(Event::End(&f));
                    findings.push(f);
                }
                return findings;
            }
            Some(why) => {
                // The case that was running, else the first the worker did not reach.
                let victim = match running {
                    Some((case, since)) => Some((case, since.elapsed())),
                    None => resume_after(remaining, last_done.as_deref()).first().map(|c| (c, Duration::ZERO)),
                };
                let Some((case, took)) = victim else { return findings };
                let f = Finding {
                    id: case.id.clone(),
                    profile: case.profile,
                    clause: case.clause.clone(),
                    outcome: Outcome::Crashed(why),
                    duration: took,
                    checks: 0,
                };
                events(Event::End(&f));
                findings.push(f);
                after = Some(case.id.clone());
            }
        }
    }
}
