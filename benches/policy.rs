//! Speed of the per-message scan and the per-chunk guard against the full shipped policy set.
//!
//! `cargo bench --bench policy`: criterion reports time per 1 KB message (target: well under
//! 50 µs on one core) with throughput in MB/s, and time per streamed chunk in the guard (target:
//! under 50 µs).

use std::hint::black_box;
use std::path::Path;

use carebridge::guard::Guard;
use carebridge::policy::{PolicySet, Severity};
use carebridge::prompts::{Prompts, Region};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn shipped() -> PolicySet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prompts = Prompts::load(&root.join("prompts"), Region::Uk).expect("prompts");
    PolicySet::load(&root.join("policies"), &prompts).expect("policies")
}

/// About 1 KB of ordinary patient text with one red flag in the middle.
fn kilobyte_message() -> String {
    let ordinary = "I've had a cough and a runny nose since Tuesday, my throat is sore when I swallow \
                    and I'm not sleeping well. ";
    let mut message = ordinary.repeat(4);
    message.push_str(
        "Since this morning I've had a crushing pain in my chest going down my left arm. ",
    );
    while message.len() < 1024 {
        message.push_str(ordinary);
    }
    message.truncate(1024);
    message
}

fn scan(criterion: &mut Criterion) {
    let set = shipped();
    let message = kilobyte_message();
    assert_eq!(set.evaluate(&message).level, Severity::Emergency);
    let mut group = criterion.benchmark_group("policy_scan");
    group.throughput(Throughput::Bytes(message.len() as u64));
    group.bench_function("1KB message, full shipped set", |bench| {
        bench.iter(|| black_box(set.evaluate(black_box(&message))))
    });
    group.finish();
}

fn guard(criterion: &mut Criterion) {
    let set = shipped();
    let reply = "Thank you for telling me. A sore throat with a runny nose is usually a viral \
                 infection that gets better on its own within a week. Rest, drink plenty of fluids \
                 and simple pain relief can help. If you find it hard to swallow or breathe, get \
                 help straight away. "
        .repeat(3);
    let chunks: Vec<String> = reply
        .chars()
        .collect::<Vec<_>>()
        .chunks(7)
        .map(|piece| piece.iter().collect())
        .collect();
    let mut group = criterion.benchmark_group("guard");
    group.throughput(Throughput::Elements(chunks.len() as u64));
    group.bench_function(
        "whole reply in 7-character chunks (time / chunk = time / elements)",
        |bench| {
            bench.iter(|| {
                let mut guard = Guard::new(set.output_rules(), Severity::Urgent);
                for chunk in &chunks {
                    black_box(guard.push(chunk));
                }
                black_box(guard.finish())
            })
        },
    );
    group.finish();
}

criterion_group!(benches, scan, guard);
criterion_main!(benches);
