"""The design material beside the repository, `../shared` (README): the seed design and the
Shopify sample payloads the tests hold the code to."""

from __future__ import annotations

from pathlib import Path

from loyalnest.deploy.paths import REPO

SHARED = REPO.parent / "shared"


def shared_file(*parts: str) -> Path:
    """A file under ../shared; missing, the test fails and says where it looked (a silent
    skip or a stand-in payload would pass without checking anything)."""
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the tests read the design material in ../shared beside the "
            f"repository ({REPO}); check it out there"
        )
    return path
