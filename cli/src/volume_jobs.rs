//! Backups and restores a running site runs for `cairn volume backup|restore`: each is a job
//! with an id (`POST /v1/volumes/backup?job=true` answers it at once), whose progress
//! (`GET /v1/volumes/jobs/ID`: bytes done of the total, a message, then the report or the
//! error) the command polls to draw the same progress bar it draws on a data dir.
//!
//! A job runs in its own task and records how it ended in the job, so its failure reaches the
//! command that polls it; finished jobs are kept [`KEEP_FINISHED`] for a late poll.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::admin::AdminClient;

/// How long a finished job's outcome stays for a poll.
const KEEP_FINISHED: Duration = Duration::from_secs(600);
/// How often the command asks for progress.
const POLL: Duration = Duration::from_millis(200);

/// A job as `GET /v1/volumes/jobs/ID` shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct JobView {
    /// Its id.
    pub id: String,
    /// `backup` or `restore`.
    pub kind: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Volume bytes done.
    pub position: u64,
    /// Volume bytes in all (0 until known).
    pub length: u64,
    /// What it is doing.
    pub message: String,
    /// The report, once done.
    pub result: Option<Value>,
    /// The error with its causes, once failed.
    pub error: Option<String>,
}

struct Job {
    kind: &'static str,
    progress: ProgressBar,
    outcome: Option<(Result<Value, String>, Instant)>,
}

fn jobs() -> &'static Mutex<HashMap<String, Job>> {
    static JOBS: OnceLock<Mutex<HashMap<String, Job>>> = OnceLock::new();
    JOBS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Starts `work` (given the job's hidden progress bar) as a job of `kind`; returns its id.
pub fn start<F, Fut, T>(kind: &'static str, work: F) -> String
where
    F: FnOnce(ProgressBar) -> Fut,
    Fut: Future<Output = anyhow::Result<T>> + Send + 'static,
    T: Serialize,
{
    let id = format!("{kind}-{:016x}", rand::random::<u64>());
    let progress = ProgressBar::hidden();
    {
        let mut all = jobs().lock().unwrap_or_else(|e| e.into_inner());
        all.retain(|_, j| {
            j.outcome
                .as_ref()
                .is_none_or(|(_, at)| at.elapsed() < KEEP_FINISHED)
        });
        all.insert(
            id.clone(),
            Job {
                kind,
                progress: progress.clone(),
                outcome: None,
            },
        );
    }
    let fut = work(progress);
    let job_id = id.clone();
    tokio::spawn(async move {
        let outcome = match fut.await {
            Ok(r) => Ok(serde_json::to_value(r).unwrap_or(Value::Null)),
            Err(e) => {
                tracing::warn!(job = %job_id, error = %format!("{e:#}"), "volume job failed");
                Err(format!("{e:#}"))
            }
        };
        let mut all = jobs().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(j) = all.get_mut(&job_id) {
            j.outcome = Some((outcome, Instant::now()));
        }
    });
    id
}

/// `GET /v1/volumes/jobs/ID`.
pub fn view(id: &str) -> (StatusCode, Value) {
    let all = jobs().lock().unwrap_or_else(|e| e.into_inner());
    let Some(j) = all.get(id) else {
        return (
            StatusCode::NOT_FOUND,
            serde_json::json!({ "error": format!("no volume job {id}: it ended more than 10 minutes ago, or the site restarted") }),
        );
    };
    let (state, result, error) = match &j.outcome {
        None => ("running", None, None),
        Some((Ok(v), _)) => ("done", Some(v.clone()), None),
        Some((Err(e), _)) => ("failed", None, Some(e.clone())),
    };
    let v = JobView {
        id: id.to_string(),
        kind: j.kind.to_string(),
        state: state.to_string(),
        position: j.progress.position(),
        length: j.progress.length().unwrap_or(0),
        message: j.progress.message(),
        result,
        error,
    };
    (
        StatusCode::OK,
        serde_json::to_value(v).unwrap_or(Value::Null),
    )
}

/// Runs `POST path?job=true` with `body` on the site and follows the job on `pb` until it
/// ends; returns its report.
pub async fn follow<T: serde::de::DeserializeOwned>(
    admin: &AdminClient,
    path: &str,
    body: Value,
    pb: &ProgressBar,
) -> anyhow::Result<T> {
    #[derive(Deserialize)]
    struct Started {
        id: String,
    }
    let started: Started = admin
        .call(Method::POST, &format!("{path}?job=true"), Some(body))
        .await?;
    let status = format!("/v1/volumes/jobs/{}", started.id);
    // Without a terminal the bar is hidden: progress goes to stderr as lines, at most one a
    // second, and one at the end.
    let lines = pb.is_hidden();
    let mut last_line: Option<Instant> = None;
    let kind = path.rsplit('/').next().unwrap_or("job").to_string();
    let line = |v: &JobView| {
        let pct = (v.position * 100).checked_div(v.length).unwrap_or(0);
        eprintln!(
            "{kind}: {} of {} ({pct}%) {}",
            crate::ops::human(v.position),
            crate::ops::human(v.length),
            v.message
        );
    };
    loop {
        let v: JobView = admin.call(Method::GET, &status, None).await.map_err(|e| {
            e.context(format!(
                "lost track of job {} on the site (it may still be running; see the site's log)",
                started.id
            ))
        })?;
        pb.set_length(v.length);
        pb.set_position(v.position);
        pb.set_message(v.message.clone());
        if lines
            && v.state == "running"
            && v.length > 0
            && last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            line(&v);
            last_line = Some(Instant::now());
        }
        match v.state.as_str() {
            "done" => {
                if lines {
                    line(&v);
                }
                let r = v.result.unwrap_or(Value::Null);
                return Ok(serde_json::from_value(r)?);
            }
            "failed" => anyhow::bail!("{}", v.error.unwrap_or_else(|| "the job failed".into())),
            _ => tokio::time::sleep(POLL).await,
        }
    }
}
