//! `notifyscope doctor`: a one-shot diagnosis for ssh sessions and CI. One line per check
//! (✓ ! ✗ with the fix), or one JSON document; exit 0 when healthy, 1 when a check fails, 2
//! when it could not run. The examination and every judgement are the diagnosis's
//! ([`notifyscope_diagnose::doctor`]); this reads the arguments, prints and exits.

use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;

use crate::cli::{DoctorArgs, SharedArgs};
use crate::commands::wiring::locate_pipeline;
use notifyscope_diagnose::doctor::{self, DoctorOptions, DoctorReport};
use notifyscope_diagnose::Check;
use notifyscope_model::check::CheckId;
use notifyscope_model::present::counted;
use notifyscope_model::trace::Status;
use notifyscope_store::error_chain;
use notifyscope_store::examine::Instance;

/// The document of `--json`.
#[derive(Serialize)]
struct Report<'a> {
    healthy: bool,
    database: &'a str,
    channel: &'a str,
    checks: &'a [Check],
    instances: &'a [Instance],
}

/// Exit 2 when the doctor could not run at all (bad arguments, no database URL).
pub async fn run(shared: SharedArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    match examine(shared, args).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!(
                "notifyscope: doctor could not run: {}",
                error_chain(e.as_ref())
            );
            Ok(ExitCode::from(2))
        }
    }
}

async fn examine(shared: SharedArgs, args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let target = locate_pipeline(&shared, "doctor", " of the pipeline to check")?;
    let channel = target.channel;
    // With a direct URL, the pooler on --database-url is examined too.
    let database = target.pooled.unwrap_or(target.database);
    let options = DoctorOptions {
        timeout: Duration::from_secs(args.timeout.max(1)),
        token: std::env::var(&args.discord_token_env).ok(),
        token_env: args.discord_token_env.clone(),
        discord_api_url: args.discord_api_url.clone(),
    };
    // Every step has its own limit; this one holds when a connection went silent under a
    // query (a NAT gateway, a load balancer), where the server's own timeouts cannot help.
    let limit = options.timeout + 2 * database.deadline();
    let report =
        match tokio::time::timeout(limit, doctor::examine(&database, &channel, &options)).await {
            Ok(report) => report,
            Err(_) => silent(&database, limit),
        };
    if args.json {
        let document = Report {
            // Healthy exactly when the exit code is 0: nothing failed, nothing unjudged.
            healthy: report.healthy(),
            database: database.redacted(),
            channel: channel.as_str(),
            checks: &report.checks,
            instances: &report.instances,
        };
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        for line in lines(&report) {
            println!("{line}");
        }
    }
    Ok(exit_code(&report))
}

/// What doctor says when the database went silent under it: no answer, no reset.
fn silent(database: &notifyscope_store::Database, waited: Duration) -> DoctorReport {
    DoctorReport {
        checks: vec![Check {
            id: CheckId::Database,
            name: CheckId::Database.name().to_owned(),
            status: Status::Fail,
            summary: format!(
                "the connection to {} went silent: no answer within {:.0} s, and no error",
                database.address(),
                waited.as_secs_f64()
            ),
            evidence: Vec::new(),
            hint: "something between here and the server drops connections without a reset \
                   (a NAT gateway, a load balancer's idle timeout, a proxy): look there, and \
                   set keepalives_idle below its timeout"
                .to_owned(),
            since: chrono::Utc::now(),
            message_ids: Vec::new(),
            target: None,
        }],
        instances: Vec::new(),
        connected: false,
    }
}

/// 2 when doctor could not connect; 1 when a check failed; else 2 when a check could not
/// be judged (a query doctor needed was refused); 0 when all is well.
fn exit_code(report: &DoctorReport) -> ExitCode {
    let failed = |status| report.checks.iter().any(|c| c.status == status);
    if !report.connected {
        ExitCode::from(2)
    } else if failed(Status::Fail) {
        ExitCode::from(1)
    } else if failed(Status::Unknown) {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

/// One line per check, then the instances of notifyscope seen.
fn lines(report: &DoctorReport) -> Vec<String> {
    let mut lines: Vec<String> = report
        .checks
        .iter()
        .map(|c| {
            if c.status == Status::Ok || c.hint.is_empty() {
                format!("{} {}: {}", c.status.symbol(), c.name, c.summary)
            } else {
                format!(
                    "{} {}: {} — {}",
                    c.status.symbol(),
                    c.name,
                    c.summary,
                    c.hint
                )
            }
        })
        .collect();
    if !report.instances.is_empty() {
        // One line like the checks', so that every line of the report reads the same way.
        let listed: Vec<String> = report.instances.iter().map(instance_line).collect();
        lines.push(format!(
            "{} instances of notifyscope on this database: {}",
            Status::Ok.symbol(),
            listed.join("; ")
        ));
    }
    lines
}

fn uptime(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

fn instance_line(i: &Instance) -> String {
    let name = if i.instance.is_empty() {
        "without a shard range"
    } else {
        &i.instance
    };
    let listener = match i.listener_pids.as_slice() {
        [] => "no listener".to_owned(),
        pids => format!(
            "listener pid {}",
            pids.iter()
                .map(i32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    format!(
        "{name}: {listener}, {} from {}, up {}",
        counted(usize::try_from(i.sessions).unwrap_or(0), "session"),
        i.clients.join(", "),
        uptime(i.up_s)
    )
}
