"""The virtualenv holding the stock tritonclient, shared by the wire-compatibility test and
bench/serve_bench.py --client tritonclient.

tritonclient pins protobuf < 7 and the project runs protobuf 7, so it lives in its own
virtualenv, .venv-tritonclient, created on first use (from PyPI) and rebuilt when
requirements.txt beside this file changes. drive.py runs inside it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "requirements.txt"
DRIVER = HERE / "drive.py"
VENV = HERE.parents[1] / ".venv-tritonclient"


class VenvError(RuntimeError):
    """The tritonclient virtualenv could not be built."""


def tritonclient_python() -> Path:
    """The python of a virtualenv holding the pinned tritonclient, created if missing or stale."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".requirements-sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    shutil.rmtree(VENV, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise VenvError(f"could not build {VENV} for tritonclient ({' '.join(step)}):\n{done.stderr[-3000:]}")
    stamp.write_text(wanted)
    return python
