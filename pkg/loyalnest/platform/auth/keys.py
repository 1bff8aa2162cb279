"""Token signing keys as a JWKS document.

The private keyset (Auth service only) holds every key still valid for verification plus the
`active_kid` that signs new tokens; rotating means adding a key, publishing it, and only then
making it active (Envoy does not refetch the JWKS on an unknown kid). Everyone else gets the
public half (`public_jwks`).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class KeySet:
    keys: dict[str, dict[str, Any]]  # kid -> private JWK
    active_kid: str
    # Generated for a developer's machine; `loyalnest token` refuses other keysets unless forced.
    local: bool = False

    @property
    def signing_key(self) -> Any:
        return OKPAlgorithm.from_jwk(json.dumps(self.keys[self.active_kid]))

    def public_jwks(self) -> dict[str, Any]:
        public = []
        for kid, jwk in self.keys.items():
            key = OKPAlgorithm.from_jwk(json.dumps(jwk))
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError(f"key {kid} is not an Ed25519 private key")
            public_jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
            public.append({**public_jwk, "kid": kid, "use": "sig", "alg": ALGORITHM})
        return {"keys": public}

    def with_new_key(self, *, activate: bool) -> KeySet:
        kid, jwk = _new_key()
        keys = {**self.keys, kid: jwk}
        return KeySet(keys, kid if activate else self.active_kid, self.local)

    def to_json(self) -> str:
        return json.dumps(
            {"keys": list(self.keys.values()), "active_kid": self.active_kid, "local": self.local},
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> KeySet:
        data = json.loads(text)
        keys = {jwk["kid"]: jwk for jwk in data["keys"]}
        if data["active_kid"] not in keys:
            raise ValueError("active_kid does not name a key in the keyset")
        return cls(keys, data["active_kid"], bool(data.get("local", False)))

    @classmethod
    def generate(cls, *, local: bool) -> KeySet:
        kid, jwk = _new_key()
        return cls({kid: jwk}, kid, local)


def _new_key() -> tuple[str, dict[str, Any]]:
    kid = secrets.token_hex(8)
    jwk = json.loads(OKPAlgorithm.to_jwk(Ed25519PrivateKey.generate()))
    return kid, {**jwk, "kid": kid, "use": "sig", "alg": ALGORITHM}


def load_keyset(path: Path) -> KeySet:
    return KeySet.from_json(path.read_text())


def ensure_local_keyset(directory: Path) -> tuple[Path, Path]:
    """The local stack's keyset (private, 0600) and its public JWKS, created once."""
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "signing-keys.json", directory / "jwks.json"
    if not private.exists():
        private.touch(mode=0o600)
        private.write_text(KeySet.generate(local=True).to_json())
    public.write_text(json.dumps(load_keyset(private).public_jwks(), indent=2))
    return private, public


def local_keyset_beside(jwks_path: Path | None) -> Path | None:
    """The local stack's private keyset next to the public JWKS, if there is one and it is
    marked local: the sign of a developer machine (production mounts only the JWKS)."""
    if jwks_path is None:
        return None
    candidate = jwks_path.parent / "signing-keys.json"
    if candidate.exists() and load_keyset(candidate).local:
        return candidate
    return None
