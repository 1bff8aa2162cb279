"""Generate Python code and the gateway descriptor set from proto/.

    python tools/genproto.py          write pkg/loyalnest/gen/
    python tools/genproto.py --check  exit 1 if the committed output is stale
    python tools/genproto.py --buf-image FILE
                                      write a protoc image with source info for `buf lint`
                                      (buf cannot reach the BSR for google/api, so it lints
                                      an image built against the googleapis wheel instead)

Protos live under proto/loyalnest/<service>/v1 (buf's package-directory rule), but the Python
modules live under loyalnest.gen.<service>.v1: the leading `loyalnest/` is stripped from the
output and the generated imports are rewritten to match.
"""

from __future__ import annotations

import argparse
import filecmp
import re
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
GEN_DIR = REPO / "pkg" / "loyalnest" / "gen"
DESCRIPTOR_SET = "loyalnest.binpb"
# The transcoder needs these to render google.rpc.Status error details as JSON.
EXTRA_DESCRIPTOR_INPUTS = ("google/rpc/status.proto", "google/rpc/error_details.proto")
_IMPORT_RE = re.compile(r"^(from|import) loyalnest\.", re.MULTILINE)


def _googleapis_root() -> Path:
    """The site-packages directory that holds googleapis-common-protos' .proto files."""
    annotations = Path(str(resources.files("google.api").joinpath("annotations.proto")))
    return annotations.parent.parent.parent


def _well_known_root() -> Path:
    return Path(str(resources.files("grpc_tools").joinpath("_proto")))


def _proto_files() -> list[str]:
    return sorted(p.relative_to(PROTO_ROOT).as_posix() for p in PROTO_ROOT.rglob("*.proto"))


def _protoc(args: list[str]) -> None:
    include = [f"-I{PROTO_ROOT}", f"-I{_googleapis_root()}", f"-I{_well_known_root()}"]
    code = protoc.main(["grpc_tools.protoc", *include, *args])
    if code != 0:
        raise SystemExit(f"protoc failed ({code}) for: {' '.join(args)}")


def _ensure_packages(root: Path) -> None:
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        if directory.name != "__pycache__":
            (directory / "__init__.py").touch()


def generate(out: Path) -> None:
    files = _proto_files()
    with tempfile.TemporaryDirectory() as raw_dir:
        raw = Path(raw_dir)
        _protoc([f"--python_out={raw}", f"--pyi_out={raw}", f"--grpc_python_out={raw}", *files])
        shutil.copytree(raw / "loyalnest", out, dirs_exist_ok=True)
    for path in [*out.rglob("*.py"), *out.rglob("*.pyi")]:
        text = path.read_text()
        path.write_text(_IMPORT_RE.sub(r"\1 loyalnest.gen.", text))
    _ensure_packages(out)
    (out / "py.typed").touch()
    _protoc(
        [
            f"--descriptor_set_out={out / DESCRIPTOR_SET}",
            "--include_imports",
            *files,
            *EXTRA_DESCRIPTOR_INPUTS,
        ]
    )


def _tree(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def stale_files(committed: Path) -> list[str]:
    with tempfile.TemporaryDirectory() as fresh_dir:
        fresh = Path(fresh_dir)
        generate(fresh)
        expected, actual = _tree(fresh), _tree(committed) if committed.exists() else set()
        differing = [
            name
            for name in expected & actual
            if not filecmp.cmp(fresh / name, committed / name, shallow=False)
        ]
        return sorted((expected ^ actual) | set(differing))


def write_buf_image(dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    _protoc(
        [
            f"--descriptor_set_out={dest}",
            "--include_imports",
            "--include_source_info",
            *_proto_files(),
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if pkg/loyalnest/gen is stale")
    parser.add_argument("--buf-image", type=Path, help="write an image for buf lint and exit")
    args = parser.parse_args()
    if args.buf_image:
        write_buf_image(args.buf_image)
        return 0
    if args.check:
        stale = stale_files(GEN_DIR)
        if stale:
            print("generated code is stale; run `make gen`:", *stale, sep="\n  ", file=sys.stderr)
            return 1
        print("generated code is up to date")
        return 0
    shutil.rmtree(GEN_DIR, ignore_errors=True)
    generate(GEN_DIR)
    print(f"generated {len(_tree(GEN_DIR))} files in {GEN_DIR.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
