//! Cost of replacing identifiers before text leaves for an external provider.
//!
//! `cargo bench --bench redaction`: time per 1 KB message with the shipped redaction settings
//! (target: under 20 µs), for a message with identifiers of several kinds and for one with none.

use std::hint::black_box;
use std::path::Path;

use carebridge::redact::{Placeholders, Redactor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn shipped() -> Redactor {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    Redactor::load(&root.join("policies/redaction.toml")).expect("redaction settings")
}

/// Pads `opening` with ordinary symptom text (numbers included: doses, readings, dates of
/// symptoms, which must be left alone) to 1 KB.
fn kilobyte(opening: &str) -> String {
    let ordinary = "I've had a temperature of 38.2 since the 3rd, took 2 x 500mg paracetamol at 9am, \
                    my blood pressure was 135/85 and the cough is worse at night. ";
    let mut message = opening.to_owned();
    while message.len() < 1024 {
        message.push_str(ordinary);
    }
    message.truncate(1024);
    message
}

fn redaction(criterion: &mut Criterion) {
    let redactor = shipped();
    let with_identifiers = kilobyte(
        "Hi, I'm Sarah Jones, born 14/02/1985, NHS number 943 476 5919, call me on 07700 900123 \
         or sarah.jones@example.com, I live at 12 Acacia Avenue, Leeds LS1 4AP. ",
    );
    let without = kilobyte("");
    let mut placeholders = Placeholders::new();
    let redacted = redactor.redact(&with_identifiers, &mut placeholders);
    assert!(redacted.kinds.len() >= 4, "{:?}", redacted.kinds);

    let mut group = criterion.benchmark_group("redaction");
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("1KB message with identifiers", |bench| {
        bench.iter(|| {
            let mut placeholders = Placeholders::new();
            black_box(redactor.redact(black_box(&with_identifiers), &mut placeholders))
        })
    });
    group.bench_function("1KB message without identifiers", |bench| {
        bench.iter(|| {
            let mut placeholders = Placeholders::new();
            black_box(redactor.redact(black_box(&without), &mut placeholders))
        })
    });
    group.finish();
}

criterion_group!(benches, redaction);
criterion_main!(benches);
