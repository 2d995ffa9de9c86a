//! `notifyscope selftest`: the end-to-end check of a running pipeline. One message goes through
//! the running instance's bot path, one is published straight to the outbox; both must land in
//! `discord_messages`. Each step prints one line; the exit code says whether all passed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::cli::SharedArgs;
use crate::commands::wiring::{locate_pipeline, TargetPipeline};
use notifyscope_model::contract::Snowflake;
use notifyscope_model::trace::Trace;
use notifyscope_pipeline::control;
use notifyscope_pipeline::publish;
use notifyscope_pipeline::synthetic::{self, SimKind};
use notifyscope_store::examine::Examiner;
use notifyscope_store::instance::ControlSecret;
use notifyscope_store::{error_chain, Database, Identifier};

struct Report {
    failed: bool,
}

impl Report {
    fn pass(&self, text: impl AsRef<str>) {
        println!("✓ {}", text.as_ref());
    }

    fn fail(&mut self, text: impl AsRef<str>) {
        self.failed = true;
        println!("✗ {}", text.as_ref());
    }
}

pub async fn run(shared: SharedArgs, timeout: Duration) -> anyhow::Result<ExitCode> {
    let TargetPipeline {
        channel,
        database,
        instance,
        ..
    } = locate_pipeline(&shared, "selftest", " of the pipeline to check")?;
    let secret = instance.map(|i| i.secret);
    let schema = database.schema().clone();
    let mut report = Report { failed: false };

    let examiner = match Examiner::connect(&database).await {
        Ok(examiner) => examiner,
        Err(e) => {
            // The error names the server ("cannot connect to host=…").
            let class = e.class();
            println!(
                "✗ database: {}: {} — {}",
                class.describe(),
                error_chain(&e),
                class.fix(database.role(), None)
            );
            return Ok(ExitCode::from(2));
        }
    };
    report.pass(format!("database {} answers", database.redacted()));
    if !examiner.tables().await?.pipeline() {
        report.fail(format!(
            "schema {schema} has no event_outbox/discord_messages: is notifyscope running with --schema {schema}?"
        ));
        return Ok(ExitCode::from(1));
    }
    report.pass(format!("schema {schema} has the pipeline's tables"));

    let mut expected: Vec<(Snowflake, &str)> = Vec::new();
    if let Some(id) =
        through_bot_path(&mut report, &database, &channel, secret.as_ref(), timeout).await
    {
        expected.push((id, "bot path"));
    }
    if let Some(id) = straight_to_outbox(&mut report, &database, &channel).await? {
        expected.push((id, "direct"));
    }
    let ids: Vec<Snowflake> = expected.iter().map(|(id, _)| *id).collect();
    let found = wait_for_rows(&examiner, &ids, timeout).await?;
    for (id, path) in &expected {
        if found.contains(id) {
            report.pass(format!("{path}: message {id} is in discord_messages"));
            continue;
        }
        let why = why_missing(&examiner, *id, &channel).await?;
        report.fail(format!(
            "{path}: message {id} not in discord_messages after {} s: {why}",
            timeout.as_secs()
        ));
    }
    Ok(if report.failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// One message through the running instance's bot path; its id when it was published.
async fn through_bot_path(
    report: &mut Report,
    database: &Database,
    channel: &Identifier,
    secret: Option<&ControlSecret>,
    timeout: Duration,
) -> Option<Snowflake> {
    match control::send_via_bot(database, channel, SimKind::Message, secret, timeout).await {
        Ok((ids, reply)) => match ids.first() {
            Some(id) if reply.published.contains(id) => {
                report.pass(format!(
                    "bot path: message {id} published by the running instance"
                ));
                return Some(*id);
            }
            Some(id) => report.fail(format!(
                "bot path: message {id} was not published: {reply:?}"
            )),
            None => report.fail("bot path: no message id"),
        },
        Err(e) => report.fail(format!("bot path: {e}")),
    }
    None
}

/// One message published straight to the outbox; its id when it was published.
async fn straight_to_outbox(
    report: &mut Report,
    database: &Database,
    channel: &Identifier,
) -> anyhow::Result<Option<Snowflake>> {
    let stop = CancellationToken::new();
    let (publisher, task) = publish::spawn_publisher(
        database.pool(1)?,
        channel.clone(),
        Trace::new(),
        1,
        stop.clone(),
    );
    let direct =
        synthetic::message("notifyscope selftest: published straight to the outbox").to_record();
    let direct_id = direct.message_id;
    let published = match publisher.publish(direct).await {
        Ok(receipt) => {
            report.pass(format!(
                "direct: message {direct_id} published to event_outbox (outbox id {}) with NOTIFY on {channel}",
                receipt.outbox_id
            ));
            Some(direct_id)
        }
        Err(e) => {
            report.fail(format!("direct: publishing failed: {e}"));
            None
        }
    };
    stop.cancel();
    let _ = task.await;
    Ok(published)
}

/// The `ids` found in `discord_messages` within `timeout`.
async fn wait_for_rows(
    examiner: &Examiner,
    ids: &[Snowflake],
    timeout: Duration,
) -> anyhow::Result<Vec<Snowflake>> {
    let started = Instant::now();
    let mut found = Vec::new();
    while found.len() < ids.len() && started.elapsed() < timeout {
        found = examiner.ingested(ids).await?;
        if found.len() < ids.len() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(found)
}

/// Where a message that never reached `discord_messages` stopped, from its outbox row.
async fn why_missing(
    examiner: &Examiner,
    id: Snowflake,
    channel: &Identifier,
) -> anyhow::Result<String> {
    Ok(match examiner.outbox_trail(id).await? {
        None => "it never reached event_outbox".to_owned(),
        Some(row) if row.processed => format!(
            "outbox row {} is marked processed but the row is missing",
            row.id
        ),
        Some(row) => format!(
            "outbox row {} is still unprocessed (attempts {}, last error {:?}): no listener \
             ingests channel {channel}",
            row.id,
            row.attempts,
            row.last_error.unwrap_or_default()
        ),
    })
}
