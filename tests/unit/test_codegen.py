"""The committed generated code matches what `make gen` produces from proto/."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _genproto():
    spec = importlib.util.spec_from_file_location("genproto", REPO / "tools" / "genproto.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_code_is_fresh():
    stale = _genproto().stale_files(REPO / "pkg" / "loyalnest" / "gen")
    assert stale == [], f"run `make gen`; stale: {stale}"


def test_staleness_is_detected(tmp_path):
    genproto = _genproto()
    committed = tmp_path / "gen"
    genproto.generate(committed)
    (committed / "points" / "v1" / "points_pb2.py").write_text("# edited by hand\n")
    assert genproto.stale_files(committed) == ["points/v1/points_pb2.py"]


def test_descriptor_set_has_imports_and_rich_error_protos():
    from google.protobuf import descriptor_pb2

    data = (REPO / "pkg" / "loyalnest" / "gen" / "loyalnest.binpb").read_bytes()
    files = {f.name for f in descriptor_pb2.FileDescriptorSet.FromString(data).file}
    assert {
        "loyalnest/points/v1/points.proto",
        "google/api/annotations.proto",
        "google/api/http.proto",
        "google/protobuf/timestamp.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
    } <= files


def test_check_mode_exit_code():
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "genproto.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
