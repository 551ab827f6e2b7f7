//! What a store enforces, as `postgate probe` found it, and what a profile relies on the store to
//! enforce. Pure: the probe (IO) fills `Enforcement`; `check`, the profile endpoint and the probe's
//! own report read `gaps`.

use serde::{Deserialize, Serialize};

use super::{Method, Profile};

crate::listed_enum! {
/// A constraint a signature asks the store to enforce. Each probe case tries to break one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Constraint {
    /// POST: the body's size within `content-length-range`.
    SizeRange,
    /// PUT and parts: the body is exactly the signed `Content-Length`.
    ExactLength,
    /// The signed `Content-Type`.
    ContentType,
    /// The signed `x-amz-meta-*` values, none dropped or added.
    Metadata,
    /// PUT: an `x-amz-*` header the URL did not sign (acl, copy source, storage class, SSE,
    /// tagging, metadata) is refused.
    UnsignedHeaders,
    /// POST: a form field no policy condition covers is refused.
    ExtraFields,
    /// POST: a field sent twice, or in another case, cannot get an unsigned value stored.
    DuplicateFields,
    /// A declared checksum: bytes that do not match are refused and not written.
    Checksum,
    /// PUT `If-None-Match: *` (`overwrite: false`): an existing object is not replaced.
    Overwrite,
    /// An expired signature is refused.
    Expiry,
    /// The signed key: no other key is written.
    Key,
    /// The per-upload marker (`x-amz-meta-postgate-upload`) cannot be dropped or changed.
    Marker,
    /// Multipart: a part of another size than its URL signs is refused.
    PartSize,
}
}

impl Constraint {
    /// The name in tables, JSON and warnings.
    pub fn name(self) -> &'static str {
        match self {
            Constraint::SizeRange => "size-range",
            Constraint::ExactLength => "exact-length",
            Constraint::ContentType => "content-type",
            Constraint::Metadata => "metadata",
            Constraint::UnsignedHeaders => "unsigned-headers",
            Constraint::ExtraFields => "extra-fields",
            Constraint::DuplicateFields => "duplicate-fields",
            Constraint::Checksum => "checksum",
            Constraint::Overwrite => "overwrite",
            Constraint::Expiry => "expiry",
            Constraint::Key => "key",
            Constraint::Marker => "marker",
            Constraint::PartSize => "part-size",
        }
    }

    /// What an operator does about a store that does not enforce it.
    pub fn advice(self) -> &'static str {
        match self {
            Constraint::Overwrite => {
                "overwrite: false is not enforced by this store; use verify with staging instead (uploads land \
                 under the staging prefix and only `complete` writes the key)"
            }
            Constraint::UnsignedHeaders => {
                "a PUT URL holder can add x-amz-* headers the URL did not sign; deny them in the bucket policy, or \
                 serve the profile by POST"
            }
            Constraint::Checksum => {
                "bytes with a wrong checksum are not refused, or are written before the refusal; call `complete` \
                 (it checks the stored object) and keep verify on"
            }
            Constraint::ExtraFields | Constraint::DuplicateFields => {
                "form fields the policy does not cover are taken; call `complete` so the stored object is checked, \
                 or serve the profile by PUT"
            }
            Constraint::SizeRange | Constraint::ExactLength | Constraint::PartSize => {
                "a body of another size is stored; call `complete` (it checks the stored size)"
            }
            Constraint::ContentType | Constraint::Metadata | Constraint::Marker => {
                "a changed value is stored; call `complete` (it checks the stored object and its marker)"
            }
            Constraint::Expiry | Constraint::Key => "this store cannot be used for signed uploads",
        }
    }
}

/// How a store answered one probe case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Refused, and nothing outside what was signed was written.
    Enforced,
    /// Taken: something the signature did not allow was stored.
    NotEnforced,
    /// Refused, but the bytes were written first.
    WroteThenRefused,
    /// Not tried: the store does not take the method, or the unchanged upload failed.
    Untested,
}

impl Verdict {
    /// Whether a profile relying on the constraint is exposed.
    pub fn is_gap(self) -> bool {
        matches!(self, Verdict::NotEnforced | Verdict::WroteThenRefused)
    }

    pub fn name(self) -> &'static str {
        match self {
            Verdict::Enforced => "enforced",
            Verdict::NotEnforced => "not enforced",
            Verdict::WroteThenRefused => "wrote, then refused",
            Verdict::Untested => "untested",
        }
    }
}

/// The method a probe case uses: a profile served by that method relies on what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeMethod {
    Post,
    Put,
    Multipart,
}

impl ProbeMethod {
    pub fn name(self) -> &'static str {
        match self {
            ProbeMethod::Post => "post",
            ProbeMethod::Put => "put",
            ProbeMethod::Multipart => "multipart",
        }
    }
}

/// One case's result: what was tried and how the store answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseResult {
    /// The case's stable id (`put-overwrite`).
    pub case: String,
    pub method: ProbeMethod,
    pub constraint: Constraint,
    pub verdict: Verdict,
    /// The store's HTTP status (0: the connection closed before an answer).
    pub status: u16,
    /// The store's error code, when it gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// What the probe found a store enforces: the file `stores.<name>.probe` names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enforcement {
    pub cases: Vec<CaseResult>,
}

impl Enforcement {
    /// The worst verdict over the cases of `constraint` by `method`; `None` if none ran.
    pub fn verdict(&self, method: ProbeMethod, constraint: Constraint) -> Option<Verdict> {
        self.cases
            .iter()
            .filter(|c| c.method == method && c.constraint == constraint && c.verdict != Verdict::Untested)
            .map(|c| c.verdict)
            .max_by_key(|v| match v {
                Verdict::Enforced | Verdict::Untested => 0,
                Verdict::WroteThenRefused => 1,
                Verdict::NotEnforced => 2,
            })
    }
}

/// A constraint one of the profile's methods relies on and the store does not enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    pub method: ProbeMethod,
    pub constraint: Constraint,
    pub verdict: Verdict,
    pub advice: &'static str,
}

/// The constraints each method of `profile` relies on the store for, in `Constraint` order.
pub fn relies_on(profile: &Profile) -> Vec<(ProbeMethod, Constraint)> {
    let mut out = Vec::new();
    let mut methods: Vec<ProbeMethod> = profile
        .plan()
        .methods()
        .iter()
        .map(|m| match m {
            Method::Post => ProbeMethod::Post,
            Method::Put => ProbeMethod::Put,
        })
        .collect();
    if profile.multipart().is_some() && profile.plan().multipart_unavailable().is_none() {
        methods.push(ProbeMethod::Multipart);
    }
    let size = profile.size();
    let sized = size.min > 0 || size.max < super::MAX_OBJECT_BYTES;
    for method in methods {
        for &constraint in Constraint::ALL {
            let relied = match constraint {
                Constraint::SizeRange => method == ProbeMethod::Post && sized,
                Constraint::ExactLength => method == ProbeMethod::Put,
                Constraint::PartSize => method == ProbeMethod::Multipart,
                Constraint::ContentType => method != ProbeMethod::Post || profile.content_type().is_some(),
                Constraint::Metadata => !profile.metadata().is_empty() || !profile.fields().is_empty(),
                Constraint::UnsignedHeaders => method == ProbeMethod::Put,
                Constraint::ExtraFields | Constraint::DuplicateFields => method == ProbeMethod::Post,
                Constraint::Checksum => profile.checksum().required && method != ProbeMethod::Multipart,
                Constraint::Overwrite => !profile.overwrite() && method == ProbeMethod::Put,
                Constraint::Expiry | Constraint::Key | Constraint::Marker => true,
            };
            if relied {
                out.push((method, constraint));
            }
        }
    }
    out
}

/// The gaps of `profile` on a store that enforces `enforcement`. A constraint the probe did not
/// try by that method is no gap (the probe's report says it was not tried).
pub fn gaps(profile: &Profile, enforcement: &Enforcement) -> Vec<Gap> {
    relies_on(profile)
        .into_iter()
        .filter_map(|(method, constraint)| {
            let verdict = enforcement.verdict(method, constraint)?;
            verdict.is_gap().then(|| Gap {
                method,
                constraint,
                verdict,
                advice: constraint.advice(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{ProfileName, parse};

    fn profile(yaml: &str) -> Profile {
        parse(&ProfileName::new("p").unwrap(), yaml).unwrap()
    }

    fn found(method: ProbeMethod, constraint: Constraint, verdict: Verdict) -> CaseResult {
        CaseResult {
            case: format!("{}-{}", method.name(), constraint.name()),
            method,
            constraint,
            verdict,
            status: 200,
            code: None,
        }
    }

    #[test]
    fn overwrite_false_relies_on_if_none_match() {
        let garage = Enforcement {
            cases: vec![
                found(ProbeMethod::Put, Constraint::Overwrite, Verdict::NotEnforced),
                found(ProbeMethod::Put, Constraint::Key, Verdict::Enforced),
            ],
        };
        let plain = profile("bucket: bkt\napps: all\nkey: \"a/${uuid}\"\nsize: { max: 1KiB }\noverwrite: false\n");
        let gaps = gaps(&plain, &garage);
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(
            (gaps[0].method, gaps[0].constraint),
            (ProbeMethod::Put, Constraint::Overwrite)
        );
        assert!(gaps[0].advice.contains("verify with staging"));
        let replaceable = profile("bucket: bkt\napps: all\nkey: \"a/${uuid}\"\nsize: { max: 1KiB }\n");
        assert!(super::gaps(&replaceable, &garage).is_empty());
    }

    #[test]
    fn the_worst_verdict_of_a_constraint_counts() {
        let store = Enforcement {
            cases: vec![
                found(ProbeMethod::Put, Constraint::UnsignedHeaders, Verdict::Enforced),
                found(ProbeMethod::Put, Constraint::UnsignedHeaders, Verdict::NotEnforced),
                found(ProbeMethod::Put, Constraint::Checksum, Verdict::WroteThenRefused),
                found(ProbeMethod::Post, Constraint::Checksum, Verdict::Untested),
            ],
        };
        assert_eq!(
            store.verdict(ProbeMethod::Put, Constraint::UnsignedHeaders),
            Some(Verdict::NotEnforced)
        );
        assert_eq!(
            store.verdict(ProbeMethod::Put, Constraint::Checksum),
            Some(Verdict::WroteThenRefused)
        );
        assert_eq!(store.verdict(ProbeMethod::Post, Constraint::Checksum), None);
    }
}
