//! The diagnosis rig: the checks running over a test's own schema, with or without the
//! pipeline, on the shared server or on a private cluster, and waits on a check's status.

use std::sync::Arc;
use std::time::Duration;

use notifyscope::diagnose::{self, Check, CheckId, DiagnoseConfig};
use notifyscope::pipeline::{Pipeline, PipelineConfig};
use notifyscope::store::embedded::EmbeddedPostgres;
use notifyscope::store::{Database, Identifier};
use notifyscope::trace::{Status, Trace};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{TestSchema, WAIT};

pub struct Rig {
    pub trace: Trace,
    pub checks: watch::Receiver<Arc<diagnose::Report>>,
    pub stop: CancellationToken,
    pub pipeline: Option<Pipeline>,
    /// On the shared server the NOTIFY queue is everybody's: other sessions idle in a
    /// transaction fill it, so a test there does not judge the queue check.
    pub shared_server: bool,
    _diagnosis: JoinHandle<()>,
}

/// Case variants of the channel only: the usual names (`events`, …) are shared by every test
/// on the server and would be traffic of other tests.
fn case_neighbours(channel: &Identifier) -> Vec<Identifier> {
    diagnose::neighbours(channel, &[])
        .into_iter()
        .filter(|n| n.as_str().eq_ignore_ascii_case(channel.as_str()))
        .collect()
}

/// The rig's deadline for a message to reach its next stage, and the backlog age it warns
/// at: short, so that a fault is named within seconds.
pub const DEADLINE: Duration = Duration::from_secs(2);
pub const BACKLOG_AGE: Duration = Duration::from_secs(1);

fn config(channel: &Identifier) -> DiagnoseConfig {
    let mut c = DiagnoseConfig::new(channel.clone());
    c.deadline = DEADLINE;
    c.backlog_age = BACKLOG_AGE;
    c
}

impl Rig {
    /// Diagnosis over `database`; with `pipeline` the whole pipeline runs, without it nothing
    /// listens.
    pub async fn start(database: Database, channel: Identifier, pipeline: bool) -> Rig {
        if pipeline {
            Rig::start_with(database, channel, |_| {}).await
        } else {
            Rig::start_on(database, channel, None).await
        }
    }

    /// Diagnosis over `database` with the whole pipeline, its settings changed by
    /// `configure` first.
    pub async fn start_with(
        database: Database,
        channel: Identifier,
        configure: impl FnOnce(&mut PipelineConfig),
    ) -> Rig {
        let mut pc = PipelineConfig::new(database.clone(), channel.clone());
        pc.watch_channels = case_neighbours(&channel);
        configure(&mut pc);
        Rig::start_on(database, channel, Some(pc)).await
    }

    async fn start_on(
        database: Database,
        channel: Identifier,
        pipeline: Option<PipelineConfig>,
    ) -> Rig {
        database.migrate().await.expect("migrates");
        let trace = Trace::new();
        let events = trace.subscribe();
        let stop = CancellationToken::new();
        let pipeline = if let Some(pc) = pipeline {
            let mut p = Pipeline::start(pc, trace.clone()).await.expect("pipeline");
            p.wait_listening(WAIT).await.expect("listener");
            Some(p)
        } else {
            None
        };
        let mut diagnose_config = config(&channel);
        diagnose_config.role = database.role().map(str::to_owned);
        let (checks, diagnosis) = diagnose::spawn(
            diagnose_config,
            events,
            trace.clone(),
            database.pool(2).expect("pool"),
            true,
            stop.clone(),
        );
        Rig {
            trace,
            checks,
            stop,
            pipeline,
            shared_server: true,
            _diagnosis: diagnosis,
        }
    }

    /// Diagnosis over the test's schema and channel on the shared server.
    pub async fn test(t: &TestSchema, pipeline: bool) -> Rig {
        Rig::start(t.database(), t.channel(), pipeline).await
    }

    /// A private cluster (for what must not touch the shared server: stopping it, filling
    /// its NOTIFY queue) with the whole pipeline on `events`; the cluster is stopped by the
    /// caller.
    pub async fn private_cluster() -> (Rig, EmbeddedPostgres, Database) {
        super::require_server_binaries();
        let pg = EmbeddedPostgres::start(None)
            .await
            .expect("private cluster");
        let channel = Identifier::channel("events").expect("valid");
        let database =
            Database::new(pg.url(), Identifier::schema("public").expect("valid")).expect("url");
        let mut rig = Rig::start(database.clone(), channel, true).await;
        rig.shared_server = false;
        (rig, pg, database)
    }

    pub fn pipeline(&self) -> &Pipeline {
        self.pipeline.as_ref().expect("pipeline running")
    }

    /// Waits until check `id` has a status `pred` accepts.
    pub async fn until(&mut self, id: &str, pred: impl Fn(Status) -> bool) -> Check {
        let found = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(c) = self
                    .checks
                    .borrow_and_update()
                    .checks
                    .iter()
                    .find(|c| c.id == id)
                {
                    if pred(c.status) {
                        return c.clone();
                    }
                }
                self.checks.changed().await.expect("diagnosis running");
            }
        })
        .await;
        match found {
            Ok(c) => c,
            Err(_) => panic!(
                "check {id} never reached the status; checks: {:#?}",
                self.checks.borrow()
            ),
        }
    }

    /// Whether this test may judge check `id`: not the server-wide NOTIFY queue on the
    /// shared server.
    pub fn judges(&self, id: CheckId) -> bool {
        !(self.shared_server && id == CheckId::NotifyQueue)
    }

    /// Every check outside `except` is ok (or not decidable here).
    pub fn others_fine(&self, except: &[&str]) {
        for c in self.checks.borrow().checks.iter() {
            if !except.contains(&c.id.as_str()) && self.judges(c.id) {
                assert!(
                    matches!(c.status, Status::Ok | Status::Unknown),
                    "check {} is {:?}: {} {:?}",
                    c.id,
                    c.status,
                    c.summary,
                    c.evidence
                );
            }
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        if let Some(p) = self.pipeline {
            p.shutdown(Duration::from_secs(5)).await;
        }
    }
}

pub fn failing(s: Status) -> bool {
    s == Status::Fail
}

pub fn warning_or_worse(s: Status) -> bool {
    s >= Status::Warn
}
