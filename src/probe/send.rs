//! Sends one probe attempt as a client would: a multipart form (built here, so a field can be
//! sent twice or in another case) or a PUT with headers. Keeps the status and the store's error
//! code, never the URL or the answer's text.

use std::time::Duration;

/// One upload as it goes on the wire.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub url: String,
    /// POST: the form fields in order (the file goes last); PUT: empty.
    pub fields: Vec<(String, String)>,
    /// PUT: the headers; POST: empty.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub post: bool,
}

/// How the store answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// 0: no answer (the connection closed or timed out).
    pub status: u16,
    pub code: Option<String>,
}

impl Answered {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// The probe's HTTP client, as a browser or app would send: no redirects followed.
#[derive(Clone)]
pub struct Sender(reqwest::Client);

pub fn client() -> Sender {
    Sender(
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a TLS backend is compiled in"),
    )
}

pub async fn send(Sender(http): &Sender, attempt: &Attempt) -> Answered {
    let request = if attempt.post {
        let boundary = format!("postgate-probe-{}", uuid::Uuid::new_v4().simple());
        http.post(&attempt.url)
            .header("Content-Type", format!("multipart/form-data; boundary={boundary}"))
            .body(form_body(&boundary, &attempt.fields, &attempt.body))
    } else {
        let mut request = http.put(&attempt.url).body(attempt.body.clone());
        for (name, value) in &attempt.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        request
    };
    match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            Answered {
                status,
                code: error_code(&text),
            }
        }
        Err(_) => Answered { status: 0, code: None },
    }
}

/// `multipart/form-data`: each field, then the file.
fn form_body(boundary: &str, fields: &[(String, String)], file: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(file.len() + 256 * (fields.len() + 1));
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"probe.txt\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// The `<Code>` of an S3 error document: letters and digits only, at most 64.
fn error_code(text: &str) -> Option<String> {
    let start = text.find("<Code>")? + "<Code>".len();
    let end = start + text[start..].find("</Code>")?;
    let code = &text[start..end];
    (!code.is_empty() && code.len() <= 64 && code.chars().all(|c| c.is_ascii_alphanumeric())).then(|| code.to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_plain_code_is_kept() {
        assert_eq!(
            super::error_code("<Error><Code>AccessDenied</Code><Message>x</Message></Error>").as_deref(),
            Some("AccessDenied")
        );
        assert_eq!(super::error_code("<Error><Code>http://x?sig=1</Code></Error>"), None);
        assert_eq!(super::error_code("no document"), None);
    }
}
