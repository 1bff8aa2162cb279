"""The Auth service's signing keyset, re-read when its file changes (rotation without restart)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loyalnest.platform.auth.keys import KeySet, load_keyset
from loyalnest.platform.auth.tokens import TokenIssuer, TokenVerifier
from loyalnest.platform.observability import get_logger

log = get_logger(__name__)


class UnpublishedKey(ValueError):
    """The keyset's active key is missing from the published JWKS."""


@dataclass(frozen=True)
class LoadedKeys:
    keyset: KeySet
    issuer: TokenIssuer
    verifier: TokenVerifier

    def public_jwks(self) -> dict[str, Any]:
        return self.keyset.public_jwks()


def _published_kids(path: Path | None) -> set[str] | None:
    if path is None:
        return None
    return {jwk.get("kid", "") for jwk in json.loads(path.read_text()).get("keys", [])}


class SigningKeys:
    """The private keyset file (every key still valid + the active one).

    Signing with a key that the mesh cannot verify yet would fail every call the token is
    used on, so the active key must be listed in the published JWKS (`published_jwks`, the
    file the services and the gateway verify with): at start-up that is an error, on a
    reload the previous keyset stays in use until the JWKS catches up.
    """

    def __init__(
        self,
        path: Path,
        *,
        issuer: str,
        audience: str,
        published_jwks: Path | None,
        reload_seconds: float,
    ) -> None:
        self._path = path
        self._issuer = issuer
        self._audience = audience
        self._published = published_jwks
        self._reload_seconds = reload_seconds
        self._checked = time.monotonic()
        self._stamp = self._file_stamp()
        self._loaded = self._load()

    def _file_stamp(self) -> tuple[float, float]:
        published = self._published.stat().st_mtime if self._published else 0.0
        return self._path.stat().st_mtime, published

    def _load(self) -> LoadedKeys:
        keyset = load_keyset(self._path)
        published = _published_kids(self._published)
        if published is not None and keyset.active_kid not in published:
            raise UnpublishedKey(
                f"the active signing key {keyset.active_kid!r} of {self._path} is not in the "
                f"published JWKS {self._published}: publish it first (see the rotation "
                "procedure in loyalnest.services.auth.service)"
            )
        verifier = TokenVerifier(keyset.public_jwks(), issuer=self._issuer, audience=self._audience)
        issuer = TokenIssuer(keyset, issuer=self._issuer, audience=self._audience)
        return LoadedKeys(keyset, issuer, verifier)

    def current(self) -> LoadedKeys:
        now = time.monotonic()
        if now - self._checked >= self._reload_seconds:
            self._checked = now
            stamp = self._file_stamp()
            if stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._loaded = self._load()
                except (OSError, ValueError, KeyError) as exc:
                    log.error(
                        "signing keyset not reloaded; keeping the previous one", error=str(exc)
                    )
                else:
                    log.info(
                        "signing keyset reloaded",
                        active_kid=self._loaded.keyset.active_kid,
                        kids=sorted(self._loaded.keyset.keys),
                    )
        return self._loaded
