"""The committed gRPC stubs are exactly what proto/generate.py produces from the .proto files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_regenerating_stubs_changes_nothing(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "proto/generate.py"), "--out", str(tmp_path)], check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    assert generated, "protoc produced nothing"
    for relative in generated:
        committed = ROOT / "proto" / relative
        assert committed.exists(), f"{relative} is not committed; run `make proto`"
        assert committed.read_text() == (tmp_path / relative).read_text(), f"{relative} is stale; run `make proto`"


def test_service_never_imports_torch() -> None:
    code = (
        "import sys, service.__main__, service.server, gan_client.cli\n"
        "assert 'torch' not in sys.modules, 'torch was imported by the service'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
