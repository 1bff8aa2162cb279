"""Generate Python code and the gateway descriptor set from proto/.

    python tools/genproto.py          write pkg/loyalnest/gen/
    python tools/genproto.py --check  exit 1 if the committed output is stale
    python tools/genproto.py --buf-image FILE
                                      write a protoc image with source info for `buf lint`
                                      (buf cannot reach the BSR for google/api, so it lints
                                      an image built against the googleapis wheel instead)

    python tools/genproto.py --fetch-xds
                                      fetch the xds-protos wheel into .build/ (make setup)

Protos live under proto/loyalnest/<service>/v1 (buf's package-directory rule), but the Python
modules live under loyalnest.gen.<service>.v1: the leading `loyalnest/` is stripped from the
output and the generated imports are rewritten to match.

Envoy's rate-limit service API (envoy.service.ratelimit.v3, which the edge service implements)
comes from the `xds-protos` wheel, but that wheel cannot be installed beside our dependencies:
it ships its own copies of google/api, google/rpc and opentelemetry/proto and overwrites the
real packages' files (the OTLP exporter then breaks). So the wheel is unpacked into .build/,
the descriptors of rls.proto and its imports are read from its modules (each embeds its
serialized FileDescriptorProto), and protoc regenerates just those under loyalnest.gen.xds.
"""

from __future__ import annotations

import argparse
import ast
import filecmp
import importlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import resources
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_tools import protoc

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "proto"
GEN_DIR = REPO / "pkg" / "loyalnest" / "gen"
DESCRIPTOR_SET = "loyalnest.binpb"
# The transcoder needs these to render google.rpc.Status error details as JSON.
EXTRA_DESCRIPTOR_INPUTS = ("google/rpc/status.proto", "google/rpc/error_details.proto")
_IMPORT_RE = re.compile(r"^(from|import) loyalnest\.", re.MULTILINE)

XDS_LOCK = REPO / "tools" / "locks" / "xds-protos.txt"
# "xds-protos==<version>", as pinned (with its hash) in the lock.
XDS_PROTOS = next(
    line.split()[0] for line in XDS_LOCK.read_text().splitlines() if line.startswith("xds-protos==")
)
XDS_DIR = REPO / ".build" / "xds-protos"
XDS_ROOT_FILES = ("envoy/service/ratelimit/v3/rls.proto",)
XDS_PACKAGES = ("envoy", "udpa", "xds", "validate")
_XDS_IMPORT_RE = re.compile(rf"^(from|import) ({'|'.join(XDS_PACKAGES)})\b", re.MULTILINE)
_SERIALIZED_RE = re.compile(r"AddSerializedFile\((b'.*?')\)", re.DOTALL)


def fetch_xds_protos() -> None:
    """Unpacks the wheel pinned (with its hash) in tools/locks/xds-protos.txt into .build/."""
    marker = XDS_DIR / (XDS_PROTOS.replace("==", "-").replace("-protos", "_protos") + ".dist-info")
    if marker.is_dir():
        return
    shutil.rmtree(XDS_DIR, ignore_errors=True)
    # `make setup` passes its pinned uv; the venv it builds has no pip.
    installer = [os.environ["UV"], "pip"] if os.environ.get("UV") else [sys.executable, "-m", "pip"]
    subprocess.run(
        [
            *installer,
            "install",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--target",
            str(XDS_DIR),
            "-r",
            str(XDS_LOCK),
        ],
        check=True,
    )


def _xds_file(name: str) -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto embedded in the xds-protos module generated from `name`."""
    module = XDS_DIR / name.replace(".proto", "_pb2.py")
    if not module.is_file():
        raise SystemExit(f"{module} missing: run `python tools/genproto.py --fetch-xds`")
    match = _SERIALIZED_RE.search(module.read_text())
    if match is None:
        raise SystemExit(f"no serialized descriptor in {module}")
    return descriptor_pb2.FileDescriptorProto.FromString(ast.literal_eval(match.group(1)))


def _xds_descriptor_set() -> tuple[descriptor_pb2.FileDescriptorSet, list[str]]:
    """rls.proto with every file it imports (well-known types from the protobuf runtime),
    and the names of the xds files among them (the ones to generate)."""
    files: dict[str, descriptor_pb2.FileDescriptorProto] = {}
    pending = list(XDS_ROOT_FILES)
    while pending:
        name = pending.pop()
        if name in files:
            continue
        if name.startswith("google/protobuf/"):
            importlib.import_module(name.removesuffix(".proto").replace("/", ".") + "_pb2")
            proto = descriptor_pb2.FileDescriptorProto()
            descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
        else:
            proto = _xds_file(name)
        files[name] = proto
        pending += list(proto.dependency)
    generated = sorted(n for n in files if n.split("/")[0] in XDS_PACKAGES)
    return descriptor_pb2.FileDescriptorSet(file=list(files.values())), generated


def _generate_xds(out: Path) -> None:
    descriptor_set, names = _xds_descriptor_set()
    with tempfile.TemporaryDirectory() as raw_dir:
        raw = Path(raw_dir)
        inputs = raw / "xds.binpb"
        inputs.write_bytes(descriptor_set.SerializeToString())
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"--descriptor_set_in={inputs}",
                f"--python_out={raw}",
                f"--pyi_out={raw}",
                f"--grpc_python_out={raw}",
                *names,
            ]
        )
        if code != 0:
            raise SystemExit(f"protoc failed ({code}) for the xds protos")
        for package in XDS_PACKAGES:
            if (raw / package).is_dir():
                shutil.copytree(raw / package, out / "xds" / package, dirs_exist_ok=True)
    for path in [*(out / "xds").rglob("*.py"), *(out / "xds").rglob("*.pyi")]:
        path.write_text(_XDS_IMPORT_RE.sub(r"\1 loyalnest.gen.xds.\2", path.read_text()))


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
    _generate_xds(out)
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
    parser.add_argument("--fetch-xds", action="store_true", help=f"fetch {XDS_PROTOS} and exit")
    args = parser.parse_args()
    if args.fetch_xds:
        fetch_xds_protos()
        return 0
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
