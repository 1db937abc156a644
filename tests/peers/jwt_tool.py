"""Test keys and tokens for ringgate's auth tests: real RS256/ES256/EdDSA signatures by PyJWT + cryptography.

  jwt_tool.py keys DIR          create DIR/<kid>.pem for kids rsa-1, rsa-2, ec-1, ed-1 (kept if present)
                                and print {"<kid>": <public JWK>, ...}
  jwt_tool.py sign DIR < SPECS  SPECS is a JSON list of {"kid", "claims", "alg"?, "attack"?};
                                prints the JSON list of tokens. "exp"/"nbf"/"iat" given as
                                "+N"/"-N" strings are relative to now. attack: "none" (alg none,
                                no signature), "hs256-pubkey" (HS256 keyed with the RSA public key
                                PEM), "tamper" (payload changed after signing), "no-kid".
"""

import base64
import json
import os
import sys
import time

import jwt
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

KIDS = {"rsa-1": "RS256", "rsa-2": "RS256", "ec-1": "ES256", "ed-1": "EdDSA"}


def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def load_or_make(d: str, kid: str):
    path = os.path.join(d, kid + ".pem")
    if os.path.exists(path):
        with open(path, "rb") as f:
            return serialization.load_pem_private_key(f.read(), None)
    if kid.startswith("rsa"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kid.startswith("ec"):
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with open(path, "wb") as f:
        f.write(pem)
    return key


def public_jwk(kid: str, key) -> dict:
    pub = key.public_key()
    if kid.startswith("rsa"):
        n = pub.public_numbers()
        return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                "n": b64(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")), "e": b64(n.e.to_bytes(3, "big"))}
    if kid.startswith("ec"):
        n = pub.public_numbers()
        return {"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256", "use": "sig",
                "x": b64(n.x.to_bytes(32, "big")), "y": b64(n.y.to_bytes(32, "big"))}
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "x": b64(raw)}


def relative(claims: dict) -> dict:
    now = int(time.time())
    out = dict(claims)
    for k in ("exp", "nbf", "iat"):
        v = out.get(k)
        if isinstance(v, str) and v[:1] in "+-":
            out[k] = now + int(v)
    return out


def sign(d: str, spec: dict) -> str:
    kid = spec["kid"]
    key = load_or_make(d, kid)
    alg = spec.get("alg", KIDS.get(kid, "RS256"))
    claims = relative(spec.get("claims", {}))
    attack = spec.get("attack")
    if attack == "none":
        header = {"alg": "none", "typ": "JWT", "kid": kid}
        return b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()) + "."
    if attack == "hs256-pubkey":
        secret = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
        header = {"alg": "HS256", "typ": "JWT", "kid": kid}
        signing_input = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())).encode()
        h = hmac.HMAC(secret, hashes.SHA256())
        h.update(signing_input)
        return signing_input.decode() + "." + b64(h.finalize())
    headers = {} if attack == "no-kid" else {"kid": kid}
    token = jwt.encode(claims, key, algorithm=alg, headers=headers)
    if attack == "tamper":
        h, p, s = token.split(".")
        claims = dict(claims, sub="mallory")
        token = h + "." + b64(json.dumps(claims).encode()) + "." + s
    return token


def main() -> None:
    cmd, d = sys.argv[1], sys.argv[2]
    os.makedirs(d, exist_ok=True)
    if cmd == "keys":
        print(json.dumps({kid: public_jwk(kid, load_or_make(d, kid)) for kid in KIDS}))
    elif cmd == "sign":
        print(json.dumps([sign(d, s) for s in json.load(sys.stdin)]))
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
