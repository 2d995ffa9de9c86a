//! The filter runs on every message the bot receives, before anything is published.
//!
//! `cargo bench --bench filter`

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use notifyscope::pipeline::filter::{suggests_missing_content_intent, Filter, FilterConfig};
use notifyscope::pipeline::synthetic::{self, SimKind};

fn check(c: &mut Criterion) {
    let open = Filter::new(FilterConfig::default());
    open.set_bot_user_id(synthetic::SIM_BOT);
    let allow_list = Filter::new(FilterConfig {
        allow_channels: (0..64)
            .map(|i| notifyscope::contract::Snowflake(300_000_000_000_000_000 + i))
            .chain([synthetic::SIM_CHANNEL])
            .collect(),
        ..FilterConfig::default()
    });
    allow_list.set_bot_user_id(synthetic::SIM_BOT);

    let mut group = c.benchmark_group("filter");
    for kind in [
        SimKind::Message,
        SimKind::Own,
        SimKind::Bot,
        SimKind::Webhook,
        SimKind::Empty,
        SimKind::System,
    ] {
        let msg = synthetic::incoming(kind, synthetic::next_snowflake(), synthetic::SIM_BOT, 0);
        group.bench_function(format!("check/{}", kind.as_str()), |b| {
            b.iter(|| open.check(black_box(&msg)))
        });
    }
    let msg = synthetic::message("an ordinary message");
    group.bench_function("check/allow_list_of_65", |b| {
        b.iter(|| allow_list.check(black_box(&msg)))
    });
    let padded = synthetic::message(format!("{}text", " ".repeat(2000)));
    group.bench_function("check/leading_whitespace_2k", |b| {
        b.iter(|| open.check(black_box(&padded)))
    });
    group.bench_function("suggests_missing_content_intent", |b| {
        b.iter(|| suggests_missing_content_intent(black_box(&msg)))
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
