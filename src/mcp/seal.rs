//! Sealed gateway session ids: an opaque payload encrypted and authenticated (XChaCha20-Poly1305) into a URL-safe token.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

/// Bumped whenever the token layout or algorithm changes, so old tokens are rejected rather than misread.
const VERSION: u8 = 1;
/// Binds tokens to this use, so a key shared with another purpose cannot open (or be fooled by) other tokens.
const CONTEXT: &[u8] = b"ringgate-mcp-session-v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const HEADER_LEN: usize = 1 + NONCE_LEN;

/// Seals payloads into session ids and opens them again; ids are base64url(version || nonce || ciphertext || tag),
/// so only visible ASCII (`A-Z a-z 0-9 - _`).
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

impl Sealer {
    /// A sealer for this 256-bit key.
    pub fn new(key: [u8; 32]) -> Self {
        Sealer { cipher: XChaCha20Poly1305::new(&key.into()) }
    }

    /// From 64 hex characters (agentgateway's `config.session.key` format); the error names the problem.
    pub fn from_hex(hex: &str) -> Result<Self, String> {
        // Validate characters first so a multi-byte character is reported as such, not as a length error.
        if let Some(at) = hex.chars().position(|c| !c.is_ascii_hexdigit()) {
            return Err(format!("session key has a non-hex character at position {}", at + 1));
        }
        if hex.len() != 64 {
            return Err(format!("session key must be 64 hex characters (32 bytes), got {}", hex.len()));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(Self::new(key))
    }

    /// A fresh random key (sessions then do not survive a restart and are not shared with other replicas).
    pub fn random() -> Result<Self, String> {
        let mut key = [0u8; 32];
        getrandom::getrandom(&mut key).map_err(|e| format!("cannot generate a session key: {e}"))?;
        Ok(Self::new(key))
    }

    /// Encrypt `plaintext` under a fresh random nonce; fails only if the OS random source does.
    pub fn seal(&self, plaintext: &[u8]) -> Result<String, String> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| format!("cannot generate a session nonce: {e}"))?;
        let mut raw = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        raw.push(VERSION);
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(plaintext);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce.into(), CONTEXT, (&mut raw[HEADER_LEN..]).into())
            .map_err(|_| "session payload too long to seal")?;
        raw.extend_from_slice(&tag);
        Ok(URL_SAFE_NO_PAD.encode(raw))
    }

    /// None for anything not produced by this key: bad base64, wrong version, too short, tag mismatch.
    pub fn open(&self, token: &str) -> Option<Vec<u8>> {
        let mut raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() < HEADER_LEN + TAG_LEN || raw[0] != VERSION {
            return None;
        }
        let (header, rest) = raw.split_at_mut(HEADER_LEN);
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let nonce = XNonce::try_from(&header[1..]).ok()?;
        let tag = Tag::try_from(&*tag).ok()?;
        self.cipher.decrypt_inout_detached(&nonce, CONTEXT, body.into(), &tag).ok()?;
        Some(body.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX_KEY: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191A1B1C1D1E1F";

    fn sealer() -> Sealer {
        Sealer::from_hex(HEX_KEY).unwrap()
    }

    #[test]
    fn round_trip_and_fresh_nonce_each_time() {
        let s = sealer();
        for payload in [&b""[..], b"x", b"{\"upstreams\":[\"a\",\"b\"]}", &[0xff; 1000]] {
            let token = s.seal(payload).unwrap();
            assert_eq!(s.open(&token).as_deref(), Some(payload));
        }
        assert_ne!(s.seal(b"same").unwrap(), s.seal(b"same").unwrap());
    }

    #[test]
    fn from_hex_matches_new_and_is_case_insensitive() {
        let key: [u8; 32] = std::array::from_fn(|i| i as u8);
        let token = Sealer::new(key).seal(b"k").unwrap();
        assert_eq!(sealer().open(&token).as_deref(), Some(&b"k"[..]));
        assert_eq!(Sealer::from_hex(&HEX_KEY.to_uppercase()).unwrap().open(&token).as_deref(), Some(&b"k"[..]));
    }

    #[test]
    fn every_bit_flip_is_rejected() {
        let s = sealer();
        let raw = URL_SAFE_NO_PAD.decode(s.seal(b"session payload").unwrap()).unwrap();
        for byte in 0..raw.len() {
            for bit in 0..8 {
                let mut bad = raw.clone();
                bad[byte] ^= 1 << bit;
                assert_eq!(s.open(&URL_SAFE_NO_PAD.encode(&bad)), None, "byte {byte} bit {bit}");
            }
        }
    }

    #[test]
    fn malformed_tokens_are_rejected() {
        let s = sealer();
        let token = s.seal(b"p").unwrap();
        let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        assert_eq!(s.open(""), None);
        assert_eq!(s.open("not base64!"), None);
        assert_eq!(s.open(&format!("{token}=")), None);
        assert_eq!(s.open(&URL_SAFE_NO_PAD.encode(&raw[..HEADER_LEN + TAG_LEN - 1])), None);
        let mut extended = raw.clone();
        extended.push(0);
        assert_eq!(s.open(&URL_SAFE_NO_PAD.encode(&extended)), None);
        // Version 2 with an otherwise intact body must not be accepted as version 1.
        let mut v2 = raw;
        v2[0] = 2;
        assert_eq!(s.open(&URL_SAFE_NO_PAD.encode(&v2)), None);
    }

    #[test]
    fn other_keys_cannot_open() {
        let token = sealer().seal(b"p").unwrap();
        assert_eq!(Sealer::new([0; 32]).open(&token), None);
        assert_eq!(Sealer::random().unwrap().open(&token), None);
    }

    #[test]
    fn tokens_are_visible_ascii() {
        let s = Sealer::random().unwrap();
        for len in 0..64 {
            let token = s.seal(&vec![0xa5; len]).unwrap();
            assert!(token.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{token}");
        }
    }

    #[test]
    fn from_hex_names_the_problem() {
        assert_eq!(Sealer::from_hex("abcd").unwrap_err(), "session key must be 64 hex characters (32 bytes), got 4");
        assert!(Sealer::from_hex(&HEX_KEY[..63]).is_err());
        let mut bad = HEX_KEY.to_owned();
        bad.replace_range(9..10, "g");
        assert_eq!(Sealer::from_hex(&bad).unwrap_err(), "session key has a non-hex character at position 10");
        // 64 bytes but 63 characters: must be reported as the bad character, not sliced mid-character.
        let multibyte = format!("{}é", &HEX_KEY[..62]);
        assert_eq!(multibyte.len(), 64);
        assert_eq!(Sealer::from_hex(&multibyte).unwrap_err(), "session key has a non-hex character at position 63");
        assert!(Sealer::from_hex(" 0").unwrap_err().contains("position 1"));
        assert!(format!("{:?}", sealer()).contains("redacted"));
    }
}
