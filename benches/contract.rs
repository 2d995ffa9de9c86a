//! The payload contract's hot functions: every published event is encoded once or twice,
//! and every notification and claimed outbox row is decoded and validated.
//!
//! `cargo bench --bench contract`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use notifyscope::contract::{self, Envelope, EventType, Snowflake};
use notifyscope::pipeline::synthetic;

fn envelope(content: String) -> Envelope {
    let mut envelope = Envelope::new(synthetic::message(content).to_record());
    envelope.outbox_id = Some(123_456);
    envelope
}

fn sizes() -> Vec<(&'static str, Envelope)> {
    vec![
        (
            "short",
            envelope("benchmark message 1234 of 50000".to_owned()),
        ),
        ("4k_multibyte", envelope(synthetic::long_text(4000))),
    ]
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (name, env) in sizes() {
        group.throughput(Throughput::Bytes(env.to_json().len() as u64));
        group.bench_with_input(
            BenchmarkId::new("envelope_to_json", name),
            &env,
            |b, env| b.iter(|| black_box(env).to_json()),
        );
    }
    group.bench_function("reference_payload", |b| {
        b.iter(|| {
            contract::reference_payload(
                black_box(123_456),
                EventType::MessageCreated,
                black_box(Snowflake(1_199_000_000_000_000_001)),
            )
        })
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, env) in sizes() {
        let json = env.to_json();
        group.throughput(Throughput::Bytes(json.len() as u64));
        group.bench_with_input(BenchmarkId::new("parse_notify", name), &json, |b, json| {
            b.iter(|| contract::parse_notify(black_box(json)))
        });
        group.bench_with_input(
            BenchmarkId::new("envelope_from_json", name),
            &json,
            |b, json| b.iter(|| Envelope::from_json(black_box(json))),
        );
    }
    let reference = contract::reference_payload(
        123_456,
        EventType::MessageCreated,
        Snowflake(1_199_000_000_000_000_001),
    );
    group.bench_function("parse_notify/reference", |b| {
        b.iter(|| contract::parse_notify(black_box(&reference)))
    });
    let broken = r#"{"v":1,"event_type":"discord.message_created","event_id":"not-a-uuid"}"#;
    group.bench_function("parse_notify/rejected", |b| {
        b.iter(|| contract::parse_notify(black_box(broken)))
    });
    group.finish();
}

fn validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    for (name, env) in sizes() {
        group.bench_with_input(
            BenchmarkId::new("message_record", name),
            &env.message,
            |b, record| b.iter(|| black_box(record).validate()),
        );
    }
    group.finish();
}

criterion_group!(benches, encode, decode, validate);
criterion_main!(benches);
