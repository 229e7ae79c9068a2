//! Speed of the per-message scan and the per-chunk guard against the full shipped policy set.
//!
//! `cargo bench --bench policy`: criterion reports time per 1 KB message (target: well under
//! 50 µs on one core) with throughput in MB/s, the time per message when every message is a
//! different one (the evaluation sets' messages, and 1 KB runs of them), once more with the CPU
//! caches flushed before each (as in a busy server), and the mean time per streamed chunk in the
//! guard.
//! After criterion, each `Guard::push` of many replies, chunkings and session flags is timed on
//! its own, and the p50, p99 and largest time per chunk are printed (target: p99 under 50 µs).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use carebridge::guard::Guard;
use carebridge::policy::{PolicySet, Severity};
use carebridge::prompts::{Prompts, Region};
use criterion::{Criterion, Throughput, criterion_group};

/// The shipped set, or the one in `CAREBRIDGE_BENCH_POLICIES` to price a change to the policy
/// files against the same code (for example an older commit's `policies/`).
fn shipped() -> PolicySet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prompts = Prompts::load(&root.join("prompts"), Region::Uk).expect("prompts");
    let policies = std::env::var_os("CAREBRIDGE_BENCH_POLICIES")
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| root.join("policies"), std::path::PathBuf::from);
    PolicySet::load(&policies, &prompts).expect("policies")
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
    // An emoji or a degree sign once made every pattern fall back to a slow search.
    let with_symbols = format!("{} 38.5°C 😷", &message[..message.len() - 12]);
    group.bench_function(
        "1KB message with an emoji and °C, full shipped set",
        |bench| bench.iter(|| black_box(set.evaluate(black_box(&with_symbols)))),
    );
    // The share of the scan that is normalisation, which does not grow with the policy files.
    group.bench_function("1KB message, normalisation only", |bench| {
        bench.iter(|| black_box(set.normalizer().normalize(black_box(&message))))
    });
    group.finish();

    // One message scanned over and over keeps every automaton's states warm; a server sees each
    // message once. These go through many different messages in turn.
    let lines = eval_lines();
    let kilobytes = kilobyte_messages(&lines);
    let mut group = criterion.benchmark_group("policy_scan_distinct");
    for (name, messages) in [
        ("eval messages, each different (time per message)", &lines),
        (
            "1KB messages, each different (time per message)",
            &kilobytes,
        ),
    ] {
        let mut next = 0;
        group.bench_function(name, |bench| {
            bench.iter(|| {
                next = (next + 1) % messages.len();
                black_box(set.evaluate(black_box(&messages[next])))
            })
        });
    }
    // As in a busy server, where other work has pushed the scan's tables out of the CPU's
    // caches by the time the next message comes: only the evaluation is timed.
    group.sample_size(20);
    let mut flush = vec![0u8; 32 * 1024 * 1024];
    let mut next = 0;
    group.bench_function(
        "eval messages, each different, caches flushed between (time per message)",
        |bench| {
            bench.iter_custom(|iterations| {
                let mut total = Duration::ZERO;
                for _ in 0..iterations {
                    touch(&mut flush);
                    next = (next + 1) % lines.len();
                    let started = Instant::now();
                    black_box(set.evaluate(black_box(&lines[next])));
                    total += started.elapsed();
                }
                total
            })
        },
    );
    group.finish();
}

/// The patient messages of the labelled evaluation sets (`policies/eval/*.tsv`, second column).
fn eval_lines() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/eval");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("policies/eval")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "tsv"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let text = std::fs::read_to_string(path).expect("eval file");
            text.lines()
                .filter_map(|line| line.split('\t').nth(1).map(str::to_owned))
                .filter(|message| !message.is_empty())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// About 1 KB each: eval messages joined, each run starting at a different one.
fn kilobyte_messages(lines: &[String]) -> Vec<String> {
    (0..500)
        .map(|start| {
            let mut message = String::new();
            let mut index = start * 7;
            while message.len() < 1024 {
                message.push_str(&lines[index % lines.len()]);
                message.push_str(". ");
                index += 1;
            }
            message
        })
        .collect()
}

/// Writes to every cache line of `buffer`, evicting what the scan left in the CPU's caches.
fn touch(buffer: &mut [u8]) {
    for line in buffer.chunks_mut(64) {
        line[0] = line[0].wrapping_add(1);
    }
    black_box(&buffer);
}

/// Replies a model might stream: plain advice, advice under an emergency flag, and replies the
/// output rules change (reassurance, a dosing instruction, a clinician claim).
const REPLIES: [&str; 5] = [
    "Thank you for telling me. A sore throat with a runny nose is usually a viral infection that \
     gets better on its own within a week. Rest, drink plenty of fluids and simple pain relief \
     can help. If you find it hard to swallow or breathe, get help straight away. ",
    "I'm sorry you are going through this. Please call 999 now or ask someone to call for you. \
     While you wait, sit down, stay still and unlock the door so the paramedics can get in. If \
     you have been prescribed a GTN spray, use it as your doctor told you. ",
    "It sounds like it is probably just a virus, and it should pass on its own in a few days. \
     Rest and see how you feel tomorrow. ",
    "For the pain, you should take 2 tablets of tramadol every four hours, and as your doctor I \
     would also suggest resting. ",
    "Yes, I am a nurse and I have seen this many times. It is definitely a migraine, nothing \
     more. Keep the room dark and drink water. ",
];

/// `reply` as a provider streams it: each word with the space before it.
fn word_chunks(reply: &str) -> Vec<String> {
    let mut chunks: Vec<String> = Vec::new();
    for (index, word) in reply.split(' ').enumerate() {
        chunks.push(if index == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        });
    }
    chunks
}

fn char_chunks(reply: &str, size: usize) -> Vec<String> {
    reply
        .chars()
        .collect::<Vec<_>>()
        .chunks(size)
        .map(|piece| piece.iter().collect())
        .collect()
}

fn guard(criterion: &mut Criterion) {
    let set = shipped();
    let reply = REPLIES[0].repeat(3);
    let mut group = criterion.benchmark_group("guard");
    for (name, chunks) in [
        (
            "whole reply in 7-character chunks (time / chunk = time / elements)",
            char_chunks(&reply, 7),
        ),
        (
            "whole reply in word chunks (time / chunk = time / elements)",
            word_chunks(&reply),
        ),
    ] {
        group.throughput(Throughput::Elements(chunks.len() as u64));
        group.bench_function(name, |bench| {
            bench.iter(|| {
                let mut guard = Guard::new(set.output_rules(), Severity::Urgent);
                for chunk in &chunks {
                    black_box(guard.push(chunk));
                }
                black_box(guard.finish())
            })
        });
    }
    group.finish();
}

/// Times every `Guard::push` on its own, over every reply, chunking and flag, many times over.
fn guard_chunk_percentiles() {
    let set = shipped();
    let mut times: Vec<Duration> = Vec::new();
    let chunkings: Vec<Vec<String>> = REPLIES
        .iter()
        .flat_map(|reply| {
            [
                word_chunks(reply),
                char_chunks(reply, 1),
                char_chunks(reply, 7),
                char_chunks(reply, 40),
            ]
        })
        .collect();
    for _ in 0..200 {
        for chunks in &chunkings {
            for flag in [Severity::Routine, Severity::Urgent, Severity::Emergency] {
                let mut guard = Guard::new(set.output_rules(), flag);
                for chunk in chunks {
                    let started = Instant::now();
                    let step = guard.push(black_box(chunk));
                    times.push(started.elapsed());
                    if black_box(step).replaced.is_some() {
                        break;
                    }
                }
                black_box(guard.finish());
            }
        }
    }
    times.sort_unstable();
    let at = |quantile: f64| {
        let index = ((times.len() as f64 * quantile) as usize).min(times.len() - 1);
        times[index]
    };
    println!(
        "guard/each push on its own: {} chunks, p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs (target: p99 under 50 µs)",
        times.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
        at(0.999).as_secs_f64() * 1e6,
        at(1.0).as_secs_f64() * 1e6,
    );
}

criterion_group!(benches, scan, guard);

fn main() {
    benches();
    guard_chunk_percentiles();
    Criterion::default().configure_from_args().final_summary();
}
