"""Every command in the README's Quick start and client examples still runs, and its settings
table and metrics list name everything the service has."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gan_client.cli import main as gan_client
from service.metrics import Metrics
from service.settings import Settings
from tests.conftest import ServerThread

ROOT = Path(__file__).resolve().parents[1]


def section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def commands(title: str) -> list[list[str]]:
    """The command lines of the ```bash blocks of one README section, comments removed."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", section(title), re.S):
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                found.append(shlex.split(line))
    return found


def test_the_quick_start_commands_are_make_targets() -> None:
    quick = commands("Quick start")
    assert [c[:2] for c in quick if c[0] == "make"] == [["make", "serve"], ["make", "test"]]
    for command in quick:
        if command[0] == "make":
            result = subprocess.run(["make", "-n", *command[1:]], cwd=ROOT, capture_output=True, text=True)
            assert result.returncode == 0, result.stderr


def client_commands() -> list[list[str]]:
    lines = commands("Quick start") + commands("Clients")
    return [c for c in lines if Path(c[0]).name == "gan-client"]


@pytest.mark.parametrize("command", client_commands(), ids=lambda c: " ".join(c[1:4]))
def test_every_client_example_runs(
    command: list[str], server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert gan_client(["--target", server.target, *command[1:]]) == 0, command
    if "--out" in command:
        out = tmp_path / command[command.index("--out") + 1]
        assert out.exists() and (not out.is_dir() or any(out.iterdir()))


def test_the_readme_shows_client_examples() -> None:
    assert len(client_commands()) >= 4


def test_every_setting_has_a_row_in_the_serving_settings_table() -> None:
    documented = set(re.findall(r"`(GAN_[A-Z0-9_]+)`", section("Serving settings")))
    by_hand = {name for name in Settings.model_fields if name != "worker_index"}  # gan-serve sets that one
    missing = {f"GAN_{name.upper()}" for name in by_hand} - documented
    assert not missing, f"README *Serving settings* does not describe {sorted(missing)}"


def test_the_metrics_section_names_every_metric_the_service_exports() -> None:
    documented = set(re.findall(r"\bgan_[a-z_]+", section("Metrics")))
    families = Metrics(CollectorRegistry()).registry.collect()
    exported = {family.name + ("_total" if family.type == "counter" else "") for family in families}
    missing = exported - documented
    assert not missing, f"README *Metrics* does not name {sorted(missing)}"
