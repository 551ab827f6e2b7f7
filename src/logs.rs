//! The servers' log: text or JSON lines on stderr, written by a thread of its own.
//!
//! A request formats its line and appends it to a shared buffer (one uncontended lock, no
//! syscall, no wake-up). A writer thread swaps the buffer out every `FLUSH_INTERVAL` (sooner
//! once it holds `FLUSH_EARLY` bytes) and writes it to stderr in one call. So under load a
//! request never waits for the pipe, its reader or another worker's write, and the reader is
//! woken a few dozen times a second rather than once a line. When the reader falls so far
//! behind that `MAX_BUFFERED` bytes wait, lines are dropped and counted
//! (`postgate_log_lines_dropped_total`) rather than stalling uploads. Dropping the guard that
//! `init` returns writes what is left.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::text::write_json_string_body;

/// How long a line waits at most before it is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);

/// Buffered bytes that wake the writer before its interval.
const FLUSH_EARLY: usize = 256 * 1024;

/// Buffered bytes beyond which lines are dropped: about 100,000 access-log lines, seconds of a
/// stalled reader at full load.
pub const MAX_BUFFERED: usize = 32 * 1024 * 1024;

static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();

/// Lines dropped so far because the buffer was full (0 before `init`).
pub fn dropped_lines() -> u64 {
    SHARED.get().map_or(0, |shared| shared.dropped.load(Ordering::Relaxed))
}

/// What the request threads and the writer thread share.
struct Shared {
    pending: Mutex<Vec<u8>>,
    dropped: AtomicU64,
    stop: AtomicBool,
    writer: OnceLock<std::thread::Thread>,
}

impl Shared {
    fn push(&self, line: &[u8]) {
        let wake = {
            let mut pending = self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if pending.len() + line.len() > MAX_BUFFERED {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let before = pending.len();
            pending.extend_from_slice(line);
            before < FLUSH_EARLY && pending.len() >= FLUSH_EARLY
        };
        if wake && let Some(thread) = self.writer.get() {
            thread.unpark();
        }
    }

    /// Takes what is pending (leaving `spare`'s allocation in its place) and writes it.
    fn flush(&self, spare: &mut Vec<u8>, out: &mut impl Write) {
        spare.clear();
        std::mem::swap(
            &mut *self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
            spare,
        );
        if !spare.is_empty() {
            // Nowhere to report a failed log write; the next lines are tried again.
            let _ = out.write_all(spare);
            let _ = out.flush();
        }
    }
}

/// One request's handle on the shared buffer: tracing formats a whole line, then writes it
/// with one `write_all`, so each write is appended whole.
pub struct LineWriter<'a>(&'a Shared);

impl Write for LineWriter<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Hands each event a `LineWriter`.
#[derive(Clone)]
pub struct Lines(Arc<Shared>);

impl<'a> MakeWriter<'a> for Lines {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter(&self.0)
    }
}

/// How long exit waits for the last lines to be written (a reader that stopped reading must
/// not keep the process alive).
const LAST_WRITE: Duration = Duration::from_secs(2);

/// Keeps the writer thread; dropping it writes what is still buffered (waiting at most
/// `LAST_WRITE`) and stops the thread.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::Thread>,
    done: std::sync::mpsc::Receiver<()>,
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.unpark();
            let _ = self.done.recv_timeout(LAST_WRITE);
        }
    }
}

/// Starts the writer thread over `out`.
fn start(out: impl Write + Send + 'static) -> (Lines, LogGuard) {
    let shared = Arc::new(Shared {
        pending: Mutex::new(Vec::with_capacity(FLUSH_EARLY * 2)),
        dropped: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        writer: OnceLock::new(),
    });
    let writer = shared.clone();
    let (finished, done) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("postgate-log".into())
        .spawn(move || {
            let mut out = out;
            let mut spare = Vec::with_capacity(FLUSH_EARLY * 2);
            loop {
                let stopping = writer.stop.load(Ordering::Acquire);
                writer.flush(&mut spare, &mut out);
                if stopping {
                    let _ = finished.send(());
                    return;
                }
                std::thread::park_timeout(FLUSH_INTERVAL);
            }
        })
        .expect("the log writer thread starts");
    let _ = shared.writer.set(thread.thread().clone());
    (
        Lines(shared.clone()),
        LogGuard {
            shared,
            thread: Some(thread.thread().clone()),
            done,
        },
    )
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), JSON lines when `json`,
/// colour codes only when stderr is a terminal. Keep the guard until exit.
pub fn init(json: bool) -> LogGuard {
    let ansi = std::io::stderr().is_terminal();
    let (lines, guard) = start(std::io::stderr());
    let _ = SHARED.set(guard.shared.clone());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(lines);
    if json {
        builder.event_format(JsonLines).fmt_fields(JsonFields::new()).init();
    } else {
        builder.init();
    }
    guard
}

/// One JSON object per line, in the shape of `tracing-subscriber`'s JSON format:
/// `{"timestamp":…,"level":…,"fields":{"message":…,…},"target":…,"spans":[…]}`, written
/// straight into the line's buffer (its escaper is the one the policy documents use) with the
/// timestamp's date and time formatted once a second.
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut out: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let normalized = event.normalized_metadata();
        let metadata = normalized.as_ref().unwrap_or_else(|| event.metadata());
        out.write_str("{\"timestamp\":\"")?;
        write_timestamp(&mut out, SystemTime::now())?;
        out.write_str("\",\"level\":\"")?;
        out.write_str(metadata.level().as_str())?;
        out.write_str("\",\"fields\":{")?;
        let mut fields = JsonFieldsVisitor {
            out: &mut out,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        out.write_str("},\"target\":\"")?;
        write_json_string_body(&mut out, metadata.target())?;
        out.write_char('"')?;
        if let Some(scope) = ctx.event_scope() {
            out.write_str(",\"spans\":[")?;
            for (i, span) in scope.from_root().enumerate() {
                if i > 0 {
                    out.write_char(',')?;
                }
                out.write_str("{\"name\":\"")?;
                write_json_string_body(&mut out, span.name())?;
                out.write_char('"')?;
                let extensions = span.extensions();
                // The span's own fields, as `N` (JSON) recorded them: `{…}` or empty.
                if let Some(recorded) = extensions.get::<FormattedFields<N>>() {
                    let inner = recorded.fields.trim();
                    if let Some(members) = inner.strip_prefix('{').and_then(|m| m.strip_suffix('}'))
                        && !members.trim().is_empty()
                    {
                        out.write_char(',')?;
                        out.write_str(members)?;
                    }
                }
                out.write_char('}')?;
            }
            out.write_char(']')?;
        }
        out.write_str("}\n")
    }
}

/// Writes `2026-12-01T07:05:43.123456Z` (UTC, microseconds); the part up to the seconds is
/// kept per thread and formatted again only when the second changes.
fn write_timestamp(out: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    thread_local! {
        static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let since = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let seconds = since.as_secs();
    SECOND.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != seconds {
            let at =
                time::OffsetDateTime::from_unix_timestamp(seconds as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            cached.1.clear();
            let _ = write!(
                cached.1,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.",
                at.year(),
                u8::from(at.month()),
                at.day(),
                at.hour(),
                at.minute(),
                at.second()
            );
            cached.0 = seconds;
        }
        out.write_str(&cached.1)
    })?;
    let micros = since.subsec_micros();
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.write_str(std::str::from_utf8(&digits).unwrap_or("000000"))?;
    out.write_char('Z')
}

/// Writes an event's fields as JSON members: strings escaped, numbers and booleans bare, every
/// other value as its `Debug` text (a message's text, a `%` value's `Display`).
struct JsonFieldsVisitor<'a, W: fmt::Write> {
    out: &'a mut W,
    first: bool,
    result: fmt::Result,
}

impl<W: fmt::Write> JsonFieldsVisitor<'_, W> {
    fn member(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        // Fields of events that came through the `log` crate repeat the metadata.
        if self.result.is_err() || field.name().starts_with("log.") {
            return;
        }
        self.result = (|| {
            if !self.first {
                self.out.write_char(',')?;
            }
            self.first = false;
            self.out.write_char('"')?;
            write_json_string_body(self.out, field.name())?;
            self.out.write_str("\":")?;
            value(self.out)
        })();
    }
}

impl<W: fmt::Write> Visit for JsonFieldsVisitor<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, |out| {
            out.write_char('"')?;
            write_json_string_body(out, value)?;
            out.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, |out| write!(out, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, |out| out.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, |out| {
            if value.is_finite() {
                write!(out, "{value}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value}")?;
            out.write_char('"')
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.member(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }
}

/// Escapes for a JSON string whatever is formatted through it.
struct Escaped<'a, W: fmt::Write>(&'a mut W);

impl<W: fmt::Write> fmt::Write for Escaped<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        write_json_string_body(self.0, text)
    }
}
