"""How a model's config.json and the service settings combine into the batcher's policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.errors import ModelLoadError
from service.model_config import ModelConfig, read_model_config
from service.settings import CPU_INLINE_RUN_MS, Settings


def test_quick_runs_go_on_the_event_loop_on_the_cpu_and_never_on_a_gpu_by_default() -> None:
    settings = Settings()
    assert settings.inline_run_ms is None
    on_cpu = ModelConfig().batch_policy(settings, on_cpu=True)
    on_gpu = ModelConfig().batch_policy(settings, on_cpu=False)
    assert on_cpu.inline_run_s == pytest.approx(CPU_INLINE_RUN_MS / 1000)
    assert CPU_INLINE_RUN_MS > 0
    assert on_gpu.inline_run_s == 0.0


@pytest.mark.parametrize("value", [0.0, 7.5])
def test_an_explicit_inline_run_setting_applies_on_every_provider(value: float) -> None:
    settings = Settings(inline_run_ms=value)
    for on_cpu in (True, False):
        assert ModelConfig().batch_policy(settings, on_cpu=on_cpu).inline_run_s == pytest.approx(value / 1000)


def test_the_model_config_overrides_the_service_defaults() -> None:
    settings = Settings(max_batch_size=64, max_queue_delay_ms=2.0)
    config = ModelConfig(max_queue_delay_ms=0.5, allowed_batch_sizes=(1, 8, 32), max_queue_size=100)
    policy = config.batch_policy(settings)
    assert policy.max_batch_size == 32
    assert policy.max_queue_delay_s == pytest.approx(0.0005)
    assert policy.allowed_batch_sizes == (1, 8, 32)
    assert policy.max_queue_size == 100
    assert policy.padded_size(5) == 8
    assert ModelConfig(max_queue_delay_ms=0.0).batch_policy(settings).max_queue_delay_s == 0.0, "0 is a setting too"


def test_the_model_config_instances_override_gan_instances() -> None:
    assert ModelConfig(instances=3).sessions(Settings(instances=1)) == 3
    assert ModelConfig().sessions(Settings(instances=2)) == 2


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"allowed_batch_sizes": [8, 8]}, "allowed_batch_sizes must list distinct positive sizes"),
        ({"max_batch_size": 16, "allowed_batch_sizes": [1, 8]}, "(8) must equal max_batch_size"),
        ({"max_batch_size": 4, "allowed_batch_sizes": [1, 8]}, "(8) must equal max_batch_size"),
        ({"version_policy": {"latest": 2, "all": True}}, "version_policy: Value error, give one of latest, all"),
        ({"version_policy": {"specific": [0, 1]}}, "version_policy: Value error, specific must list positive"),
        ({"version_policy": {"specific": []}}, "version_policy: Value error, specific must list positive"),
        ({"version_policy": {"latest": 0}}, "version_policy.latest: Input should be greater than or equal to 1"),
        ({"name": "other"}, "name 'other' does not match its folder 'digits'"),
    ],
)
def test_a_config_that_contradicts_itself_or_selects_nothing_is_refused_naming_the_file_and_field(
    tmp_path: Path, config: dict[str, object], words: str
) -> None:
    folder = tmp_path / "digits"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError) as caught:
        read_model_config(folder)
    assert str(caught.value).startswith(str(folder / "config.json")) and words in str(caught.value)
