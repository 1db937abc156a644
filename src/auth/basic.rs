//! HTTP Basic authentication against htpasswd bcrypt entries, with a per-shard cache of checked credentials.

use std::collections::HashMap;
use std::rc::Rc;

use base64::Engine;

/// Users and their bcrypt hashes.
#[derive(Debug, Default)]
pub struct Htpasswd {
    users: HashMap<String, String>,
}

impl Htpasswd {
    /// Parse `user:hash` lines (blank lines and `#` comments skipped). Only bcrypt hashes are
    /// accepted: the older htpasswd formats (crypt, MD5-apr1, SHA-1) are too weak to offer.
    pub fn parse(text: &str) -> Result<Htpasswd, String> {
        let mut users = HashMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line.split_once(':').ok_or_else(|| format!("line {}: expected `user:hash`", n + 1))?;
            if !["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
                return Err(format!("line {}: user `{user}` has no bcrypt hash (create it with `htpasswd -B`)", n + 1));
            }
            users.insert(user.to_string(), hash.to_string());
        }
        if users.is_empty() {
            return Err("no users".into());
        }
        Ok(Htpasswd { users })
    }

    /// Check `user:password`; the user when it matches.
    fn check(&self, user: &str, password: &str) -> bool {
        self.users.get(user).is_some_and(|h| bcrypt::verify(password, h).unwrap_or(false))
    }
}

/// The user of an `Authorization: Basic …` value, or why there is none.
pub fn credentials(value: &str) -> Option<(String, String)> {
    let b64 = value.strip_prefix("Basic ").or_else(|| value.strip_prefix("basic "))?.trim();
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// Credentials a shard has already verified. bcrypt costs milliseconds by design; without this
/// every request would spend them on the shard's only thread.
#[derive(Default)]
pub struct VerifiedCache {
    ok: HashMap<[u8; 32], Rc<str>>,
}

const CACHE_CAP: usize = 1024;

impl VerifiedCache {
    /// The user, when `user:password` is valid for `db` (identified by `db_id`, so a reloaded file
    /// with other passwords is not served from old entries).
    pub fn verify(&mut self, db: &Htpasswd, db_id: usize, user: &str, password: &str) -> Option<Rc<str>> {
        let mut h = ring::digest::Context::new(&ring::digest::SHA256);
        h.update(&db_id.to_le_bytes());
        h.update(user.as_bytes());
        h.update(&[0]);
        h.update(password.as_bytes());
        let mut key = [0u8; 32];
        key.copy_from_slice(h.finish().as_ref());
        if let Some(u) = self.ok.get(&key) {
            return Some(u.clone());
        }
        if !db.check(user, password) {
            return None;
        }
        if self.ok.len() >= CACHE_CAP {
            self.ok.clear();
        }
        let u: Rc<str> = user.into();
        self.ok.insert(key, u.clone());
        Some(u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htpasswd_lines() {
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let db = Htpasswd::parse(&format!("# users\n\nalice:{hash}\n")).unwrap();
        let mut cache = VerifiedCache::default();
        assert_eq!(cache.verify(&db, 1, "alice", "s3cret").as_deref(), Some("alice"));
        assert_eq!(cache.verify(&db, 1, "alice", "s3cret").as_deref(), Some("alice"));
        assert!(cache.verify(&db, 1, "alice", "wrong").is_none());
        assert!(cache.verify(&db, 1, "bob", "s3cret").is_none());
        assert!(Htpasswd::parse("bob:{SHA}abc").unwrap_err().contains("bcrypt"));
        assert!(Htpasswd::parse("nocolon").unwrap_err().contains("line 1"));
        assert!(Htpasswd::parse("").is_err());
    }

    #[test]
    fn basic_header() {
        assert_eq!(credentials("Basic YWxpY2U6cDpx"), Some(("alice".into(), "p:q".into())));
        assert_eq!(credentials("Bearer x"), None);
        assert_eq!(credentials("Basic !!!"), None);
    }
}
