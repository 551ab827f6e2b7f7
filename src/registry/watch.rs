//! When to reload: filesystem events on the watched directories (debounced), explicit requests
//! (SIGHUP), and a periodic content check for filesystems that emit no events.
//!
//! Directories are watched, never files: editors replace files by rename and Kubernetes swaps a
//! `..data` symlink, so events about "our" file may never name it. Any event means "dirty"; the
//! reload re-reads the whole directory and the content hash decides whether anything changed.
//! Reloads run on one dedicated thread, away from the request workers.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::Registry;
use crate::metrics::Trigger;

/// Debounce and polling settings.
#[derive(Debug, Clone, Copy)]
pub struct WatchSettings {
    /// Quiet time after the last event before reloading.
    pub debounce: Duration,
    /// The longest events may postpone a reload.
    pub max_wait: Duration,
    /// The periodic content check; zero turns it off.
    pub interval: Duration,
}

enum Event {
    Dirty,
    Reload(Trigger),
    Stop,
}

/// Asks the reload thread for a reload; cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    tx: mpsc::Sender<Event>,
}

impl Reloader {
    pub fn request(&self, trigger: Trigger) {
        let _ = self.tx.send(Event::Reload(trigger));
    }

    /// Ends the reload thread and its watcher.
    pub fn stop(&self) {
        let _ = self.tx.send(Event::Stop);
    }
}

/// Starts watching `dirs` and the reload thread (which runs until `Reloader::stop`).
pub fn spawn(registry: Arc<Registry>, dirs: Vec<PathBuf>, settings: WatchSettings) -> Reloader {
    let (tx, rx) = mpsc::channel();
    let events = tx.clone();
    let watcher = notify::recommended_watcher(move |result: notify::Result<notify::Event>| match result {
        Ok(event) if is_change(&event.kind) => {
            let _ = events.send(Event::Dirty);
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(%error, "filesystem watch error; the periodic check still runs"),
    });
    let watcher = match watcher {
        Ok(mut watcher) => {
            for dir in &dirs {
                if let Err(error) = watcher.watch(dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), %error, "cannot watch; the periodic check still runs");
                }
            }
            Some(watcher)
        }
        Err(error) => {
            tracing::warn!(%error, "cannot start the filesystem watcher; the periodic check still runs");
            None
        }
    };
    std::thread::Builder::new()
        .name("postgate-reload".into())
        .spawn(move || {
            let _watcher = watcher;
            run(&registry, &rx, settings);
        })
        .expect("spawning the reload thread");
    Reloader { tx }
}

/// Reading files produces access events; only changes count.
fn is_change(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

fn run(registry: &Registry, rx: &mpsc::Receiver<Event>, settings: WatchSettings) {
    let periodic = (!settings.interval.is_zero()).then_some(settings.interval);
    let mut next_check = periodic.map(|i| Instant::now() + i);
    loop {
        let received = match next_check {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match received {
            Ok(Event::Stop) => return,
            Ok(Event::Reload(trigger)) => {
                registry.reload(trigger);
            }
            Ok(Event::Dirty) => {
                let mut requested = None;
                let first = Instant::now();
                let mut last = first;
                loop {
                    let deadline = (last + settings.debounce).min(first + settings.max_wait);
                    match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                        Ok(Event::Dirty) => last = Instant::now(),
                        Ok(Event::Reload(trigger)) => requested = Some(trigger),
                        Ok(Event::Stop) => return,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                registry.reload(requested.unwrap_or(Trigger::Watch));
            }
            Err(RecvTimeoutError::Timeout) => {
                registry.reload(Trigger::Periodic);
                next_check = periodic.map(|i| Instant::now() + i);
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}
