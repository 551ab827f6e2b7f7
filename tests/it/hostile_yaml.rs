//! Hostile profile files: each is refused with a diagnostic that says what is wrong, by a bound
//! that holds by construction — the size caps are checked before a file is read, a file is read
//! through a bounded reader, serde_yaml limits nesting and alias jumps, and the profile parser
//! limits what aliases may expand to. A running registry keeps serving its last good set while
//! such a file sits in the directory. (Time and memory per input are in BENCHMARKS.md.)

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use postgate::metrics::{ReloadResult, Trigger};
use postgate::registry::{self, MAX_DIR_BYTES, MAX_FILE_BYTES, MAX_FILES, Registry};

use crate::support::state::{policies_copy, registry};

const HEAD: &str = "bucket: user-content\nkey: \"u/${uuid}\"\n";
const SIZE: &str = "size: { max: 1MiB }\n";

/// Every hostile input, by file stem.
fn cases() -> Vec<(&'static str, Vec<u8>)> {
    // "Billion laughs": ten levels of nine aliases each, 9^9 values if expanded.
    // Inside one `metadata` value, which serde buffers whole before it tries the value's forms.
    let mut laughs =
        format!("{HEAD}{SIZE}metadata:\n  laughs:\n    - &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..10 {
        let aliases = vec![format!("*l{}", level - 1); 9].join(", ");
        writeln!(laughs, "    - &l{level} [{aliases}]").unwrap();
    }
    // Few alias jumps, each replaying a large anchor: 30,000 × 40,000 values, well inside
    // serde_yaml's jump limit (100 per event).
    let wide = format!(
        "{HEAD}{SIZE}metadata:\n  wide:\n    - &a [{}]\n    - [{}]\n",
        vec!["x"; 40_000].join(","),
        vec!["*a"; 30_000].join(",")
    );
    // The same through typed fields only: 6,000 `one_of` lists of 40,000 strings each.
    let typed: String = (0..6_000).fold(
        format!("{HEAD}{SIZE}apps: &a [{}]\nmetadata:\n", vec!["x"; 40_000].join(",")),
        |mut text, i| {
            writeln!(text, "  m{i}: {{ one_of: *a }}").unwrap();
            text
        },
    );
    let deep = |at: &str| format!("{at}{}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let mut random = vec![0u8; 64 * 1024];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for byte in &mut random {
        // xorshift64: deterministic garbage without a dependency.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let mut ten_mb = format!("{HEAD}{SIZE}").into_bytes();
    ten_mb.resize(10 * 1024 * 1024, b'#');
    vec![
        ("alias-bomb-laughs", laughs.into_bytes()),
        ("alias-bomb-wide", wide.into_bytes()),
        ("alias-bomb-typed", typed.into_bytes()),
        (
            "deep-nesting-value",
            deep(&format!("{HEAD}size:\n  max: ")).into_bytes(),
        ),
        ("deep-nesting-document", deep("").into_bytes()),
        (
            "deep-block-nesting",
            format!("{}x\n", "- ".repeat(100_000)).into_bytes(),
        ),
        ("ten-megabytes", ten_mb),
        ("random-bytes", random),
        // Latin-1 `é`: one byte that is not UTF-8.
        (
            "invalid-utf8",
            [format!("{HEAD}description: caf").as_bytes(), b"\xe9\n", SIZE.as_bytes()].concat(),
        ),
        ("nul-byte", format!("{HEAD}description: a\0b\n{SIZE}").into_bytes()),
        (
            "duplicate-key",
            format!("{HEAD}bucket: other-content\n{SIZE}").into_bytes(),
        ),
        (
            "duplicate-var",
            format!("{HEAD}vars:\n  user: {{ pattern: \"[a-z]{{1,8}}\" }}\n  user: {{ pattern: \".*\" }}\n{SIZE}")
                .into_bytes(),
        ),
        (
            "duplicate-field",
            format!("{HEAD}{SIZE}fields:\n  acl: private\n  Content-Disposition: inline\n  acl: public-read\n")
                .into_bytes(),
        ),
        (
            "several-documents",
            format!("{HEAD}{SIZE}---\nbucket: other-content\nkey: \"u/${{uuid}}\"\nsize: {{ max: 5GiB }}\n")
                .into_bytes(),
        ),
        (
            "tag-binary",
            format!("bucket: !!binary dXNlci1jb250ZW50\nkey: \"u/${{uuid}}\"\n{SIZE}").into_bytes(),
        ),
        (
            "tag-custom-scalar",
            format!("bucket: user-content\nkey: !template \"u/${{uuid}}\"\n{SIZE}").into_bytes(),
        ),
        (
            "tag-custom-mapping",
            format!("{HEAD}size: !bytes {{ max: 1MiB }}\n").into_bytes(),
        ),
    ]
}

fn shown(report: &registry::ReloadReport, dir: &Path) -> String {
    let prefix = format!("{}/", dir.display());
    report
        .diagnostics
        .iter()
        .map(|d| d.to_string().replace(&prefix, ""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reloads on another thread, so that a reload that hangs fails the test instead of stalling it.
fn reload_within(registry: &Arc<Registry>, seconds: u64) -> registry::ReloadReport {
    let (tx, rx) = mpsc::channel();
    let registry = registry.clone();
    std::thread::spawn(move || tx.send(registry.reload(Trigger::Admin)));
    rx.recv_timeout(Duration::from_secs(seconds))
        .expect("the reload did not return")
}

#[test]
fn hostile_files_are_refused_and_the_last_good_set_stays_served() {
    let dir = policies_copy();
    let registry = registry(dir.path());
    let served = registry.current();
    let mut report = String::new();
    for (stem, bytes) in cases() {
        let path = dir.path().join(format!("{stem}.yaml"));
        fs::write(&path, &bytes).unwrap();
        let reload = reload_within(&registry, 60);
        assert_eq!(reload.result, ReloadResult::Failure, "{stem} was accepted");
        assert!(
            Arc::ptr_eq(&registry.current(), &served),
            "{stem} replaced the served set"
        );
        let diagnostics = shown(&reload, dir.path());
        assert!(
            reload
                .diagnostics
                .iter()
                .all(|d| d.file.as_deref() == Some(path.to_str().unwrap())),
            "{stem}: {diagnostics}"
        );
        writeln!(report, "{diagnostics}").unwrap();
        fs::remove_file(&path).unwrap();
    }
    insta::assert_snapshot!(report);
    assert_eq!(registry.reload(Trigger::Admin).result, ReloadResult::Unchanged);
}

#[test]
fn the_alias_bombs_stop_at_a_limit_not_at_the_end_of_memory() {
    // The bound is structural: serde_yaml refuses the nine-level bomb after 100 alias jumps per
    // event, and the parser refuses the wide ones once their values pass a fixed budget.
    let bombs: Vec<_> = cases()
        .into_iter()
        .filter(|(stem, _)| stem.starts_with("alias-bomb"))
        .collect();
    assert_eq!(bombs.len(), 3);
    for (stem, bytes) in bombs {
        let text = String::from_utf8(bytes).unwrap();
        let name = postgate::profile::ProfileName::new(stem).unwrap();
        let diagnostics = postgate::profile::parse(&name, &text).unwrap_err();
        let message = &diagnostics[0].message;
        assert!(
            message.contains("repetition limit exceeded") || message.contains("once aliases are expanded"),
            "{stem}: {message}"
        );
    }
}

#[test]
fn a_fifo_or_a_device_is_refused_unopened() {
    let dir = policies_copy();
    let registry = registry(dir.path());
    let generation = registry.current().generation;
    let status = std::process::Command::new("mkfifo")
        .arg(dir.path().join("pipe.yaml"))
        .status()
        .unwrap();
    assert!(status.success());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).unwrap();
    let reload = reload_within(&registry, 10);
    assert_eq!(reload.result, ReloadResult::Failure);
    assert_eq!(registry.current().generation, generation);
    insta::assert_snapshot!(shown(&reload, dir.path()), @r"
    zero.yaml: a link to outside the policies directory; not read (profiles must live in it)
    pipe.yaml: not a regular file (a FIFO); a profile is a regular file or a symlink to one
    ");
}

#[test]
fn a_directory_over_the_file_cap_is_refused_before_reading() {
    let dir = policies_copy();
    let registry = registry(dir.path());
    let generation = registry.current().generation;
    let served = registry.current().profiles.len();
    for i in 0..=(MAX_FILES - served) {
        // Empty files would be refused one by one if they were read; the cap comes first.
        fs::File::create(dir.path().join(format!("p{i:05}.yaml"))).unwrap();
    }
    let reload = reload_within(&registry, 60);
    assert_eq!(reload.result, ReloadResult::Failure);
    assert_eq!(registry.current().generation, generation);
    assert_eq!(
        shown(&reload, dir.path()).replace(&dir.path().display().to_string(), "DIR"),
        format!(
            "DIR: the directory holds {} profile files; postgate reads at most {MAX_FILES}",
            MAX_FILES + 1
        )
    );
}

#[test]
fn a_directory_over_the_byte_cap_is_refused_before_reading() {
    let dir = policies_copy();
    let registry = registry(dir.path());
    let generation = registry.current().generation;
    let files = MAX_DIR_BYTES / MAX_FILE_BYTES + 1;
    for i in 0..files {
        // Sparse: the test writes nothing, and a file that were read would fail as YAML.
        let file = fs::File::create(dir.path().join(format!("big{i:03}.yaml"))).unwrap();
        file.set_len(MAX_FILE_BYTES).unwrap();
    }
    let reload = reload_within(&registry, 60);
    assert_eq!(reload.result, ReloadResult::Failure);
    assert_eq!(registry.current().generation, generation);
    assert_eq!(
        shown(&reload, dir.path()).replace(&dir.path().display().to_string(), "DIR"),
        format!("DIR: the profile files add up to more than {MAX_DIR_BYTES} bytes; postgate reads at most that")
    );
}

/// A profile linked to a file outside the policies directory (here a one-line secret) is not
/// read, and what it points at is not said; a type error never quotes the string it found.
#[test]
fn a_link_outside_the_directory_is_not_read_and_type_errors_quote_nothing() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "TOPSECRET123-do-not-print\n").unwrap();
    let dir = policies_copy();
    let registry = registry(dir.path());
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), dir.path().join("leak.yaml")).unwrap();
    // Inside the directory, a link is followed (and a scalar where a profile belongs is a type
    // error that shows no value).
    std::fs::write(dir.path().join(".scalar"), "TOPSECRET456-not-a-profile\n").unwrap();
    std::os::unix::fs::symlink(dir.path().join(".scalar"), dir.path().join("scalar.yaml")).unwrap();
    let reload = reload_within(&registry, 10);
    assert_eq!(reload.result, ReloadResult::Failure);
    let text = shown(&reload, dir.path());
    assert!(!text.contains("TOPSECRET"), "{text}");
    assert!(!text.contains(&outside.path().display().to_string()), "{text}");
    insta::assert_snapshot!(text, @r"
    leak.yaml: a link to outside the policies directory; not read (profiles must live in it)
    scalar.yaml:1:1: invalid type: a string of 26 characters, expected struct RawProfile
    ");
}
