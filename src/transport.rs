//! How a failed call of the HTTP client is worded for a log line or an answer: a few words and
//! the chain of causes, never the URL (the store's calls are presigned, so theirs holds the
//! access key id, the session token and the signature). Shared by the store client and the
//! JWKS fetch, which import nothing else of each other.

/// A failed HTTP call in a few words, with its chain of causes, and never its URL: the
/// gateway's own calls are presigned, so a URL holds the access key id, the session token and
/// the signature (`reqwest` ends its message with the whole URL unless told not to).
pub fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection refused or unreachable".into()
    } else {
        let mut text = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            text.push_str(": ");
            text.push_str(&inner.to_string());
            source = inner.source();
        }
        text
    }
}

/// What is wrong with a URL the gateway calls on its own (a JWKS, an app's event endpoint).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlProblem {
    /// Not a URL; the parser's reason.
    NotAUrl(String),
    /// It carries a user name or password.
    Credentials,
    /// Neither https nor http to a loopback host.
    NotHttps,
}

/// A URL the gateway calls on its own: https, or http to a loopback host, with no credentials.
pub fn check_own_url(url: &str) -> Result<(), UrlProblem> {
    let parsed = reqwest::Url::parse(url).map_err(|e| UrlProblem::NotAUrl(e.to_string()))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlProblem::Credentials);
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(UrlProblem::NotHttps),
    }
}
