//! AWS Signature Version 4 for `backendAuth.aws`: canonical request, string to sign, signing key.

use std::fmt::Write as _;

use ring::hmac;

use crate::digest::{hex, sha256_hex};

/// Credentials and scope of a signer.
pub struct Signer {
    access_key: String,
    secret_key: String,
    session_token: Option<String>,
    region: String,
    service: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("region", &self.region).field("service", &self.service).finish_non_exhaustive()
    }
}

/// What the request to sign looks like on the wire.
pub struct Request<'a> {
    /// Method.
    pub method: &'a str,
    /// `Host` header as sent.
    pub host: &'a str,
    /// Path as sent (percent-encoded).
    pub path: &'a str,
    /// Query string as sent, without `?`.
    pub query: Option<&'a str>,
    /// Hex SHA-256 of the body.
    pub payload_sha256: &'a str,
}

/// The headers a signature adds.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed {
    /// `x-amz-date`.
    pub date: String,
    /// `authorization`.
    pub authorization: String,
    /// `x-amz-security-token`, for temporary credentials.
    pub security_token: Option<String>,
}

impl Signer {
    /// A signer for `service` in `region`.
    pub fn new(
        access_key: String,
        secret_key: String,
        session_token: Option<String>,
        region: String,
        service: String,
    ) -> Self {
        Signer { access_key, secret_key, session_token, region, service }
    }

    /// Signs `r` at `amz_date` (`YYYYMMDDTHHMMSSZ`). Signed headers are `host`, `x-amz-date` and
    /// the session token if any: what every AWS service requires, and all that a client header
    /// copied through the gateway cannot change.
    pub fn sign(&self, r: &Request<'_>, amz_date: &str) -> Signed {
        let day = amz_date.get(..8).unwrap_or(amz_date);
        let mut signed_headers = String::from("host;x-amz-date");
        let mut canonical_headers = format!("host:{}\nx-amz-date:{amz_date}\n", r.host.trim());
        if let Some(t) = &self.session_token {
            signed_headers.push_str(";x-amz-security-token");
            let _ = writeln!(canonical_headers, "x-amz-security-token:{t}");
        }
        // S3 signs the path as sent; every other service signs it encoded once more.
        let path = if self.service == "s3" { r.path.to_string() } else { encode(r.path.as_bytes(), false) };
        let canonical = format!(
            "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
            r.method,
            if path.is_empty() { "/" } else { &path },
            canonical_query(r.query.unwrap_or("")),
            r.payload_sha256
        );
        let scope = format!("{day}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", sha256_hex(canonical.as_bytes()));
        let mut key = hmac_sign(format!("AWS4{}", self.secret_key).as_bytes(), day.as_bytes());
        for part in [self.region.as_str(), self.service.as_str(), "aws4_request"] {
            key = hmac_sign(&key, part.as_bytes());
        }
        let signature = hex(&hmac_sign(&key, to_sign.as_bytes()));
        Signed {
            date: amz_date.to_string(),
            authorization: format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                self.access_key
            ),
            security_token: self.session_token.clone(),
        }
    }
}

/// `YYYYMMDDTHHMMSSZ` for a Unix time.
pub fn amz_date(unix_secs: u64) -> String {
    let ts = crate::observe::access_log::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs));
    // 2026-11-23T07:05:00.000Z → 20261123T070500Z
    ts.chars().take(19).filter(|c| c.is_ascii_digit() || *c == 'T').collect::<String>() + "Z"
}

fn hmac_sign(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

/// RFC 3986 encoding as AWS wants it: unreserved characters kept, everything else `%XX`
/// (upper-case); `/` kept in paths.
fn encode(s: &[u8], slash_too: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (b == b'/' && !slash_too) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex_at = |j: usize| b.get(j).and_then(|c| (*c as char).to_digit(16));
        match (b[i], hex_at(i + 1), hex_at(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Parameters decoded, re-encoded strictly and sorted by name, then value.
fn canonical_query(q: &str) -> String {
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let enc = |s: &str| encode(&decode(s), true);
            (enc(k), enc(v))
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The credentials, scope and time of AWS's SigV4 test suite (aws-sig-v4-test-suite).
    fn suite() -> Signer {
        Signer::new(
            "AKIDEXAMPLE".into(),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            None,
            "us-east-1".into(),
            "service".into(),
        )
    }

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn get_vanilla_matches_the_aws_test_suite() {
        let r = Request { method: "GET", host: "example.amazonaws.com", path: "/", query: None, payload_sha256: EMPTY };
        let s = suite().sign(&r, "20150830T123600Z");
        assert_eq!(
            s.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
             SignedHeaders=host;x-amz-date, \
             Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
        assert_eq!(sha256_hex(b""), EMPTY);
    }

    #[test]
    fn query_is_sorted_and_strictly_encoded() {
        assert_eq!(canonical_query("b=2&a=1&a=0"), "a=0&a=1&b=2");
        assert_eq!(canonical_query("k=a b&x=%7e&y=%2f/"), "k=a%20b&x=~&y=%2F%2F");
        assert_eq!(canonical_query("flag"), "flag=");
        assert_eq!(encode(b"/a b/%41", false), "/a%20b/%2541", "non-S3 paths are encoded again");
    }

    #[test]
    fn session_tokens_are_signed_and_dates_formatted() {
        let mut s = suite();
        s.session_token = Some("tok".into());
        let r = Request { method: "POST", host: "h", path: "/x", query: Some("a=1"), payload_sha256: EMPTY };
        let signed = s.sign(&r, "20150830T123600Z");
        assert!(signed.authorization.contains("SignedHeaders=host;x-amz-date;x-amz-security-token,"));
        assert_eq!(signed.security_token.as_deref(), Some("tok"));
        assert_eq!(amz_date(1_440_938_160), "20150830T123600Z");
    }
}
