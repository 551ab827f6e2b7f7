//! The one owner of "the current profiles": reads the policies directory and compiles it into a
//! `Snapshot`, all or nothing; `Registry` holds the served snapshot and swaps in the next one
//! atomically; `watch` decides when to reload.
//!
//! `read_dir` is the IO; `build` is pure and is what tests drive. Only top-level, non-dot
//! `*.yaml`/`*.yml` files count (symlinks followed, as Kubernetes ConfigMap volumes need). What a
//! reload reads is bounded: `MAX_FILES` files, `MAX_DIR_BYTES` in all, `MAX_FILE_BYTES` each, and
//! only regular files, so a hostile directory costs neither memory nor a stalled reload thread.

mod live;
pub mod watch;

pub use live::{AppsSource, Registry, ReloadReport, Source};

use std::collections::BTreeMap;
use std::io::Read as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::auth::AppKeys;
use crate::profile::Method;
use crate::profile::{self, Diagnostic, Profile, ProfileName, RegexCache};
use crate::ratelimit::Limiters;
use crate::sign::{Credentials, Store};

/// The configured stores by name, each with the credentials that sign for it.
pub type Stores = BTreeMap<String, Arc<Store>>;

/// Stores of these names that take POST, without credentials: for commands and tests that
/// compile profiles but never sign (`postgate check`, `explain`).
pub fn unsigned_stores(names: &[&str]) -> Stores {
    names
        .iter()
        .map(|name| ((*name).to_owned(), Arc::new(unsigned_store(name, true))))
        .collect()
}

/// A store of this name, taking POST or not, without credentials (it never signs).
pub fn unsigned_store(name: &str, post: bool) -> Store {
    let credentials = Credentials {
        access_key_id: String::new(),
        secret_access_key: crate::secret::Secret::new(""),
        session_token: None,
        expires_at: None,
    };
    Store::new(
        name,
        "us-east-1",
        crate::sign::Endpoint::Aws,
        crate::sign::Addressing::Auto,
        credentials,
    )
    .with_post(post)
}

/// The largest profile file read, in bytes; larger files are refused unread.
pub const MAX_FILE_BYTES: u64 = 256 * 1024;
/// The most profile files one directory may hold: twice the 10,000 of the scale benchmark.
pub const MAX_FILES: usize = 20_000;
/// The most bytes of profile files one directory may hold, all files together.
pub const MAX_DIR_BYTES: u64 = 64 * 1024 * 1024;

/// One profile file as read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// The path shown in diagnostics.
    pub path: PathBuf,
    pub text: String,
}

/// A complete, valid set of profiles (and the app keys and rate limiters that go with them).
/// Immutable once built (the limiters' GCRA states are atomics of their own); replaced whole.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Each profile with the store it signs for: "no such store" cannot be asked.
    pub profiles: BTreeMap<String, Served>,
    /// Warnings of the profiles in the set.
    pub warnings: Vec<Diagnostic>,
    /// SHA-256 over the file names and contents (and app keys and rate limits, once served),
    /// hex: equal content, equal hash.
    pub content_hash: String,
    /// The part of `content_hash` that covers the profile files alone.
    pub profiles_hash: String,
    /// The configured rate limits (the `limiters` run them).
    pub app_limits: crate::ratelimit::AppLimits,
    /// Counts published snapshots, starting at 1; 0 before the registry publishes it.
    pub generation: u64,
    pub apps: Arc<AppKeys>,
    /// One GCRA state per rate-limited app, carried over from the previous snapshot for every
    /// app whose limit is unchanged.
    pub limiters: Arc<Limiters>,
    /// Each app's auth mode, end-user token rules (with their JWKS caches) and CORS origins.
    pub identities: Arc<crate::identity::Identities>,
    /// SHA-256 of each profile's file text, so a reload reuses the profiles whose text is unchanged.
    pub digests: BTreeMap<String, [u8; 32]>,
    /// The stores the profiles sign for; every profile's store is here (`build` refuses the set
    /// otherwise), and can carry at least one of the profile's methods.
    pub stores: Arc<Stores>,
    /// Each app's event endpoint (with the apps part).
    pub events: Arc<crate::events::Endpoints>,
}

impl Snapshot {
    pub fn get(&self, name: &str) -> Option<&Served> {
        self.profiles.get(name)
    }
}

/// A served profile and the store it signs for, paired by `build` (which refuses a profile whose
/// store is not configured), so a lookup of the profile is a lookup of its store. Dereferences
/// to the profile.
#[derive(Debug, Clone)]
pub struct Served {
    profile: Arc<Profile>,
    store: Arc<Store>,
}

impl Served {
    pub fn new(profile: Arc<Profile>, store: Arc<Store>) -> Served {
        Served { profile, store }
    }

    pub fn profile(&self) -> &Arc<Profile> {
        &self.profile
    }

    /// The store it signs for (`Profile::store` is its name).
    pub fn signing_store(&self) -> &Arc<Store> {
        &self.store
    }
}

impl std::ops::Deref for Served {
    type Target = Arc<Profile>;

    fn deref(&self) -> &Arc<Profile> {
        &self.profile
    }
}

/// Reads the profile files of `dir`. Errors that concern one file (unreadable, too large, not a
/// regular file, not UTF-8) come back as diagnostics for that file; a directory past `MAX_FILES`
/// or `MAX_DIR_BYTES` is refused whole, before its files are read.
pub fn read_dir(dir: &Path) -> Result<(Vec<SourceFile>, Vec<Diagnostic>), Diagnostic> {
    // A file changed while the set was read is read again, so a half-written file is never
    // published: files modified within `SETTLE` are waited for, and the sizes and times seen
    // before and after the reads must agree.
    let mut attempts = 0;
    loop {
        attempts += 1;
        let before = settle(dir);
        let read = read_dir_once(dir)?;
        if settle_stamp(dir) == before || attempts >= 5 {
            return Ok(read);
        }
    }
}

/// How long a profile file must be left alone before it is read.
pub const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// The length and modification time of every entry of the directory the set is read from.
fn settle_stamp(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let base = resolve(dir).map(|(_, base)| base).unwrap_or_else(|_| dir.to_owned());
    let mut stamp: Vec<_> = [dir.to_owned(), base]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|entries| {
            entries.flatten().filter_map(|e| {
                let meta = std::fs::metadata(e.path()).ok()?;
                meta.is_file().then(|| (e.path(), meta.len(), meta.modified().ok()))
            })
        })
        .collect();
    stamp.sort();
    stamp
}

/// Waits (at most 2 s) until no file was modified within `SETTLE`; returns the stamp then.
fn settle(dir: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let stamp = settle_stamp(dir);
        let newest = stamp.iter().filter_map(|(_, _, at)| *at).max();
        let fresh = newest.and_then(|at| at.elapsed().ok()).is_some_and(|age| age < SETTLE);
        if !fresh || std::time::Instant::now() >= deadline {
            return stamp;
        }
        std::thread::sleep(SETTLE / 4);
    }
}

/// The policies directory, resolved once per read: its canonical path, and the directory its
/// files are read from, which is the one `..data` points at in a Kubernetes ConfigMap mount (so
/// a `..data` swap mid-read cannot mix files of two versions).
fn resolve(dir: &Path) -> std::io::Result<(PathBuf, PathBuf)> {
    let root = std::fs::canonicalize(dir)?;
    let base = std::fs::canonicalize(dir.join("..data"))
        .ok()
        .filter(|b| b.starts_with(&root) && b.is_dir())
        .unwrap_or_else(|| root.clone());
    Ok((root, base))
}

fn read_dir_once(dir: &Path) -> Result<(Vec<SourceFile>, Vec<Diagnostic>), Diagnostic> {
    let about_dir = |message: String| Diagnostic::error("", message).in_file(dir.display().to_string());
    let (root, base) = resolve(dir).map_err(|e| about_dir(format!("cannot read the policies directory: {e}")))?;
    let entries =
        std::fs::read_dir(&root).map_err(|e| about_dir(format!("cannot read the policies directory: {e}")))?;
    let mut paths = Vec::new();
    let mut diags = Vec::new();
    for entry in entries.flatten() {
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if file_name.starts_with('.') || !(file_name.ends_with(".yaml") || file_name.ends_with(".yml")) {
            continue;
        }
        // Shown (and named) as in the configured directory. A ConfigMap's `name.yaml ->
        // ..data/name.yaml` is read through the `..data` resolved once for this read.
        let shown = dir.join(&file_name);
        let real = match std::fs::read_link(entry.path()) {
            Ok(target) if target.starts_with("..data") => base.join(&file_name),
            _ => entry.path(),
        };
        // A link is followed only when it ends inside the policies directory; where else it
        // points is not said.
        match std::fs::canonicalize(&real) {
            Ok(target) if target.starts_with(&root) => paths.push((shown, real)),
            Ok(_) => diags.push(
                Diagnostic::error(
                    "",
                    "a link to outside the policies directory; not read (profiles must live in it)",
                )
                .in_file(shown.display().to_string()),
            ),
            Err(e) => {
                diags.push(Diagnostic::error("", format!("cannot read: {e}")).in_file(shown.display().to_string()))
            }
        }
    }
    if paths.len() > MAX_FILES {
        return Err(about_dir(format!(
            "the directory holds {} profile files; postgate reads at most {MAX_FILES}",
            paths.len()
        )));
    }
    paths.sort();

    // Every size is known before any file is read: a directory over its cap reads nothing.
    let mut sized = Vec::with_capacity(paths.len());
    let mut total: u64 = 0;
    for (path, real) in paths {
        let shown = path.display().to_string();
        // `metadata` follows symlinks: a ConfigMap's `name.yaml -> ..data/name.yaml` is a file.
        match std::fs::metadata(&real) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if !meta.is_file() => diags.push(not_a_file(&meta.file_type()).in_file(shown)),
            Ok(meta) if meta.len() > MAX_FILE_BYTES => diags.push(too_large(meta.len()).in_file(shown)),
            Ok(meta) => {
                total += meta.len();
                sized.push((path, real));
            }
            Err(e) => diags.push(Diagnostic::error("", format!("cannot read: {e}")).in_file(shown)),
        }
    }
    let over_total = || {
        about_dir(format!(
            "the profile files add up to more than {MAX_DIR_BYTES} bytes; postgate reads at most that"
        ))
    };
    if total > MAX_DIR_BYTES {
        return Err(over_total());
    }

    let mut files = Vec::with_capacity(sized.len());
    let mut read: u64 = 0;
    for (path, real) in sized {
        let shown = path.display().to_string();
        match read_file(&real) {
            Ok(bytes) => {
                // Files may have grown since they were measured; the cap holds for what is read.
                read += bytes.len() as u64;
                if read > MAX_DIR_BYTES {
                    return Err(over_total());
                }
                match String::from_utf8(bytes) {
                    Ok(text) => files.push(SourceFile { path, text }),
                    Err(e) => diags.push(not_utf8(e.as_bytes(), e.utf8_error().valid_up_to()).in_file(shown)),
                }
            }
            Err(diagnostic) => diags.push(diagnostic.in_file(shown)),
        }
    }
    Ok((files, diags))
}

/// Reads one profile file, at most `MAX_FILE_BYTES + 1` bytes of it whatever it has become since
/// it was measured. Opened without blocking, so a file swapped for a FIFO cannot stall the reload
/// thread (a FIFO's `open` waits for a writer); anything but a regular file is refused unread.
fn read_file(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    let cannot = |e: std::io::Error| Diagnostic::error("", format!("cannot read: {e}"));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(cannot)?;
    let meta = file.metadata().map_err(cannot)?;
    if !meta.is_file() {
        return Err(not_a_file(&meta.file_type()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len().min(MAX_FILE_BYTES)).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(Diagnostic::error(
            "",
            format!("the file is more than {MAX_FILE_BYTES} bytes; profiles are at most {MAX_FILE_BYTES}"),
        ));
    }
    Ok(bytes)
}

fn too_large(len: u64) -> Diagnostic {
    Diagnostic::error(
        "",
        format!("the file is {len} bytes; profiles are at most {MAX_FILE_BYTES}"),
    )
}

fn not_a_file(kind: &std::fs::FileType) -> Diagnostic {
    let kind = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else {
        "not a file"
    };
    Diagnostic::error(
        "",
        format!("not a regular file ({kind}); a profile is a regular file or a symlink to one"),
    )
}

/// Where the first byte that is not UTF-8 is, as a line and column of the valid text before it.
fn not_utf8(bytes: &[u8], valid_up_to: usize) -> Diagnostic {
    let before = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    let mut diagnostic = Diagnostic::error("", "the file is not UTF-8 text");
    diagnostic.line_col = Some((line, column));
    diagnostic
}

/// A compiled profile with the store that serves it, as that store serves it (staged on a store
/// that stages every upload); or why its store cannot: none of that name, POST-only on a store
/// without POST, or what the store's kind cannot sign.
fn served_by_its_store(profile: &Arc<Profile>, stores: &Stores) -> Result<Served, Vec<Diagnostic>> {
    let error = |message: String| Diagnostic::error("store", message);
    let Some(store) = stores.get(profile.store()) else {
        let names: Vec<&str> = stores.keys().map(String::as_str).collect();
        return Err(vec![error(format!(
            "no store named `{}` is configured; configured: {}",
            profile.store(),
            names.join(", ")
        ))]);
    };
    if !store.post && profile.plan().methods() == [Method::Post] {
        return Err(vec![error(format!(
            "store `{}` takes no POST uploads (`post: false`) and this profile is POST-only ({})",
            profile.store(),
            profile.plan().unavailable(Method::Put).unwrap_or_default()
        ))]);
    }
    let problems = store.problems(profile);
    if !problems.is_empty() {
        let kind = store.kind.name();
        return Err(problems
            .into_iter()
            .map(|problem| {
                error(format!(
                    "store `{}` ({kind}) cannot serve this profile: {problem}",
                    profile.store()
                ))
            })
            .collect());
    }
    let staged = store.staging.as_deref().map(|prefix| profile.staged_under(prefix));
    let served = staged.map_or_else(|| profile.clone(), Arc::new);
    Ok(Served::new(served, store.clone()))
}

/// Compiles every file into one snapshot, or returns every diagnostic (errors and warnings) if
/// any file fails. `stores` are the stores profiles may use.
pub fn build(files: &[SourceFile], stores: &Arc<Stores>) -> Result<Snapshot, Vec<Diagnostic>> {
    build_reusing(files, stores, None)
}

/// `build`, reusing the compiled profiles of `previous` whose file text is unchanged. Files are
/// compiled on every core (each thread with its own regex cache), then merged in file order.
pub fn build_reusing(
    files: &[SourceFile],
    stores: &Arc<Stores>,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, Vec<Diagnostic>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len().max(1));
    let chunk = files.len().div_ceil(threads).max(1);
    let compiled: Vec<Compiled> = std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    let mut regexes = RegexCache::default();
                    part.iter()
                        .map(|file| compile_file(file, previous, &mut regexes))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a compile thread panicked"))
            .collect()
    });

    let mut profiles = BTreeMap::new();
    let mut digests = BTreeMap::new();
    let mut diags = Vec::new();
    let mut hasher = Sha256::new();
    for (file, compiled) in files.iter().zip(compiled) {
        let shown = file.path.display().to_string();
        hasher.update(compiled.file_name.as_bytes());
        hasher.update([0]);
        hasher.update(compiled.digest);
        let stem = compiled.stem;
        if profiles.contains_key(&stem) {
            diags.push(
                Diagnostic::error(
                    "",
                    format!("a second file defines profile `{stem}`; keep one of {stem}.yaml and {stem}.yml"),
                )
                .in_file(shown),
            );
            continue;
        }
        match compiled.profile {
            Ok(profile) => {
                match served_by_its_store(&profile, stores) {
                    Ok(served) => {
                        digests.insert(stem.clone(), compiled.digest);
                        profiles.insert(stem, served);
                    }
                    Err(errors) => diags.extend(errors.into_iter().map(|d| d.in_file(&shown))),
                }
                diags.extend(profile.warnings().iter().cloned().map(|d| d.in_file(&shown)));
            }
            Err(errors) => diags.extend(errors.into_iter().map(|d| d.in_file(&shown))),
        }
    }
    if diags.iter().any(Diagnostic::is_error) {
        return Err(diags);
    }
    Ok(Snapshot {
        profiles,
        warnings: diags,
        content_hash: hex::encode(hasher.finalize()),
        profiles_hash: String::new(),
        app_limits: Default::default(),
        generation: 0,
        apps: Arc::default(),
        limiters: Arc::default(),
        identities: Arc::default(),
        digests,
        stores: stores.clone(),
        events: Arc::default(),
    })
}

/// One file, compiled (or reused) on a compile thread.
struct Compiled {
    file_name: String,
    stem: String,
    digest: [u8; 32],
    profile: Result<Arc<Profile>, Vec<Diagnostic>>,
}

fn compile_file(file: &SourceFile, previous: Option<&Snapshot>, regexes: &mut RegexCache) -> Compiled {
    let file_name = file
        .path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let digest: [u8; 32] = Sha256::digest(file.text.as_bytes()).into();
    let stem = file_name.trim_end_matches(".yaml").trim_end_matches(".yml").to_owned();
    let profile = match ProfileName::new(&stem) {
        Err(message) => Err(vec![Diagnostic::error(
            "",
            format!("the file name gives the profile name: {message}"),
        )]),
        Ok(name) => {
            let reused = previous
                .filter(|p| p.digests.get(&stem) == Some(&digest))
                .and_then(|p| p.profiles.get(&stem).map(|served| served.profile().clone()));
            match reused {
                Some(profile) => Ok(profile),
                None => profile::parse_cached(&name, &file.text, regexes).map(Arc::new),
            }
        }
    };
    Compiled {
        file_name,
        stem,
        digest,
        profile,
    }
}

/// `read_dir` then `build`: the whole directory, all or nothing.
pub fn load(dir: &Path, stores: &Arc<Stores>) -> Result<Snapshot, Vec<Diagnostic>> {
    load_reusing(dir, stores, None)
}

/// `load`, reusing the unchanged profiles of `previous`.
pub fn load_reusing(
    dir: &Path,
    stores: &Arc<Stores>,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, Vec<Diagnostic>> {
    let (files, mut read_errors) = read_dir(dir).map_err(|d| vec![d])?;
    match build_reusing(&files, stores, previous) {
        Ok(snapshot) if read_errors.is_empty() => Ok(snapshot),
        Ok(snapshot) => {
            read_errors.extend(snapshot.warnings);
            Err(read_errors)
        }
        Err(diags) => {
            read_errors.extend(diags);
            Err(read_errors)
        }
    }
}
