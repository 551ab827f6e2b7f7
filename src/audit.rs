//! The audit log: one JSON line per grant and per `complete` outcome, to its own sink (a file,
//! appended, or stdout; the servers' log is on stderr), naming who was granted what — app, end
//! user, profile and its file's digest, method, bucket, key or key prefix, size bounds, expiry,
//! upload, client address — and never a signature, policy, token or secret (the records below
//! have no field that could hold one). Each line is one `write` of the whole line, unbuffered;
//! with `fail_closed`, a grant whose line was not written is refused.

use std::io::Write;

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::metrics::Metrics;

/// Where lines go.
#[derive(Debug)]
enum Sink {
    Stdout,
    /// The file, and its path (reopened after a rotation).
    File(std::fs::File, String),
}

fn open_append(path: &str) -> Result<std::fs::File, String> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| format!("audit.output: cannot open the file for appending: {}", e.kind()))
}

/// The audit log.
pub struct Audit {
    sink: Mutex<Sink>,
    fail_closed: bool,
    metrics: Arc<Metrics>,
}

/// A line was not written (only answered when `fail_closed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the audit log cannot be written ({0})")]
pub struct Unwritten(pub String);

/// One grant.
#[derive(Debug, Clone, Serialize)]
pub struct GrantRecord<'a> {
    pub app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<&'a str>,
    pub profile: &'a str,
    /// SHA-256 of the profile's file, hex.
    pub profile_digest: String,
    /// `post`, `put` or `multipart`.
    pub method: &'a str,
    pub store: &'a str,
    pub bucket: &'a str,
    /// The key, or its prefix when the store fills in `${filename}` (POST).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<&'a str>,
    pub size_min: u64,
    pub size_max: u64,
    pub expires_at: String,
    /// The upload's marker (the events' `upload_id`).
    pub upload_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart_upload_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'a str>,
}

/// One `complete` outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CompleteRecord<'a> {
    pub app: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<&'a str>,
    pub profile: &'a str,
    pub method: &'a str,
    pub store: &'a str,
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
    /// `verified`, or the failure's code.
    pub outcome: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<&'a str>,
}

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    ts: String,
    event: &'a str,
    #[serde(flatten)]
    record: &'a T,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("fail_closed", &self.fail_closed)
            .finish_non_exhaustive()
    }
}

impl Audit {
    /// Opens `output` (`stdout`, or a file appended to, made if missing).
    pub fn open(output: &str, fail_closed: bool, metrics: Arc<Metrics>) -> Result<Audit, String> {
        let sink = if output == "stdout" {
            Sink::Stdout
        } else {
            Sink::File(open_append(output)?, output.to_owned())
        };
        Ok(Audit {
            sink: Mutex::new(sink),
            fail_closed,
            metrics,
        })
    }

    pub fn fail_closed(&self) -> bool {
        self.fail_closed
    }

    /// Opens the file again at its path (SIGHUP, after `logrotate` moved it); the old one is
    /// kept when the path cannot be opened.
    pub fn reopen(&self) {
        if let Sink::File(file, path) = &mut *self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            match open_append(path) {
                Ok(reopened) => *file = reopened,
                Err(error) => {
                    tracing::error!(%error, "the audit log was not reopened; lines go to the file open before")
                }
            }
        }
    }

    /// Writes a grant's line.
    pub fn grant(&self, record: &GrantRecord<'_>) -> Result<(), Unwritten> {
        self.write("grant", record)
    }

    /// Writes a `complete` outcome's line.
    pub fn complete(&self, record: &CompleteRecord<'_>) -> Result<(), Unwritten> {
        self.write("complete", record)
    }

    fn write<T: Serialize>(&self, event: &str, record: &T) -> Result<(), Unwritten> {
        let line = Line {
            ts: crate::text::format_rfc3339(time::OffsetDateTime::now_utc()),
            event,
            record,
        };
        let mut bytes = serde_json::to_vec(&line).expect("audit lines serialize");
        bytes.push(b'\n');
        let written = match &mut *self.sink.lock().unwrap_or_else(|e| e.into_inner()) {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&bytes).and_then(|()| out.flush())
            }
            Sink::File(file, _) => file.write_all(&bytes),
        };
        self.metrics.audit_line(written.is_ok());
        match written {
            Ok(()) => Ok(()),
            Err(error) => {
                tracing::error!(kind = ?error.kind(), fail_closed = self.fail_closed, "an audit line was not written");
                if self.fail_closed {
                    Err(Unwritten(format!("{:?}", error.kind())))
                } else {
                    Ok(())
                }
            }
        }
    }
}
