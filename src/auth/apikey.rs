//! API keys: held only as SHA-256 digests, looked up by the digest of what the client presents.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::security::ApiKeyEntry;
use crate::digest::{hex, sha256};

/// Who a key belongs to, as rules see it (`apiKey.key` and the metadata fields).
#[derive(Debug)]
pub struct KeyHolder {
    /// `sha256:` and the first 12 hex digits of the digest: names the key in logs without revealing it.
    pub id: String,
    /// The configured metadata.
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// The configured keys.
#[derive(Debug, Default)]
pub struct ApiKeys {
    by_digest: HashMap<[u8; 32], Arc<KeyHolder>>,
}

impl ApiKeys {
    /// Digest the keys; an entry needs exactly one of `key` and `sha256`. Errors name the entry.
    pub fn new(entries: &[ApiKeyEntry]) -> Result<ApiKeys, String> {
        let mut by_digest = HashMap::with_capacity(entries.len());
        for (i, e) in entries.iter().enumerate() {
            let digest: [u8; 32] = match (&e.key, &e.sha256) {
                (Some(k), None) if !k.is_empty() => sha256(k.as_bytes()),
                (None, Some(h)) => parse_hex32(h).ok_or_else(|| format!("keys[{i}].sha256: not 64 hex digits"))?,
                _ => return Err(format!("keys[{i}]: set exactly one of `key` and `sha256`")),
            };
            let holder = KeyHolder {
                id: format!("sha256:{}", &hex(&digest)[..12]),
                metadata: e.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            };
            if by_digest.insert(digest, Arc::new(holder)).is_some() {
                return Err(format!("keys[{i}]: the same key is configured twice"));
            }
        }
        Ok(ApiKeys { by_digest })
    }

    /// The holder of a presented key.
    pub fn lookup(&self, presented: &str) -> Option<&Arc<KeyHolder>> {
        let d = sha256(presented.as_bytes());
        self.by_digest.get(&d)
    }
}

fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.strip_prefix("sha256:").unwrap_or(s);
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: Option<&str>, sha: Option<&str>) -> ApiKeyEntry {
        let mut metadata = std::collections::BTreeMap::new();
        metadata.insert("team".to_string(), serde_json::json!("blue"));
        ApiKeyEntry { key: key.map(Into::into), sha256: sha.map(Into::into), metadata }
    }

    #[test]
    fn clear_and_hashed_keys_match() {
        let sha = hex(&sha256(b"k2"));
        let keys = ApiKeys::new(&[entry(Some("k1"), None), entry(None, Some(&sha))]).unwrap();
        assert_eq!(keys.lookup("k1").unwrap().metadata["team"], "blue");
        assert!(keys.lookup("k2").unwrap().id.starts_with("sha256:"));
        assert!(keys.lookup("k3").is_none());
        assert!(keys.lookup("").is_none());
    }

    #[test]
    fn bad_entries_are_named() {
        assert!(ApiKeys::new(&[entry(None, None)]).unwrap_err().starts_with("keys[0]"));
        assert!(ApiKeys::new(&[entry(Some("a"), Some("b"))]).is_err());
        assert!(ApiKeys::new(&[entry(None, Some("abc"))]).unwrap_err().contains("64 hex"));
        assert!(ApiKeys::new(&[entry(Some("a"), None), entry(Some("a"), None)]).unwrap_err().contains("twice"));
    }
}
