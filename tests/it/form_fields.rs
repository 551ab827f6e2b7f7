//! Extra, duplicated and case-variant fields added to a signed POST form, against the stores
//! postgate is tested with: s3s-fs always, Garage and SeaweedFS when their start scripts ran. For each
//! variant, the test records what the store answers and what it stores, if anything. Each
//! variant posts a fresh `avatars` form from the library signer (so a fresh `${uuid}` and key),
//! with one change. The table of rows is pinned per store in an insta snapshot
//! (`form_fields_s3s`, `form_fields_garage`, `form_fields_seaweedfs`), which is the record of what each store does and
//! does not reject.
//!
//! The property that matters is checked on every row: the store keeps nothing outside the signed
//! key prefix, and nothing with a Content-Type or metadata value the POST policy did not sign. A
//! row that breaks it is marked `accepted-unsigned`. The test pins such a row and does not fail
//! on it, because it is the store's behaviour and the snapshot is where that is recorded.
//!
//! The test does not read back tags, object-lock mode or SSE-C settings. Rows for those fields
//! record whether the store took the form and what it stored, not whether it applied the field.

use std::collections::{BTreeMap, BTreeSet};

use postgate::profile::{Context, Profile};
use postgate::registry;
use postgate::sign::{FieldStyle, Store};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::repo_path;
use crate::support::s3::{
    S3Server, SignedForm, SignedUpload, StoredObject, avatar_request, file_bytes, garage_turn, try_upload,
};

/// The changes made to a valid form, in the order they are posted. Each value the form did not
/// sign is chosen outside what policies/avatars.yaml allows (a key of another user, purpose
/// `wallpaper`, Content-Type `text/html`), so a store that keeps it is visible in the table.
pub const VARIANTS: &[&str] = &[
    "valid form (control)",
    "Key after key, outside the signed prefix",
    "Key before key, outside the signed prefix",
    "x-amz-meta-purpose twice, unsigned value last",
    "x-amz-meta-purpose twice, unsigned value first",
    "X-Amz-Meta-Purpose after x-amz-meta-purpose",
    "X-Amz-Meta-Purpose before x-amz-meta-purpose",
    "x-amz-server-side-encryption-customer-algorithm added",
    "x-amz-object-lock-mode added",
    "tagging added",
    "Content-Type twice, unsigned value last",
    "Content-Type twice, unsigned value first",
];

/// What one store did with one variant.
#[derive(Serialize)]
pub struct Row {
    pub variant: &'static str,
    pub store: &'static str,
    /// The answer's status (0: the store closed the connection). Printed, not pinned: a store
    /// that refuses while reading may answer or close, by timing.
    #[serde(skip)]
    pub status: u16,
    /// The store's `Code: Message` for an answer that is not 2xx (uuid shown as `<uuid>`).
    #[serde(skip)]
    pub error: Option<String>,
    /// The objects the post left behind.
    pub stored: Vec<Stored>,
    pub verdict: Verdict,
}

/// One object a post left behind, as read back through the store.
#[derive(Serialize)]
pub struct Stored {
    /// `bucket/key`, with the form's uuid shown as `<uuid>`.
    pub object: String,
    pub content_type: Option<String>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Refused, nothing stored.
    Rejected,
    /// Taken and stored within what the POST policy signed.
    StoredAsSigned,
    /// An object was stored (taken or not) outside the signed key prefix, or with a Content-Type
    /// or metadata value the POST policy did not sign.
    AcceptedUnsigned,
    /// Refused, yet an object within the signed bounds was left behind.
    RefusedButStored,
    /// A 2xx with nothing stored.
    AcceptedNothingStored,
    /// Refused on some runs, stored as signed on others: the store picks one of two fields of
    /// the same name by chance (SeaweedFS), never one unsigned.
    RejectedOrStoredAsSigned,
}

/// Posts every variant of `VARIANTS` to `server` and returns one row per variant. It checks the
/// control (the unchanged form stores one object as signed) and leaves every other verdict to
/// the snapshot.
pub async fn check_form_fields(server: &S3Server) -> Vec<Row> {
    let store = server.store();
    let snapshot = registry::load(
        &repo_path("policies"),
        &std::sync::Arc::new(registry::unsigned_stores(&["default"])),
    )
    .unwrap();
    let profile = snapshot.get("avatars").unwrap();
    assert_eq!(profile.bucket(), BUCKET, "policies/avatars.yaml: bucket");
    let store_name = server.kind().name();
    let mut rows = Vec::new();
    for &variant in VARIANTS {
        let form = sign_avatar(&store, profile);
        let marker = form
            .fields
            .iter()
            .find(|(name, _)| name == postgate::profile::plan::MARKER_FIELD)
            .map(|(_, value)| value.clone())
            .expect("every form carries its marker");
        let signed_prefix = form
            .key
            .strip_suffix("${filename}")
            .unwrap_or_else(|| panic!("avatars keys end in ${{filename}}: {}", form.key))
            .to_owned();
        let uuid = form.key.split('/').nth(2).unwrap().to_owned();
        let unsigned_key = form.key.replacen(&format!("avatars/{USER}/"), "avatars/mallory/", 1);
        assert_ne!(unsigned_key, form.key);

        // The valid form: the signer's fields, then the Content-Type the client adds for the
        // `image/` prefix rule.
        let mut fields = form.fields.clone();
        fields.push(("Content-Type".to_owned(), SIGNED_CONTENT_TYPE.to_owned()));
        let extra = |name: &str, value: &str| (name.to_owned(), value.to_owned());
        match variant {
            "valid form (control)" => {}
            "Key after key, outside the signed prefix" => {
                add_beside(&mut fields, "key", Side::After, extra("Key", &unsigned_key))
            }
            "Key before key, outside the signed prefix" => {
                add_beside(&mut fields, "key", Side::Before, extra("Key", &unsigned_key))
            }
            "x-amz-meta-purpose twice, unsigned value last" => add_beside(
                &mut fields,
                "x-amz-meta-purpose",
                Side::After,
                extra("x-amz-meta-purpose", UNSIGNED_PURPOSE),
            ),
            "x-amz-meta-purpose twice, unsigned value first" => add_beside(
                &mut fields,
                "x-amz-meta-purpose",
                Side::Before,
                extra("x-amz-meta-purpose", UNSIGNED_PURPOSE),
            ),
            "X-Amz-Meta-Purpose after x-amz-meta-purpose" => add_beside(
                &mut fields,
                "x-amz-meta-purpose",
                Side::After,
                extra("X-Amz-Meta-Purpose", UNSIGNED_PURPOSE),
            ),
            "X-Amz-Meta-Purpose before x-amz-meta-purpose" => add_beside(
                &mut fields,
                "x-amz-meta-purpose",
                Side::Before,
                extra("X-Amz-Meta-Purpose", UNSIGNED_PURPOSE),
            ),
            "x-amz-server-side-encryption-customer-algorithm added" => {
                fields.push(extra("x-amz-server-side-encryption-customer-algorithm", "AES256"))
            }
            "x-amz-object-lock-mode added" => fields.push(extra("x-amz-object-lock-mode", "GOVERNANCE")),
            "tagging added" => fields.push(extra("tagging", TAGGING)),
            "Content-Type twice, unsigned value last" => add_beside(
                &mut fields,
                "Content-Type",
                Side::After,
                extra("Content-Type", UNSIGNED_CONTENT_TYPE),
            ),
            "Content-Type twice, unsigned value first" => add_beside(
                &mut fields,
                "Content-Type",
                Side::Before,
                extra("Content-Type", UNSIGNED_CONTENT_TYPE),
            ),
            other => panic!("no change for the variant {other}"),
        }

        let before: BTreeSet<String> = server.objects().await.into_iter().collect();
        // Garage refuses some forms while it reads them and closes the connection: a refusal too.
        let (status, body) = try_upload(&form.url, &fields, FILE_NAME, file_bytes(1000))
            .await
            .unwrap_or_else(|e| (0, format!("<Code>ConnectionClosed</Code><Message>{e}</Message>")));
        let mut written: BTreeSet<String> = server
            .objects()
            .await
            .into_iter()
            .filter(|object| !before.contains(object))
            .collect();
        // Garage's listing is one page per bucket, so the test also looks where the upload could
        // have landed. Both keys hold a fresh uuid: an object there is this post's.
        for key in [&form.key, &unsigned_key] {
            let key = server.stored_key(key, FILE_NAME);
            if server.object(BUCKET, &key).await.is_some() {
                written.insert(format!("{BUCKET}/{key}"));
            }
        }

        let mut stored = Vec::new();
        let mut unsigned = false;
        for object in &written {
            let (bucket, key) = object.split_once('/').unwrap();
            let read = server.object(bucket, key).await;
            unsigned |= !within_signed(object, read.as_ref(), &signed_prefix, &marker);
            stored.push(Stored {
                object: object.replace(&uuid, "<uuid>"),
                content_type: read.as_ref().and_then(|o| o.content_type.clone()),
                metadata: read
                    .map(|o| o.metadata)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(name, value)| {
                        let value = if value == marker { "<marker>".to_owned() } else { value };
                        (name, value)
                    })
                    .collect(),
            });
        }
        let success = (200..300).contains(&status);
        let verdict = match (unsigned, success, stored.is_empty()) {
            (true, _, _) => Verdict::AcceptedUnsigned,
            (false, true, false) => Verdict::StoredAsSigned,
            (false, true, true) => Verdict::AcceptedNothingStored,
            (false, false, false) => Verdict::RefusedButStored,
            (false, false, true) => Verdict::Rejected,
        };
        rows.push(Row {
            variant,
            store: store_name,
            status,
            error: (!success).then(|| error_of(&body).replace(&uuid, "<uuid>")),
            stored,
            verdict,
        });
    }

    // Control: the unchanged form uploads (avatars answers `success_action_status: 201`), and
    // stores one object as signed, so every other row is the change's doing.
    let control = &rows[0];
    assert_eq!(control.variant, VARIANTS[0]);
    assert_eq!(
        (control.status, control.verdict),
        (201, Verdict::StoredAsSigned),
        "{store_name}: the control: {:?}",
        control.error
    );
    assert_eq!(control.stored.len(), 1, "{store_name}: the control stores one object");
    assert_eq!(control.stored[0].content_type.as_deref(), Some(SIGNED_CONTENT_TYPE));
    assert_eq!(
        control.stored[0].metadata.get("purpose").map(String::as_str),
        Some(SIGNED_PURPOSE)
    );

    for row in rows.iter().filter(|r| r.verdict == Verdict::AcceptedUnsigned) {
        eprintln!(
            "{store_name}: {}: stored what the POST policy did not sign (status {})",
            row.variant, row.status
        );
    }
    rows
}

#[tokio::test]
async fn extra_duplicated_and_case_variant_fields_on_s3s() {
    let server = S3Server::start().await;
    let rows = check_form_fields(&server).await;
    print_rows(&rows);
    insta::assert_yaml_snapshot!("form_fields_s3s", rows);
}

/// The same against Garage (`tests/garage/`). It is skipped, saying so, when Garage is not
/// running. `S3Server::garage` fails it instead when `CI_REQUIRE_GARAGE` is set, as in CI.
#[tokio::test]
async fn extra_duplicated_and_case_variant_fields_on_garage() {
    let _turn = garage_turn().await;
    let Some(server) = S3Server::garage() else {
        eprintln!(
            "SKIPPED: form_fields on Garage: run `eval \"$(tests/garage/start.sh target/garage)\"` \
             first (see tests/garage/README.md)"
        );
        return;
    };
    let rows = check_form_fields(&server).await;
    print_rows(&rows);
    insta::assert_yaml_snapshot!("form_fields_garage", rows);
}

/// The same against SeaweedFS (`tests/seaweedfs/`), skipped or required as on Garage.
#[tokio::test]
async fn extra_duplicated_and_case_variant_fields_on_seaweedfs() {
    let _turn = garage_turn().await;
    let Some(server) = S3Server::seaweedfs() else {
        return;
    };
    let mut rows = check_form_fields(&server).await;
    print_rows(&rows);
    // SeaweedFS 4.48 reads a form into a Go map: which of two fields of one name (or of two
    // casings) it checks and which it stores changes from run to run. Both outcomes keep the
    // signed bounds; anything else still shows as itself.
    for row in &mut rows {
        let duplicated = ["twice", " before ", " after "].iter().any(|w| row.variant.contains(w));
        if duplicated && matches!(row.verdict, Verdict::Rejected | Verdict::StoredAsSigned) {
            row.verdict = Verdict::RejectedOrStoredAsSigned;
            row.stored.clear();
        }
    }
    insta::assert_yaml_snapshot!("form_fields_seaweedfs", rows);
}

const BUCKET: &str = "user-content";
/// The `${user}` of every form: `uploaded-by` is signed as this value.
const USER: &str = "form-fields";
const FILE_NAME: &str = "x.png";
/// The purpose `avatar_request` asks for, which the POST policy then requires exactly.
const SIGNED_PURPOSE: &str = "avatar";
/// Not in the `one_of` of policies/avatars.yaml.
const UNSIGNED_PURPOSE: &str = "wallpaper";
/// What policies/avatars.yaml allows: `content_type: { prefix: image/ }`.
const SIGNED_CONTENT_TYPE_PREFIX: &str = "image/";
const SIGNED_CONTENT_TYPE: &str = "image/png";
const UNSIGNED_CONTENT_TYPE: &str = "text/html";
const TAGGING: &str = "<Tagging><TagSet><Tag><Key>a</Key><Value>b</Value></Tag></TagSet></Tagging>";

/// Signs an `avatars` form for the app `web` with the library, as `e2e::library_signer` does,
/// with a fresh `${uuid}`.
fn sign_avatar(store: &Store, profile: &Profile) -> SignedForm {
    let now = OffsetDateTime::now_utc();
    let ctx = Context {
        app: "web",
        now,
        uuid: Uuid::now_v7(),
    };
    let signed = postgate::sign::sign(
        profile,
        &store.signer(now).unwrap(),
        &avatar_request(USER),
        &ctx,
        FieldStyle::Botocore,
    )
    .unwrap_or_else(|refusals| panic!("refused: {refusals:?}"));
    SignedUpload::from(signed).form()
}

#[derive(Clone, Copy)]
enum Side {
    Before,
    After,
}

/// Puts `field` next to the first field named exactly `beside`, before or after it, so the
/// store sees the two values in a known order.
fn add_beside(fields: &mut Vec<(String, String)>, beside: &str, side: Side, field: (String, String)) {
    let at = fields
        .iter()
        .position(|(name, _)| name == beside)
        .unwrap_or_else(|| panic!("the form has no {beside} field"));
    let at = match side {
        Side::Before => at,
        Side::After => at + 1,
    };
    fields.insert(at, field);
}

/// Whether a stored object is one the POST policy allowed: under the signed key prefix, with an
/// `image/` Content-Type, and no metadata but the signed values. Names are compared ignoring
/// case, because a store may keep the case a client sent.
fn within_signed(object: &str, stored: Option<&StoredObject>, signed_prefix: &str, marker: &str) -> bool {
    let Some(stored) = stored else {
        return false;
    };
    let key_signed = object
        .strip_prefix(BUCKET)
        .and_then(|rest| rest.strip_prefix('/'))
        .is_some_and(|key| key.starts_with(signed_prefix));
    let content_type_signed = stored
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with(SIGNED_CONTENT_TYPE_PREFIX));
    let metadata_signed = stored
        .metadata
        .iter()
        .all(|(name, value)| match name.to_ascii_lowercase().as_str() {
            "uploaded-by" => value == USER,
            "purpose" => value == SIGNED_PURPOSE,
            postgate::profile::plan::MARKER_NAME => value == marker,
            _ => false,
        });
    key_signed && content_type_signed && metadata_signed
}

/// A store's error as `Code: Message` from its XML body, or the body itself (first 200
/// characters) when it has neither element.
fn error_of(body: &str) -> String {
    let element = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let close = format!("</{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&close)? + start;
        Some(body[start..end].to_owned())
    };
    match (element("Code"), element("Message")) {
        (None, None) => body.chars().take(200).collect(),
        (code, message) => format!("{}: {}", code.unwrap_or_default(), message.unwrap_or_default()),
    }
}

/// The statuses and errors the snapshot leaves out, for the record (`--nocapture`).
fn print_rows(rows: &[Row]) {
    for row in rows {
        eprintln!(
            "{}: {}: {} {} {:?}",
            row.store,
            row.variant,
            row.status,
            row.error.as_deref().unwrap_or(""),
            row.verdict
        );
    }
}
