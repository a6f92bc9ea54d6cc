"""docs/api.md is generated from the .proto comments and kept current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_committed_api_reference_matches_the_protos() -> None:
    spec = importlib.util.spec_from_file_location("api_docs", ROOT / "proto" / "api_docs.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered = module.render()
    assert (ROOT / "docs" / "api.md").read_text() == rendered, "run: .venv/bin/python proto/api_docs.py"
    for call in ("Generate", "ModelInfer", "RepositoryModelLoad"):
        assert f"| `{call}` |" in rendered
