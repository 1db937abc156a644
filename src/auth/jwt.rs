//! JWT (RFC 7519) verification: JWKS key sets, signature and claim checks, and a per-shard cache of verified tokens.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::rc::Rc;

use base64::engine::general_purpose::{URL_SAFE_NO_PAD, URL_SAFE_NO_PAD_INDIFFERENT};
use base64::Engine;
use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Default for [`Provider::leeway_secs`]: the clock skew tolerated on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY_SECS: u64 = 60;
/// Default for [`Provider::max_token_bytes`].
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Suggested [`TokenCache`] capacity per shard.
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;
/// Suggested [`TokenCache`] entry lifetime: bounds how long a token outlives a change the cache cannot see.
pub const DEFAULT_CACHE_MAX_AGE_SECS: u64 = 300;

/// A JWS signature algorithm this module verifies. Only asymmetric ones exist here: an HMAC
/// algorithm would let anyone holding the (public) verification key mint tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    Rs512,
    /// RSASSA-PSS with SHA-256.
    Ps256,
    /// RSASSA-PSS with SHA-384.
    Ps384,
    /// RSASSA-PSS with SHA-512.
    Ps512,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// ECDSA on P-384 with SHA-384.
    Es384,
    /// Ed25519 (the only `EdDSA` curve supported).
    EdDsa,
}

const ALL_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
    Algorithm::Es256,
    Algorithm::Es384,
    Algorithm::EdDsa,
];

impl Algorithm {
    /// The algorithms accepted when a provider names none: every supported one.
    pub const DEFAULT: &'static [Algorithm] = &ALL_ALGORITHMS;

    /// The JOSE name (`RS256`, `EdDSA`, …).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Rs256 => "RS256",
            Algorithm::Rs384 => "RS384",
            Algorithm::Rs512 => "RS512",
            Algorithm::Ps256 => "PS256",
            Algorithm::Ps384 => "PS384",
            Algorithm::Ps512 => "PS512",
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::EdDsa => "EdDSA",
        }
    }

    /// The algorithm with this exact JOSE name, if supported.
    pub fn from_name(name: &str) -> Option<Algorithm> {
        ALL_ALGORITHMS.into_iter().find(|a| a.name() == name)
    }

    /// Config names to an allow-list; empty means [`Algorithm::DEFAULT`]. `none` and HMAC are
    /// refused with an explanation rather than as merely unknown.
    pub fn parse_list(names: &[String]) -> Result<Vec<Algorithm>, String> {
        if names.is_empty() {
            return Ok(Algorithm::DEFAULT.to_vec());
        }
        let mut out = Vec::new();
        for name in names {
            if name.eq_ignore_ascii_case("none") || name.to_ascii_uppercase().starts_with("HS") {
                return Err(format!(
                    "JWT algorithm `{name}` is never accepted: `none` is unsigned and HMAC would let anyone \
                     holding the verification key mint tokens"
                ));
            }
            let alg = Algorithm::from_name(name).ok_or_else(|| {
                let known: Vec<_> = ALL_ALGORITHMS.iter().map(|a| a.name()).collect();
                format!("unknown JWT algorithm `{name}` (supported: {})", known.join(", "))
            })?;
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        Ok(out)
    }
}

/// A JOSE algorithm name as a static string, so errors can say which algorithm was refused
/// without echoing attacker-chosen text.
fn known_alg_name(name: &str) -> &'static str {
    const KNOWN: [&str; 20] = [
        "none", "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
        "ES512", "ES256K", "EdDSA", "Ed25519", "Ed448", "RSA-OAEP", "RSA1_5", "dir",
    ];
    KNOWN.into_iter().find(|k| *k == name).unwrap_or("(unrecognised)")
}

/// Public key material, validated at JWKS load so verification cannot fail on the key itself.
#[derive(Clone)]
enum Material {
    /// Big-endian modulus and exponent, leading zeros stripped (ring requires that).
    Rsa {
        n: Box<[u8]>,
        e: Box<[u8]>,
    },
    /// Uncompressed SEC1 point `04 || x || y`.
    P256(Box<[u8]>),
    /// Uncompressed SEC1 point `04 || x || y`.
    P384(Box<[u8]>),
    Ed25519([u8; 32]),
}

/// One verification key of a [`KeySet`].
#[derive(Clone)]
pub struct Jwk {
    kid: Option<String>,
    alg: Option<Algorithm>,
    key_use: Option<String>,
    material: Material,
}

impl fmt::Debug for Jwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("kty", &self.kty())
            .field("alg", &self.alg.map(Algorithm::name))
            .finish()
    }
}

impl Jwk {
    /// The key id (`kid`), if the JWK has one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The algorithm the JWK is restricted to (`alg`), if any.
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }

    /// The JWK `use` (always `sig` or absent: encryption keys are skipped at load).
    pub fn key_use(&self) -> Option<&str> {
        self.key_use.as_deref()
    }

    /// `RSA`, `EC` or `OKP`.
    pub fn kty(&self) -> &'static str {
        match self.material {
            Material::Rsa { .. } => "RSA",
            Material::P256(_) | Material::P384(_) => "EC",
            Material::Ed25519(_) => "OKP",
        }
    }

    /// Whether this key may verify a token of `alg`: the key type and curve must match the
    /// algorithm, and a JWK `alg` pins it to exactly that one.
    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        if self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        matches!(
            (&self.material, alg),
            (Material::Rsa { .. }, Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512)
                | (Material::P256(_), Es256)
                | (Material::P384(_), Es384)
                | (Material::Ed25519(_), EdDsa)
        )
    }

    /// Check `signature` over `msg`; `fits(alg)` must hold (otherwise the answer is `false`).
    fn verify(&self, alg: Algorithm, msg: &[u8], signature: &[u8]) -> bool {
        let rsa = |params: &'static sig::RsaParameters| match &self.material {
            Material::Rsa { n, e } => RsaPublicKeyComponents { n, e }.verify(params, msg, signature).is_ok(),
            _ => false,
        };
        match (alg, &self.material) {
            (Algorithm::Rs256, _) => rsa(&sig::RSA_PKCS1_2048_8192_SHA256),
            (Algorithm::Rs384, _) => rsa(&sig::RSA_PKCS1_2048_8192_SHA384),
            (Algorithm::Rs512, _) => rsa(&sig::RSA_PKCS1_2048_8192_SHA512),
            (Algorithm::Ps256, _) => rsa(&sig::RSA_PSS_2048_8192_SHA256),
            (Algorithm::Ps384, _) => rsa(&sig::RSA_PSS_2048_8192_SHA384),
            (Algorithm::Ps512, _) => rsa(&sig::RSA_PSS_2048_8192_SHA512),
            (Algorithm::Es256, Material::P256(point)) => {
                UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point).verify(msg, signature).is_ok()
            }
            (Algorithm::Es384, Material::P384(point)) => {
                UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point).verify(msg, signature).is_ok()
            }
            (Algorithm::EdDsa, Material::Ed25519(x)) => {
                UnparsedPublicKey::new(&sig::ED25519, x).verify(msg, signature).is_ok()
            }
            _ => false,
        }
    }
}

/// The fields of a JWK this module reads; serde refuses a repeated field, so a JWK cannot say
/// two different things about itself.
#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    key_use: Option<String>,
    #[serde(default)]
    key_ops: Option<Vec<String>>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// The verification keys of one issuer, parsed from a JWKS.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<Jwk>,
    skipped: Vec<String>,
}

impl KeySet {
    /// No keys: what a URL source serves until its first successful fetch (every token is then
    /// refused with an unknown `kid`).
    pub fn empty() -> KeySet {
        KeySet { keys: Vec::new(), skipped: Vec::new() }
    }

    /// Parse a JWKS (`{"keys": [...]}`, RFC 7517) or a single JWK object. Keys that cannot verify
    /// signatures here (other key types or curves, `use: enc`, RSA under 2048 bits, bad encodings)
    /// are skipped and listed in [`KeySet::skipped`]; it is an error only when no key is left.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| format!("the JWKS is not valid JSON: {e}"))?;
        let raw_keys = match doc {
            Value::Object(mut o) => match o.remove("keys") {
                Some(Value::Array(keys)) => keys,
                Some(_) => return Err("the JWKS `keys` member is not an array".into()),
                None if o.contains_key("kty") => vec![Value::Object(o)],
                None => return Err("the JWKS has neither `keys` nor `kty`".into()),
            },
            _ => return Err("the JWKS is not a JSON object".into()),
        };
        let mut keys = Vec::new();
        let mut skipped = Vec::new();
        for (i, raw) in raw_keys.into_iter().enumerate() {
            let kid = raw.get("kid").and_then(Value::as_str).map(str::to_owned);
            match parse_jwk(raw) {
                Ok(material_and_meta) => keys.push(Jwk { kid, ..material_and_meta }),
                Err(why) => skipped.push(match &kid {
                    Some(kid) => format!("key {i} (kid {kid:.64}): {why}"),
                    None => format!("key {i}: {why}"),
                }),
            }
        }
        if keys.is_empty() {
            let detail = if skipped.is_empty() { String::new() } else { format!(": {}", skipped.join("; ")) };
            return Err(format!("the JWKS has no usable signing key ({} skipped{detail})", skipped.len()));
        }
        Ok(KeySet { keys, skipped })
    }

    /// The usable keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// One line per skipped key, saying which and why (for a load-time warning).
    pub fn skipped(&self) -> &[String] {
        &self.skipped
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true for a set built by [`KeySet::from_jwks`].
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Base64url as JWKs are written in the wild: padding tolerated (the issuer is trusted config, and
/// some pad), trailing garbage bits not.
fn jwk_b64(field: &'static str, v: Option<&String>) -> Result<Vec<u8>, String> {
    let v = v.ok_or_else(|| format!("missing `{field}`"))?;
    URL_SAFE_NO_PAD_INDIFFERENT.decode(v).map_err(|_| format!("`{field}` is not base64url"))
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[first..]
}

/// A JWK's key material and metadata (`kid` is filled in by the caller, which needs it for errors).
fn parse_jwk(raw: Value) -> Result<Jwk, String> {
    let raw: RawJwk = serde_json::from_value(raw).map_err(|e| format!("not a valid JWK: {e}"))?;
    match raw.key_use.as_deref() {
        None | Some("sig") => {}
        Some("enc") => return Err("an encryption key (`use: enc`)".into()),
        Some(other) => return Err(format!("unknown `use` {other:.32}")),
    }
    if raw.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|o| o == "verify")) {
        return Err("`key_ops` does not include `verify`".into());
    }
    let alg = match raw.alg.as_deref() {
        None => None,
        Some(a) => Some(Algorithm::from_name(a).ok_or_else(|| format!("unsupported `alg` {a:.32}"))?),
    };
    let material = match raw.kty.as_str() {
        "RSA" => {
            let n = jwk_b64("n", raw.n.as_ref())?;
            let e = jwk_b64("e", raw.e.as_ref())?;
            let (n, e) = (strip_leading_zeros(&n), strip_leading_zeros(&e));
            // ring's bounds, checked here so a bad key is reported at load rather than
            // failing every token as a bad signature
            if n.len() < 256 {
                return Err(format!("RSA modulus of {} bits is below the 2048-bit minimum", n.len() * 8));
            }
            if n.len() > 1024 {
                return Err("RSA modulus above 8192 bits".into());
            }
            if n.last().is_some_and(|b| b & 1 == 0) {
                return Err("RSA modulus is even".into());
            }
            let e_val = e.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
            if e.len() > 5 || !(3..1 << 33).contains(&e_val) || e_val & 1 == 0 {
                return Err("RSA public exponent is not an odd number from 3 to 2^33-1".into());
            }
            Material::Rsa { n: n.into(), e: e.into() }
        }
        "EC" => {
            let (len, p384) = match raw.crv.as_deref() {
                Some("P-256") => (32, false),
                Some("P-384") => (48, true),
                Some(c) => return Err(format!("unsupported EC curve {c:.32}")),
                None => return Err("EC key without `crv`".into()),
            };
            let x = jwk_b64("x", raw.x.as_ref())?;
            let y = jwk_b64("y", raw.y.as_ref())?;
            if x.len() != len || y.len() != len {
                return Err(format!("EC coordinates must be {len} bytes each"));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            if p384 {
                Material::P384(point.into())
            } else {
                Material::P256(point.into())
            }
        }
        "OKP" => match raw.crv.as_deref() {
            Some("Ed25519") => {
                let x = jwk_b64("x", raw.x.as_ref())?;
                Material::Ed25519(x.try_into().map_err(|_| "Ed25519 `x` must be 32 bytes".to_string())?)
            }
            Some(c) => return Err(format!("unsupported OKP curve {c:.32}")),
            None => return Err("OKP key without `crv`".into()),
        },
        "oct" => return Err("a symmetric (`oct`) key: HMAC tokens are never accepted".into()),
        other => return Err(format!("unsupported key type {other:.32}")),
    };
    let jwk = Jwk { kid: None, alg, key_use: raw.key_use, material };
    if let Some(a) = alg {
        if !jwk.fits(a) {
            return Err(format!("`alg` {} does not fit a {} key", a.name(), jwk.kty()));
        }
    }
    Ok(jwk)
}

/// Which registered claims a token must carry (beyond what `issuer`/`audiences` already demand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredClaims {
    /// `exp` must be present (default, as agentgateway).
    pub exp: bool,
    /// `nbf` must be present.
    pub nbf: bool,
    /// `iss` must be present.
    pub iss: bool,
    /// `aud` must be present.
    pub aud: bool,
    /// `sub` must be present.
    pub sub: bool,
}

impl Default for RequiredClaims {
    fn default() -> Self {
        RequiredClaims { exp: true, nbf: false, iss: false, aud: false, sub: false }
    }
}

impl RequiredClaims {
    /// From config names (`exp`, `nbf`, `iss`, `aud`, `sub`). An explicit empty list requires nothing.
    pub fn parse(names: &[String]) -> Result<RequiredClaims, String> {
        let mut r = RequiredClaims { exp: false, nbf: false, iss: false, aud: false, sub: false };
        for n in names {
            match n.as_str() {
                "exp" => r.exp = true,
                "nbf" => r.nbf = true,
                "iss" => r.iss = true,
                "aud" => r.aud = true,
                "sub" => r.sub = true,
                other => return Err(format!("unknown required claim `{other}` (known: exp, nbf, iss, aud, sub)")),
            }
        }
        Ok(r)
    }
}

/// What a token must satisfy, besides a valid signature by a key of the [`KeySet`].
#[derive(Debug, Clone)]
pub struct Provider {
    /// Required `iss` (exact match); `None` accepts any issuer.
    pub issuer: Option<String>,
    /// Accepted `aud` values, any one of which must be in the token; empty accepts any audience.
    pub audiences: Vec<String>,
    /// Accepted `alg` values (see [`Algorithm::parse_list`]).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// Longer tokens are refused before any decoding.
    pub max_token_bytes: usize,
    /// Claims that must be present.
    pub required: RequiredClaims,
}

impl Default for Provider {
    fn default() -> Self {
        Provider {
            issuer: None,
            audiences: Vec::new(),
            algorithms: Algorithm::DEFAULT.to_vec(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            required: RequiredClaims::default(),
        }
    }
}

/// Why a token was refused. `Display` is safe to send to the client: it names the problem and
/// never repeats the token or any free text from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// No token in the request (decided by the caller, which knows where tokens are carried).
    #[error("no bearer token in the request")]
    Missing,
    /// Longer than [`Provider::max_token_bytes`].
    #[error("the token is larger than accepted")]
    TooLarge,
    /// Not a well-formed compact JWS; says which part.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, HMAC, unknown or not in the provider's list.
    #[error("the token algorithm {0} is not accepted")]
    AlgorithmNotAllowed(&'static str),
    /// The token names a `kid` the key set does not have (perhaps rotated in since the last fetch).
    #[error("the token's key id (kid) is not among the issuer's keys")]
    UnknownKid,
    /// No key (with the token's `kid`, or any when it has none) fits the token's algorithm.
    #[error("no key of the issuer fits the token's algorithm")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("the token signature is invalid")]
    BadSignature,
    /// `exp` is required and absent.
    #[error("the token has no expiry (exp)")]
    MissingExp,
    /// Another required claim is absent.
    #[error("the token has no {0} claim")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong JSON type or an impossible value.
    #[error("the token's {0} claim is invalid")]
    InvalidClaim(&'static str),
    /// `exp` (plus leeway) has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` (minus leeway) is still ahead.
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    /// `iat` (minus leeway) is in the future.
    #[error("the token's issue time (iat) is in the future")]
    IssuedInFuture,
    /// `iss` is absent or not the provider's issuer.
    #[error("the token's issuer (iss) is not accepted")]
    WrongIssuer,
    /// `aud` is absent or names none of the provider's audiences.
    #[error("the token's audience (aud) is not accepted")]
    WrongAudience,
}

impl JwtError {
    /// Metric label: snake_case, `jwt_` prefixed.
    pub fn reason(&self) -> &'static str {
        match self {
            JwtError::Missing => "jwt_missing",
            JwtError::TooLarge => "jwt_too_large",
            JwtError::Malformed(_) => "jwt_malformed",
            JwtError::AlgorithmNotAllowed(_) => "jwt_algorithm_not_allowed",
            JwtError::UnknownKid => "jwt_unknown_kid",
            JwtError::KeyMismatch => "jwt_key_mismatch",
            JwtError::BadSignature => "jwt_bad_signature",
            JwtError::MissingExp => "jwt_missing_exp",
            JwtError::MissingClaim(_) => "jwt_missing_claim",
            JwtError::InvalidClaim(_) => "jwt_invalid_claim",
            JwtError::Expired => "jwt_expired",
            JwtError::NotYetValid => "jwt_not_yet_valid",
            JwtError::IssuedInFuture => "jwt_issued_in_future",
            JwtError::WrongIssuer => "jwt_wrong_issuer",
            JwtError::WrongAudience => "jwt_wrong_audience",
        }
    }
}

/// The payload of a verified token.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    /// Every claim as sent (top-level names are unique: a repeated one fails verification).
    pub payload: Map<String, Value>,
    /// `exp` in Unix seconds (fractions rounded down).
    pub exp: Option<u64>,
    /// `sub`, when it is a string.
    pub sub: Option<String>,
}

/// The JOSE header fields read; unknown ones are ignored, and `jwk`/`jku`/`x5u` in particular are
/// never trusted (keys come only from the configured set). serde refuses a repeated `alg`/`kid`.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
}

/// A JSON object whose top-level names must be unique: two `sub`s would let two readers of the same
/// token see different identities.
struct UniqueMap(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<UniqueMap, A::Error> {
                let mut m = Map::new();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    if m.insert(k, v).is_some() {
                        return Err(de::Error::custom("repeated claim"));
                    }
                }
                Ok(UniqueMap(m))
            }
        }
        d.deserialize_map(V)
    }
}

fn b64(segment: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(segment).ok()
}

/// The three segments of a compact JWS.
fn split(token: &str) -> Result<(&str, &str, &str), JwtError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() => Ok((h, p, s)),
        _ => Err(JwtError::Malformed("a JWT is three base64url parts separated by dots")),
    }
}

/// Verify a compact JWS token and its claims at `now_unix` (Unix seconds, wall clock).
///
/// Order: size, syntax, header, algorithm allow-list, key lookup, signature; the payload is parsed
/// only once the signature holds, then `exp`, `nbf`, `iat`, `iss`, `aud` and required claims.
pub fn verify(provider: &Provider, keys: &KeySet, token: &str, now_unix: u64) -> Result<Claims, JwtError> {
    if token.len() > provider.max_token_bytes {
        return Err(JwtError::TooLarge);
    }
    let (h, p, s) = split(token)?;
    let header = b64(h).ok_or(JwtError::Malformed("the header is not base64url"))?;
    let header: Header = serde_json::from_slice(&header)
        .map_err(|_| JwtError::Malformed("the header is not a JSON object with a string alg"))?;
    if header.crit.is_some() {
        // RFC 7515 §4.1.11: extensions we do not implement must make the token invalid
        return Err(JwtError::Malformed("critical header extensions (crit) are not supported"));
    }
    let alg = Algorithm::from_name(&header.alg)
        .filter(|a| provider.algorithms.contains(a))
        .ok_or(JwtError::AlgorithmNotAllowed(known_alg_name(&header.alg)))?;
    let signature = b64(s).ok_or(JwtError::Malformed("the signature is not base64url"))?;
    let signed = &token.as_bytes()[..h.len() + 1 + p.len()];
    let verified = match &header.kid {
        Some(kid) => {
            let mut named = keys.keys.iter().filter(|k| k.kid.as_deref() == Some(kid.as_str())).peekable();
            if named.peek().is_none() {
                return Err(JwtError::UnknownKid);
            }
            try_keys(named, alg, signed, &signature)?
        }
        // without a kid every key that fits the algorithm is tried (JWKS are a handful of keys)
        None => try_keys(keys.keys.iter(), alg, signed, &signature)?,
    };
    if !verified {
        return Err(JwtError::BadSignature);
    }
    let payload = b64(p).ok_or(JwtError::Malformed("the payload is not base64url"))?;
    let UniqueMap(payload) = serde_json::from_slice(&payload)
        .map_err(|_| JwtError::Malformed("the payload is not a JSON object with unique claim names"))?;
    check_claims(provider, payload, now_unix)
}

/// Whether one of `candidates` that fits `alg` verifies the signature; `KeyMismatch` when none fits.
fn try_keys<'a>(
    candidates: impl Iterator<Item = &'a Jwk>,
    alg: Algorithm,
    signed: &[u8],
    signature: &[u8],
) -> Result<bool, JwtError> {
    let mut fitting = candidates.filter(|k| k.fits(alg)).peekable();
    if fitting.peek().is_none() {
        return Err(JwtError::KeyMismatch);
    }
    Ok(fitting.any(|k| k.verify(alg, signed, signature)))
}

/// A NumericDate claim (RFC 7519 §2: seconds, possibly fractional). Rounded towards refusal:
/// `exp` down, `nbf`/`iat` up.
fn numeric_date(m: &Map<String, Value>, name: &'static str, round_up: bool) -> Result<Option<u64>, JwtError> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => Ok(Some(u)),
            (None, Some(f)) if f.is_finite() && f >= 0.0 => {
                Ok(Some(if round_up { f.ceil() } else { f.floor() } as u64))
            }
            _ => Err(JwtError::InvalidClaim(name)),
        },
        Some(_) => Err(JwtError::InvalidClaim(name)),
    }
}

fn string_claim<'a>(m: &'a Map<String, Value>, name: &'static str) -> Result<Option<&'a str>, JwtError> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwtError::InvalidClaim(name)),
    }
}

fn check_claims(p: &Provider, payload: Map<String, Value>, now: u64) -> Result<Claims, JwtError> {
    let exp = numeric_date(&payload, "exp", false)?;
    let nbf = numeric_date(&payload, "nbf", true)?;
    let iat = numeric_date(&payload, "iat", true)?;
    match exp {
        None if p.required.exp => return Err(JwtError::MissingExp),
        Some(exp) if now >= exp.saturating_add(p.leeway_secs) => return Err(JwtError::Expired),
        _ => {}
    }
    match nbf {
        None if p.required.nbf => return Err(JwtError::MissingClaim("nbf")),
        Some(nbf) if now.saturating_add(p.leeway_secs) < nbf => return Err(JwtError::NotYetValid),
        _ => {}
    }
    if iat.is_some_and(|iat| iat > now.saturating_add(p.leeway_secs)) {
        return Err(JwtError::IssuedInFuture);
    }
    let iss = string_claim(&payload, "iss")?;
    match (&p.issuer, iss) {
        (Some(want), got) if got != Some(want.as_str()) => return Err(JwtError::WrongIssuer),
        (None, None) if p.required.iss => return Err(JwtError::MissingClaim("iss")),
        _ => {}
    }
    let aud_ok = match payload.get("aud") {
        None if p.required.aud && p.audiences.is_empty() => return Err(JwtError::MissingClaim("aud")),
        None => p.audiences.is_empty(),
        Some(Value::String(a)) => p.audiences.is_empty() || p.audiences.contains(a),
        Some(Value::Array(list)) => {
            let mut any = p.audiences.is_empty();
            for a in list {
                let a = a.as_str().ok_or(JwtError::InvalidClaim("aud"))?;
                any |= p.audiences.iter().any(|w| w == a);
            }
            any
        }
        Some(_) => return Err(JwtError::InvalidClaim("aud")),
    };
    if !aud_ok {
        return Err(JwtError::WrongAudience);
    }
    let sub = string_claim(&payload, "sub")?.map(str::to_owned);
    if p.required.sub && sub.is_none() {
        return Err(JwtError::MissingClaim("sub"));
    }
    Ok(Claims { payload, exp, sub })
}

/// The `iss` of a token, read WITHOUT verifying it: only for choosing which provider verifies it.
/// `None` when the token is longer than `max_token_bytes` or unreadable.
pub fn unverified_issuer(token: &str, max_token_bytes: usize) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    if token.len() > max_token_bytes {
        return None;
    }
    let (_, p, _) = split(token).ok()?;
    serde_json::from_slice::<Iss>(&b64(p)?).ok()?.iss
}

/// `HashMap` hasher for keys that are already keyed hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

struct Slot {
    hash: u64,
    token: Box<str>,
    claims: Rc<Claims>,
    generation: u64,
    /// Unix seconds from which the entry is dead.
    valid_until: u64,
    /// Second-chance bit: set on a hit, cleared as the clock hand passes.
    referenced: bool,
}

/// Verified tokens of one [`Provider`] on one shard, so repeat requests skip the signature check.
///
/// One cache per provider (never per key set shared by several providers: the issuer and audience
/// checks are baked into an entry). An entry answers only for the exact token (compared in full),
/// the same key-set generation, and until `min(exp + leeway, inserted + max_age)`, so a hit gives
/// the same answer `verify` would. Eviction is CLOCK (second chance): amortised O(1), no scans.
/// Failures are never cached: a forger varies the token at will, so a negative entry would only be
/// hit by honest clients resending a token that is already refused cheaply (expired) or whose
/// refusal may end soon (unknown kid until the next JWKS fetch).
pub struct TokenCache {
    map: HashMap<u64, usize, BuildHasherDefault<Prehashed>>,
    slots: Vec<Slot>,
    hand: usize,
    capacity: usize,
    max_age_secs: u64,
    hasher: RandomState,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache").field("len", &self.slots.len()).field("capacity", &self.capacity).finish()
    }
}

impl TokenCache {
    /// A cache of at most `capacity` tokens (0 disables it), each kept at most `max_age_secs`.
    pub fn new(capacity: usize, max_age_secs: u64) -> TokenCache {
        TokenCache {
            map: HashMap::with_capacity_and_hasher(capacity, BuildHasherDefault::default()),
            slots: Vec::with_capacity(capacity),
            hand: 0,
            capacity,
            max_age_secs,
            hasher: RandomState::new(),
        }
    }

    /// The length and the last 64 bytes (inside the signature, which differs between any two
    /// valid tokens) under a per-cache random key: cheap for long tokens, not steerable by
    /// clients, and a collision costs only a miss because hits compare the whole token.
    fn key(&self, token: &str) -> u64 {
        let b = token.as_bytes();
        let mut h = self.hasher.build_hasher();
        h.write_usize(b.len());
        h.write(&b[b.len().saturating_sub(64)..]);
        h.finish()
    }

    /// The claims of `token` if it was verified under key-set `generation` and is still valid at `now`.
    pub fn get(&mut self, token: &str, generation: u64, now: u64) -> Option<Rc<Claims>> {
        let h = self.key(token);
        self.get_hashed(h, token, generation, now)
    }

    fn get_hashed(&mut self, h: u64, token: &str, generation: u64, now: u64) -> Option<Rc<Claims>> {
        let i = *self.map.get(&h)?;
        let s = self.slots.get_mut(i)?;
        if s.generation != generation || now >= s.valid_until || *s.token != *token {
            return None;
        }
        s.referenced = true;
        Some(Rc::clone(&s.claims))
    }

    /// Remember verified `claims` for `token` until `valid_until`; returns them shared.
    pub fn insert(&mut self, token: &str, generation: u64, claims: Claims, valid_until: u64, now: u64) -> Rc<Claims> {
        let h = self.key(token);
        self.insert_hashed(h, token, generation, Rc::new(claims), valid_until, now)
    }

    fn insert_hashed(
        &mut self,
        h: u64,
        token: &str,
        generation: u64,
        claims: Rc<Claims>,
        valid_until: u64,
        now: u64,
    ) -> Rc<Claims> {
        if self.capacity == 0 || valid_until <= now {
            return claims;
        }
        let slot = Slot {
            hash: h,
            token: token.into(),
            claims: Rc::clone(&claims),
            generation,
            valid_until,
            referenced: false,
        };
        if let Some(&i) = self.map.get(&h) {
            // the same token again (its entry went stale) or a colliding one: reuse the slot
            if let Some(s) = self.slots.get_mut(i) {
                *s = slot;
            }
        } else if self.slots.len() < self.capacity {
            self.map.insert(h, self.slots.len());
            self.slots.push(slot);
        } else {
            let i = self.victim(generation, now);
            if let Some(s) = self.slots.get_mut(i) {
                self.map.remove(&s.hash);
                *s = slot;
                self.map.insert(h, i);
            }
        }
        claims
    }

    /// CLOCK: the first slot under the hand that is dead or was not hit since the hand last
    /// passed. Every skipped slot loses its bit, so two turns always suffice.
    fn victim(&mut self, generation: u64, now: u64) -> usize {
        let n = self.slots.len();
        if n == 0 {
            return 0;
        }
        for _ in 0..2 * n {
            let i = self.hand;
            self.hand = (self.hand + 1) % n;
            let s = &mut self.slots[i];
            if !s.referenced || s.generation != generation || now >= s.valid_until {
                return i;
            }
            s.referenced = false;
        }
        self.hand
    }

    /// Number of entries (live or stale).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Drop every entry.
    pub fn clear(&mut self) {
        self.map.clear();
        self.slots.clear();
        self.hand = 0;
    }
}

/// [`verify`] behind `cache`: a hit returns the shared claims without any crypto; a fresh success
/// is cached until `min(exp + leeway, now + max_age)`. `generation` identifies the key set (bump
/// it whenever `keys` changes).
pub fn verify_cached(
    cache: &mut TokenCache,
    provider: &Provider,
    keys: &KeySet,
    generation: u64,
    token: &str,
    now_unix: u64,
) -> Result<Rc<Claims>, JwtError> {
    if token.len() > provider.max_token_bytes {
        return Err(JwtError::TooLarge);
    }
    let h = cache.key(token);
    if let Some(c) = cache.get_hashed(h, token, generation, now_unix) {
        return Ok(c);
    }
    let claims = verify(provider, keys, token, now_unix)?;
    let mut until = now_unix.saturating_add(cache.max_age_secs);
    if let Some(exp) = claims.exp {
        until = until.min(exp.saturating_add(provider.leeway_secs));
    }
    Ok(cache.insert_hashed(h, token, generation, Rc::new(claims), until, now_unix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
    use serde_json::json;

    const NOW: u64 = 1_700_000_000;
    const RSA1: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/rsa1.pk8.pem"));
    const RSA2: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/jwt/rsa2.pk8.pem"));

    fn enc(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    }

    enum Signer {
        Rsa(RsaKeyPair),
        Ec(EcdsaKeyPair, &'static str),
        Ed(Ed25519KeyPair),
    }

    fn rsa(pem: &str) -> Signer {
        Signer::Rsa(RsaKeyPair::from_pkcs8(&pem_der(pem)).unwrap())
    }

    fn ec(alg: &'static sig::EcdsaSigningAlgorithm, crv: &'static str) -> Signer {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        Signer::Ec(EcdsaKeyPair::from_pkcs8(alg, doc.as_ref(), &rng).unwrap(), crv)
    }

    fn p256() -> Signer {
        ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")
    }

    fn ed() -> Signer {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Signer::Ed(Ed25519KeyPair::from_pkcs8(doc.as_ref()).unwrap())
    }

    impl Signer {
        fn jwk(&self, kid: Option<&str>) -> Value {
            let mut v = match self {
                Signer::Rsa(k) => {
                    let c: RsaPublicKeyComponents<Vec<u8>> = k.public().into();
                    json!({"kty": "RSA", "n": enc(&c.n), "e": enc(&c.e), "use": "sig"})
                }
                Signer::Ec(k, crv) => {
                    let p = k.public_key().as_ref();
                    let l = (p.len() - 1) / 2;
                    json!({"kty": "EC", "crv": crv, "x": enc(&p[1..1 + l]), "y": enc(&p[1 + l..])})
                }
                Signer::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": enc(k.public_key().as_ref())}),
            };
            if let Some(kid) = kid {
                v["kid"] = json!(kid);
            }
            v
        }

        fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
            let rng = SystemRandom::new();
            match self {
                Signer::Rsa(k) => {
                    let pad: &'static dyn sig::RsaEncoding = match alg {
                        "RS384" => &sig::RSA_PKCS1_SHA384,
                        "RS512" => &sig::RSA_PKCS1_SHA512,
                        "PS256" => &sig::RSA_PSS_SHA256,
                        "PS384" => &sig::RSA_PSS_SHA384,
                        "PS512" => &sig::RSA_PSS_SHA512,
                        _ => &sig::RSA_PKCS1_SHA256,
                    };
                    let mut out = vec![0; k.public().modulus_len()];
                    k.sign(pad, &rng, msg, &mut out).unwrap();
                    out
                }
                Signer::Ec(k, _) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
                Signer::Ed(k) => k.sign(msg).as_ref().to_vec(),
            }
        }
    }

    /// A token over raw header and payload text, signed by `s` with the header's `alg`.
    fn raw_token(s: &Signer, header: &str, payload: &str) -> String {
        let alg = serde_json::from_str::<Value>(header).unwrap()["alg"].as_str().unwrap().to_owned();
        let input = format!("{}.{}", enc(header.as_bytes()), enc(payload.as_bytes()));
        let sig = s.sign(&alg, input.as_bytes());
        format!("{input}.{}", enc(&sig))
    }

    fn token(s: &Signer, header: Value, claims: Value) -> String {
        raw_token(s, &header.to_string(), &claims.to_string())
    }

    fn keyset(keys: &[Value]) -> KeySet {
        KeySet::from_jwks(json!({ "keys": keys }).to_string().as_bytes()).unwrap()
    }

    fn claims() -> Value {
        json!({"iss": "https://idp", "aud": "api", "sub": "alice", "exp": NOW + 600, "iat": NOW - 10, "scope": "read"})
    }

    fn provider() -> Provider {
        Provider { issuer: Some("https://idp".into()), audiences: vec!["api".into()], ..Provider::default() }
    }

    /// Verify a token signed by rsa1 (kid `k1`) carrying `c`, under `p`.
    fn check_with(p: &Provider, c: Value) -> Result<Claims, JwtError> {
        let k = rsa(RSA1);
        let t = token(&k, json!({"alg": "RS256", "kid": "k1"}), c);
        verify(p, &keyset(&[k.jwk(Some("k1"))]), &t, NOW)
    }

    fn check(c: Value) -> Result<Claims, JwtError> {
        check_with(&provider(), c)
    }

    #[test]
    fn rs256_happy_path_returns_the_claims() {
        let c = check(claims()).unwrap();
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.exp, Some(NOW + 600));
        assert_eq!(c.payload["scope"], "read");
    }

    #[test]
    fn every_supported_algorithm_verifies_with_its_key_type() {
        let cases = [
            (rsa(RSA1), "RS256"),
            (rsa(RSA1), "RS384"),
            (rsa(RSA1), "RS512"),
            (rsa(RSA1), "PS256"),
            (rsa(RSA1), "PS384"),
            (rsa(RSA1), "PS512"),
            (p256(), "ES256"),
            (ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"), "ES384"),
            (ed(), "EdDSA"),
        ];
        for (k, alg) in cases {
            let keys = keyset(&[k.jwk(Some("k"))]);
            let t = token(&k, json!({"alg": alg, "kid": "k", "typ": "JWT"}), claims());
            let c = verify(&provider(), &keys, &t, NOW).unwrap_or_else(|e| panic!("{alg}: {e}"));
            assert_eq!(c.sub.as_deref(), Some("alice"), "{alg}");
            // and the same key without a kid on either side
            let keys = keyset(&[k.jwk(None)]);
            let t = token(&k, json!({"alg": alg}), claims());
            assert!(verify(&provider(), &keys, &t, NOW).is_ok(), "{alg} without kid");
        }
    }

    #[test]
    fn alg_none_is_refused_whatever_the_spelling() {
        let keys = keyset(&[rsa(RSA1).jwk(Some("k1"))]);
        let body = enc(claims().to_string().as_bytes());
        for (alg, named) in [("none", "none"), ("None", "(unrecognised)"), ("NONE", "(unrecognised)")] {
            for header in [json!({"alg": alg}), json!({"alg": alg, "kid": "k1"})] {
                let t = format!("{}.{body}.", enc(header.to_string().as_bytes()));
                assert_eq!(verify(&provider(), &keys, &t, NOW), Err(JwtError::AlgorithmNotAllowed(named)));
            }
        }
    }

    #[test]
    fn hs256_signed_with_the_rsa_public_key_is_refused() {
        let Signer::Rsa(kp) = rsa(RSA1) else { unreachable!() };
        // the secrets a confused verifier might use: PEM of the public key, its DER, its JWK text
        let der = kp.public().as_ref().to_vec();
        let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
        let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
        let pem = format!("-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n", lines.join("\n"));
        let jwk = rsa(RSA1).jwk(Some("k1"));
        let keys = keyset(std::slice::from_ref(&jwk));
        let everything = Provider { algorithms: Algorithm::DEFAULT.to_vec(), ..provider() };
        for secret in [pem.into_bytes(), der, jwk.to_string().into_bytes()] {
            for header in [json!({"alg": "HS256", "kid": "k1"}), json!({"alg": "HS256"})] {
                let input = format!("{}.{}", enc(header.to_string().as_bytes()), enc(claims().to_string().as_bytes()));
                let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret), input.as_bytes());
                let t = format!("{input}.{}", enc(mac.as_ref()));
                assert_eq!(verify(&everything, &keys, &t, NOW), Err(JwtError::AlgorithmNotAllowed("HS256")));
            }
        }
        // nor can config turn HMAC (or none) on
        for bad in ["HS256", "hs512", "none"] {
            assert!(Algorithm::parse_list(&[bad.to_string()]).unwrap_err().contains("never accepted"), "{bad}");
        }
    }

    #[test]
    fn algorithm_lists_parse_and_restrict() {
        assert_eq!(Algorithm::parse_list(&[]).unwrap(), Algorithm::DEFAULT);
        let list = Algorithm::parse_list(&["ES256".into(), "EdDSA".into(), "ES256".into()]).unwrap();
        assert_eq!(list, [Algorithm::Es256, Algorithm::EdDsa]);
        assert!(Algorithm::parse_list(&["RS1".into()]).unwrap_err().contains("unknown JWT algorithm"));
        let only_ec = Provider { algorithms: list, ..provider() };
        assert_eq!(check_with(&only_ec, claims()), Err(JwtError::AlgorithmNotAllowed("RS256")));
    }

    #[test]
    fn embedded_header_keys_are_never_trusted() {
        let victim = ed();
        let attacker = ed();
        let keys = keyset(&[victim.jwk(Some("v"))]);
        for header in [
            json!({"alg": "EdDSA", "jwk": attacker.jwk(None)}),
            json!({"alg": "EdDSA", "kid": "v", "jwk": attacker.jwk(Some("v")), "jku": "http://evil/keys"}),
        ] {
            let t = token(&attacker, header, claims());
            assert_eq!(verify(&provider(), &keys, &t, NOW), Err(JwtError::BadSignature));
        }
    }

    #[test]
    fn a_key_only_verifies_algorithms_of_its_type() {
        let r = rsa(RSA1);
        let e = p256();
        let keys = keyset(&[r.jwk(Some("k"))]);
        for header in [json!({"alg": "ES256", "kid": "k"}), json!({"alg": "ES256"})] {
            let t = token(&e, header, claims());
            assert_eq!(verify(&provider(), &keys, &t, NOW), Err(JwtError::KeyMismatch));
        }
        // a JWK `alg` pins the key to that one algorithm
        let mut pinned = r.jwk(Some("k"));
        pinned["alg"] = json!("RS256");
        let keys = keyset(&[pinned]);
        let t = token(&r, json!({"alg": "RS384", "kid": "k"}), claims());
        assert_eq!(verify(&provider(), &keys, &t, NOW), Err(JwtError::KeyMismatch));
        let t = token(&r, json!({"alg": "RS256", "kid": "k"}), claims());
        assert!(verify(&provider(), &keys, &t, NOW).is_ok());
    }

    #[test]
    fn too_large_tokens_are_refused_before_parsing() {
        let p = Provider { max_token_bytes: 64, ..provider() };
        let t = "x".repeat(65);
        assert_eq!(verify(&p, &keyset(&[ed().jwk(None)]), &t, NOW), Err(JwtError::TooLarge));
        assert_eq!(check_with(&p, claims()), Err(JwtError::TooLarge));
        let mut cache = TokenCache::new(8, 60);
        assert_eq!(verify_cached(&mut cache, &p, &keyset(&[ed().jwk(None)]), 1, &t, NOW), Err(JwtError::TooLarge));
    }

    #[test]
    fn malformed_tokens_say_which_part() {
        let k = rsa(RSA1);
        let keys = keyset(&[k.jwk(Some("k1"))]);
        let good = token(&k, json!({"alg": "RS256", "kid": "k1"}), claims());
        let (h, p, s) = split(&good).unwrap();
        let syntax = [
            String::new(),
            "abc".into(),
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.{s}"),
            format!(".{p}.{s}"),
            format!("{h}..{s}"),
            format!("!!{h}.{p}.{s}"),
            format!("{h}=.{p}.{s}"),
            format!("{}.{p}.{s}", enc(b"not json")),
            format!("{}.{p}.{s}", enc(br#"{"kid":"k1"}"#)),
            format!("{}.{p}.{s}", enc(br#"{"alg":"RS256","alg":"none"}"#)),
            format!("{}.{p}.{s}", enc(br#"{"alg":"RS256","crit":["b64"],"b64":false}"#)),
            format!("{h}.{p}.{s}*"),
        ];
        for t in &syntax {
            assert!(matches!(verify(&provider(), &keys, t, NOW), Err(JwtError::Malformed(_))), "{t}");
        }
        // well signed, but the payload is not a claims object (or repeats a claim)
        let header = r#"{"alg":"RS256","kid":"k1"}"#;
        for payload in ["[1,2]", "not json", r#"{"sub":"alice","sub":"admin","exp":1800000000}"#] {
            let t = raw_token(&k, header, payload);
            assert_eq!(
                verify(&provider(), &keys, &t, NOW),
                Err(JwtError::Malformed("the payload is not a JSON object with unique claim names")),
                "{payload}"
            );
        }
    }

    #[test]
    fn unknown_kid_is_its_own_error() {
        let k = rsa(RSA1);
        let t = token(&k, json!({"alg": "RS256", "kid": "elsewhere"}), claims());
        assert_eq!(verify(&provider(), &keyset(&[k.jwk(Some("k1"))]), &t, NOW), Err(JwtError::UnknownKid));
    }

    #[test]
    fn bad_signatures_are_refused() {
        let k = rsa(RSA1);
        let keys = keyset(&[k.jwk(Some("k1"))]);
        let good = token(&k, json!({"alg": "RS256", "kid": "k1"}), claims());
        let (h, _, s) = split(&good).unwrap();
        let mut admin = claims();
        admin["sub"] = json!("admin");
        let tampered = format!("{h}.{}.{s}", enc(admin.to_string().as_bytes()));
        let other_key = token(&rsa(RSA2), json!({"alg": "RS256", "kid": "k1"}), claims());
        let (h2, p2, _) = split(&good).unwrap();
        let empty_sig = format!("{h2}.{p2}.");
        for t in [tampered, other_key, empty_sig] {
            assert_eq!(verify(&provider(), &keys, &t, NOW), Err(JwtError::BadSignature));
        }
    }

    #[test]
    fn key_rotation_follows_the_key_set() {
        let (k1, k2) = (rsa(RSA1), rsa(RSA2));
        let old = keyset(&[k1.jwk(Some("k1"))]);
        let both = keyset(&[k1.jwk(Some("k1")), k2.jwk(Some("k2"))]);
        let new = keyset(&[k2.jwk(Some("k2"))]);
        let t2 = token(&k2, json!({"alg": "RS256", "kid": "k2"}), claims());
        let t1 = token(&k1, json!({"alg": "RS256", "kid": "k1"}), claims());
        assert_eq!(verify(&provider(), &old, &t2, NOW), Err(JwtError::UnknownKid));
        assert!(verify(&provider(), &both, &t2, NOW).is_ok());
        assert!(verify(&provider(), &both, &t1, NOW).is_ok());
        assert!(verify(&provider(), &new, &t2, NOW).is_ok());
        assert_eq!(verify(&provider(), &new, &t1, NOW), Err(JwtError::UnknownKid));
    }

    #[test]
    fn without_kid_every_fitting_key_is_tried() {
        let (k1, k2, e) = (rsa(RSA1), rsa(RSA2), p256());
        let keys = keyset(&[e.jwk(Some("e")), k1.jwk(Some("a")), k2.jwk(Some("b"))]);
        let t = token(&k2, json!({"alg": "RS256"}), claims());
        assert!(verify(&provider(), &keys, &t, NOW).is_ok());
        let t = token(&e, json!({"alg": "ES256"}), claims());
        assert!(verify(&provider(), &keys, &t, NOW).is_ok());
        let stranger = token(&p256(), json!({"alg": "ES256"}), claims());
        assert_eq!(verify(&provider(), &keys, &stranger, NOW), Err(JwtError::BadSignature));
        let t = token(&ed(), json!({"alg": "EdDSA"}), claims());
        assert_eq!(verify(&provider(), &keys, &t, NOW), Err(JwtError::KeyMismatch));
    }

    fn with(changes: Value) -> Value {
        let mut c = claims();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    }

    #[test]
    fn exp_nbf_and_iat_honour_the_leeway() {
        assert!(check(with(json!({"exp": NOW - 30}))).is_ok());
        assert_eq!(check(with(json!({"exp": NOW - 60}))), Err(JwtError::Expired));
        assert!(check(with(json!({"exp": NOW + 1}))).is_ok());
        assert!(check(with(json!({"nbf": NOW + 60}))).is_ok());
        assert_eq!(check(with(json!({"nbf": NOW + 61}))), Err(JwtError::NotYetValid));
        assert!(check(with(json!({"iat": NOW + 60}))).is_ok());
        assert_eq!(check(with(json!({"iat": NOW + 61}))), Err(JwtError::IssuedInFuture));
        let strict = Provider { leeway_secs: 0, ..provider() };
        assert_eq!(check_with(&strict, with(json!({"exp": NOW}))), Err(JwtError::Expired));
        assert_eq!(check_with(&strict, with(json!({"nbf": NOW + 1}))), Err(JwtError::NotYetValid));
        assert!(check_with(&strict, with(json!({"nbf": NOW, "exp": NOW + 1}))).is_ok());
        // fractional NumericDates round towards refusal
        assert_eq!(check_with(&strict, with(json!({"exp": NOW as f64 + 0.5}))), Err(JwtError::Expired));
        assert_eq!(check_with(&strict, with(json!({"nbf": NOW as f64 + 0.5}))), Err(JwtError::NotYetValid));
    }

    #[test]
    fn exp_is_required_unless_configured_otherwise() {
        assert_eq!(check(with(json!({"exp": null}))), Err(JwtError::MissingExp));
        let lax = Provider { required: RequiredClaims::parse(&[]).unwrap(), ..provider() };
        let c = check_with(&lax, with(json!({"exp": null}))).unwrap();
        assert_eq!(c.exp, None);
    }

    #[test]
    fn required_claims_are_enforced() {
        let names = ["exp".to_string(), "nbf".into(), "sub".into(), "iss".into(), "aud".into()];
        let all = RequiredClaims::parse(&names).unwrap();
        let p = Provider { issuer: None, audiences: vec![], required: all, ..provider() };
        assert_eq!(check_with(&p, claims()), Err(JwtError::MissingClaim("nbf")));
        let full = json!({"nbf": NOW});
        assert!(check_with(&p, with(full.clone())).is_ok());
        for (claim, name) in [("sub", "sub"), ("iss", "iss"), ("aud", "aud")] {
            let mut c = with(full.clone());
            c.as_object_mut().unwrap().remove(claim);
            assert_eq!(check_with(&p, c), Err(JwtError::MissingClaim(name)));
        }
        assert!(RequiredClaims::parse(&["jti".into()]).unwrap_err().contains("unknown required claim"));
    }

    #[test]
    fn claims_of_the_wrong_type_are_invalid() {
        for (change, name) in [
            (json!({"exp": "tomorrow"}), "exp"),
            (json!({"exp": -5}), "exp"),
            (json!({"nbf": [1]}), "nbf"),
            (json!({"iat": true}), "iat"),
            (json!({"iss": 7}), "iss"),
            (json!({"aud": ["api", 1]}), "aud"),
            (json!({"aud": {"api": true}}), "aud"),
            (json!({"sub": 42}), "sub"),
        ] {
            assert_eq!(check(with(change.clone())), Err(JwtError::InvalidClaim(name)), "{change}");
        }
    }

    #[test]
    fn issuer_must_match_exactly() {
        assert_eq!(check(with(json!({"iss": "https://idp/"}))), Err(JwtError::WrongIssuer));
        assert_eq!(check(with(json!({"iss": null}))), Err(JwtError::WrongIssuer));
        let any = Provider { issuer: None, ..provider() };
        assert!(check_with(&any, with(json!({"iss": "https://other"}))).is_ok());
    }

    #[test]
    fn audience_may_be_a_string_or_an_array() {
        assert!(check(with(json!({"aud": ["other", "api"]}))).is_ok());
        assert_eq!(check(with(json!({"aud": ["other", "more"]}))), Err(JwtError::WrongAudience));
        assert_eq!(check(with(json!({"aud": []}))), Err(JwtError::WrongAudience));
        assert_eq!(check(with(json!({"aud": "API"}))), Err(JwtError::WrongAudience));
        assert_eq!(check(with(json!({"aud": null}))), Err(JwtError::WrongAudience));
        let two = Provider { audiences: vec!["x".into(), "api".into()], ..provider() };
        assert!(check_with(&two, claims()).is_ok());
        let any = Provider { audiences: vec![], ..provider() };
        assert!(check_with(&any, with(json!({"aud": ["whatever"]}))).is_ok());
        assert!(check_with(&any, with(json!({"aud": null}))).is_ok());
    }

    #[test]
    fn jwks_skips_unusable_keys_and_says_why() {
        let good = rsa(RSA1).jwk(Some("good"));
        let mut enc_use = rsa(RSA2).jwk(Some("enc"));
        enc_use["use"] = json!("enc");
        let mut ops = rsa(RSA2).jwk(Some("ops"));
        ops["key_ops"] = json!(["encrypt"]);
        let mut pinned_wrong = p256().jwk(Some("pin"));
        pinned_wrong["alg"] = json!("RS256");
        let mut short = rsa(RSA1).jwk(Some("short"));
        short["n"] = json!(enc(&[0xff; 128]));
        let mut bad_x = ed().jwk(Some("badx"));
        bad_x["x"] = json!("***");
        let doc = json!({"keys": [
            good, enc_use, ops, pinned_wrong, short, bad_x,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"},
            {"kty": "OKP", "crv": "Ed448", "x": "AA"},
            {"kid": "nokty"},
            "not an object",
        ]});
        let ks = KeySet::from_jwks(doc.to_string().as_bytes()).unwrap();
        assert_eq!(ks.len(), 1);
        assert_eq!(ks.keys()[0].kid(), Some("good"));
        assert_eq!(ks.keys()[0].kty(), "RSA");
        assert_eq!(ks.keys()[0].key_use(), Some("sig"));
        assert_eq!(ks.skipped().len(), 10, "{:?}", ks.skipped());
        let all = ks.skipped().join("\n");
        for needle in [
            "use: enc",
            "key_ops",
            "does not fit a EC key",
            "below the 2048-bit",
            "not base64url",
            "oct",
            "P-521",
            "Ed448",
            "kid nokty",
        ] {
            assert!(all.contains(needle), "{needle} not in {all}");
        }
    }

    #[test]
    fn jwks_documents_of_every_shape() {
        let k = ed();
        // a bare JWK, with padded base64url as some issuers write it
        let mut bare = k.jwk(Some("solo"));
        bare["x"] = json!(format!("{}=", bare["x"].as_str().unwrap()));
        let ks = KeySet::from_jwks(bare.to_string().as_bytes()).unwrap();
        assert_eq!(ks.keys()[0].kid(), Some("solo"));
        let t = token(&k, json!({"alg": "EdDSA", "kid": "solo"}), claims());
        assert!(verify(&provider(), &ks, &t, NOW).is_ok());
        let err = KeySet::from_jwks(br#"{"keys":[{"kty":"oct","k":"AA"}]}"#).unwrap_err();
        assert!(err.contains("no usable signing key (1 skipped"), "{err}");
        assert!(KeySet::from_jwks(br#"{"keys":[]}"#).unwrap_err().contains("no usable"));
        assert!(KeySet::from_jwks(b"nope").unwrap_err().contains("not valid JSON"));
        assert!(KeySet::from_jwks(br#"{"keys":{}}"#).unwrap_err().contains("not an array"));
        assert!(KeySet::from_jwks(br#"{"x":1}"#).unwrap_err().contains("neither"));
        assert!(KeySet::from_jwks(b"[]").unwrap_err().contains("not a JSON object"));
    }

    #[test]
    fn reasons_are_distinct_metric_labels_and_messages_do_not_echo_the_token() {
        let all = [
            JwtError::Missing,
            JwtError::TooLarge,
            JwtError::Malformed("x"),
            JwtError::AlgorithmNotAllowed("none"),
            JwtError::UnknownKid,
            JwtError::KeyMismatch,
            JwtError::BadSignature,
            JwtError::MissingExp,
            JwtError::MissingClaim("sub"),
            JwtError::InvalidClaim("exp"),
            JwtError::Expired,
            JwtError::NotYetValid,
            JwtError::IssuedInFuture,
            JwtError::WrongIssuer,
            JwtError::WrongAudience,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            let r = e.reason();
            assert!(r.starts_with("jwt_") && r.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{r}");
            assert!(seen.insert(r), "duplicate {r}");
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(JwtError::Expired.reason(), "jwt_expired");
        // an attacker-chosen alg or kid never reaches the message
        let k = rsa(RSA1);
        let keys = keyset(&[k.jwk(Some("k1"))]);
        for header in [json!({"alg": "<script>evil", "kid": "k1"}), json!({"alg": "RS256", "kid": "<script>evil"})] {
            let t = token(&ed(), header, claims());
            let msg = verify(&provider(), &keys, &t, NOW).unwrap_err().to_string();
            assert!(!msg.contains("evil") && !msg.contains(&t[..20]), "{msg}");
        }
    }

    #[test]
    fn unverified_issuer_peeks_without_checking() {
        let t = token(&ed(), json!({"alg": "EdDSA"}), claims());
        assert_eq!(unverified_issuer(&t, 8192).as_deref(), Some("https://idp"));
        assert_eq!(unverified_issuer(&t, 10), None);
        assert_eq!(unverified_issuer("a.b.c", 8192), None);
    }

    fn ed_token(k: &Signer, exp: u64) -> String {
        token(k, json!({"alg": "EdDSA", "kid": "e"}), with(json!({"exp": exp})))
    }

    #[test]
    fn cache_hits_skip_verification_until_the_generation_changes() {
        let k = ed();
        let keys = keyset(&[k.jwk(Some("e"))]);
        let unrelated = keyset(&[ed().jwk(Some("other"))]);
        let t = ed_token(&k, NOW + 600);
        let mut cache = TokenCache::new(16, 300);
        let first = verify_cached(&mut cache, &provider(), &keys, 1, &t, NOW).unwrap();
        // a hit never looks at the keys: these could not verify it
        let hit = verify_cached(&mut cache, &provider(), &unrelated, 1, &t, NOW + 5).unwrap();
        assert!(Rc::ptr_eq(&first, &hit));
        // a new generation (rotated keys) makes the entry dead
        assert_eq!(verify_cached(&mut cache, &provider(), &unrelated, 2, &t, NOW + 5), Err(JwtError::UnknownKid));
        assert!(cache.get(&t, 2, NOW + 5).is_none());
        let again = verify_cached(&mut cache, &provider(), &keys, 2, &t, NOW + 5).unwrap();
        assert!(!Rc::ptr_eq(&first, &again));
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn cache_entries_live_until_exp_plus_leeway_or_max_age() {
        let k = ed();
        let keys = keyset(&[k.jwk(Some("e"))]);
        let mut cache = TokenCache::new(16, 1000);
        let t = ed_token(&k, NOW + 100);
        let first = verify_cached(&mut cache, &provider(), &keys, 1, &t, NOW).unwrap();
        assert!(cache.get(&t, 1, NOW + 159).is_some_and(|c| Rc::ptr_eq(&c, &first)));
        assert!(cache.get(&t, 1, NOW + 160).is_none());
        assert_eq!(verify_cached(&mut cache, &provider(), &keys, 1, &t, NOW + 160), Err(JwtError::Expired));

        let mut short = TokenCache::new(16, 10);
        let t = ed_token(&k, NOW + 10_000);
        let first = verify_cached(&mut short, &provider(), &keys, 1, &t, NOW).unwrap();
        let hit = verify_cached(&mut short, &provider(), &keys, 1, &t, NOW + 9).unwrap();
        assert!(Rc::ptr_eq(&first, &hit));
        let reverified = verify_cached(&mut short, &provider(), &keys, 1, &t, NOW + 10).unwrap();
        assert!(!Rc::ptr_eq(&first, &reverified));
    }

    #[test]
    fn failures_are_not_cached() {
        let k = ed();
        let keys = keyset(&[k.jwk(Some("e"))]);
        let mut cache = TokenCache::new(16, 300);
        let expired = ed_token(&k, NOW - 100);
        let forged = token(&ed(), json!({"alg": "EdDSA", "kid": "e"}), claims());
        for _ in 0..2 {
            assert_eq!(verify_cached(&mut cache, &provider(), &keys, 1, &expired, NOW), Err(JwtError::Expired));
            assert_eq!(verify_cached(&mut cache, &provider(), &keys, 1, &forged, NOW), Err(JwtError::BadSignature));
        }
        assert!(cache.is_empty());
    }

    fn dummy() -> Claims {
        Claims { payload: Map::new(), exp: None, sub: None }
    }

    #[test]
    fn cache_eviction_gives_hit_entries_a_second_chance() {
        let mut cache = TokenCache::new(2, 300);
        cache.insert("a", 1, dummy(), NOW + 100, NOW);
        cache.insert("b", 1, dummy(), NOW + 100, NOW);
        assert!(cache.get("a", 1, NOW).is_some());
        cache.insert("c", 1, dummy(), NOW + 100, NOW);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("a", 1, NOW).is_some());
        assert!(cache.get("b", 1, NOW).is_none());
        assert!(cache.get("c", 1, NOW).is_some());
        // dead entries (old generation) go first even when they were hit
        let mut cache = TokenCache::new(2, 300);
        cache.insert("old", 1, dummy(), NOW + 100, NOW);
        cache.insert("new", 2, dummy(), NOW + 100, NOW);
        assert!(cache.get("old", 1, NOW).is_some() && cache.get("new", 2, NOW).is_some());
        cache.insert("newer", 2, dummy(), NOW + 100, NOW);
        assert!(cache.get("new", 2, NOW).is_some() && cache.get("newer", 2, NOW).is_some());
        // a full cache under churn stays at capacity and keeps answering
        let mut cache = TokenCache::new(64, 300);
        for i in 0..1000 {
            let t = format!("tok{i}");
            cache.insert(&t, 1, dummy(), NOW + 100, NOW);
            assert!(cache.get(&t, 1, NOW).is_some());
        }
        assert_eq!(cache.len(), 64);
    }

    #[test]
    fn cache_compares_whole_tokens_on_a_hash_collision() {
        let mut cache = TokenCache::new(4, 300);
        cache.insert_hashed(42, "first", 1, Rc::new(dummy()), NOW + 100, NOW);
        assert!(cache.get_hashed(42, "first", 1, NOW).is_some());
        assert!(cache.get_hashed(42, "second", 1, NOW).is_none());
        cache.insert_hashed(42, "second", 1, Rc::new(dummy()), NOW + 100, NOW);
        assert!(cache.get_hashed(42, "first", 1, NOW).is_none());
        assert!(cache.get_hashed(42, "second", 1, NOW).is_some());
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn cache_of_capacity_zero_or_dead_entries_stores_nothing() {
        let mut off = TokenCache::new(0, 300);
        off.insert("a", 1, dummy(), NOW + 100, NOW);
        assert!(off.is_empty() && off.get("a", 1, NOW).is_none());
        let mut cache = TokenCache::new(4, 300);
        cache.insert("a", 1, dummy(), NOW, NOW);
        assert!(cache.is_empty());
        cache.insert("b", 1, dummy(), NOW + 1, NOW);
        cache.clear();
        assert!(cache.get("b", 1, NOW).is_none());
    }
}
