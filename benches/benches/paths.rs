//! The wrap and sign paths on every backend present, side by side, under criterion: the
//! in-process emulator (a throwaway world), `libhsmkit_pkcs11.so` and SoftHSM2 through
//! `pkcs11-client` (throwaway tokens), a module named by `HSMKIT_BENCH_MODULE` (see
//! `common`), and the AWS-LC reference row. One group per operation, one function per row; every
//! row is prepared by the same code (`hsmkit_benches::ops`), through the seam, the package step
//! included (`Engine::package`, the same engine function on every backend).
//!
//! Run: `cargo bench -p hsmkit-benches` (`-- sign-pkcs1-2048` for one group). In the test
//! command (`cargo test --all-targets`) each function runs once, untimed.
#![allow(missing_docs)]

mod common;

use criterion::Criterion;
use hsmkit_benches::ops::Material;
use hsmkit_benches::{BenchOp, Row};

fn main() {
    let dir = common::bench_dir();
    let emulator = common::emulator(&dir);
    let modules = common::modules();
    let mut rows: Vec<Row<'_>> = vec![emulator.row()];
    rows.extend(modules.iter().map(common::Bench::row));
    rows.push(Row::Reference);

    let material = Material::for_ops(BenchOp::ALL).expect("key material");
    let mut c = Criterion::default().configure_from_args();
    for &op in BenchOp::ALL {
        let mut g = c.benchmark_group(op.name());
        if matches!(op, BenchOp::KeygenRsa(_)) {
            g.sample_size(10);
        }
        for row in rows.iter().filter(|r| r.runs(op)) {
            // Under `cargo bench`, a row that cannot do the operation (a mechanism a module
            // named by HSMKIT_BENCH_MODULE lacks) is skipped; in the test command, where the rows
            // are hsmkit's and SoftHSM2, every operation must run.
            let mut w = match row.worker(op, &material).and_then(|mut w| w().map(|()| w)) {
                Ok(w) => w,
                Err(e) if common::measuring() => {
                    eprintln!("{} / {}: skipped: {e}", op.name(), row.name());
                    continue;
                }
                Err(e) => panic!("{} / {}: {e}", op.name(), row.name()),
            };
            let how = match row {
                Row::Backend { backend, .. } => hsmkit_benches::ops::how(*backend, op),
                Row::Reference => None,
            };
            let name = match how {
                Some(h) => format!("{} ({h})", row.name()),
                None => row.name(),
            };
            g.bench_function(name, |b| b.iter(|| w().expect("the operation")));
        }
        g.finish();
    }
    c.final_summary();
}
