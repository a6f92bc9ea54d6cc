"""2-D mode coverage: the protocol's numbers on known sample sets, and gan-eval's outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.eval_cli import main
from training.mode_coverage import PROTOCOL_SAMPLES, TRUE_HQ_SHARE, coverage, grid25, ring8, self_test


@pytest.mark.parametrize("mixture", [ring8(), grid25()], ids=lambda m: m.name)
def test_samples_of_the_true_mixture_score_what_the_protocol_predicts(mixture) -> None:  # type: ignore[no-untyped-def]
    result, hq, kl = self_test(mixture, seed=3)
    assert result.modes_covered == result.modes
    assert hq == pytest.approx(0.9889, abs=1e-4)
    assert result.hq_share == pytest.approx(hq, abs=0.007)  # binomial spread over 2,500 samples
    assert kl == pytest.approx((result.modes - 1) / (2 * PROTOCOL_SAMPLES))
    assert 0 < result.reverse_kl < 3 * kl


def test_a_collapsed_generator_covers_one_mode_with_kl_log_k() -> None:
    mixture = grid25()
    samples = np.tile(mixture.centres[7], (PROTOCOL_SAMPLES, 1))
    result = coverage(samples, mixture)
    assert result.modes_covered == 1 and result.hq_share == 1.0
    assert result.reverse_kl == pytest.approx(math.log(25))


def test_half_the_modes_give_log_2_and_off_mode_samples_are_not_high_quality() -> None:
    mixture = ring8()
    rng = np.random.default_rng(0)
    on_modes = mixture.centres[rng.integers(0, 4, PROTOCOL_SAMPLES) * 2]  # modes 0, 2, 4, 6 only
    off_modes = on_modes * 0.5  # between the centre and the ring: far from every mode
    samples = np.concatenate([on_modes[: PROTOCOL_SAMPLES // 2], off_modes[: PROTOCOL_SAMPLES // 2]])
    result = coverage(samples, mixture)
    assert result.modes_covered == 4 and result.hq_share == pytest.approx(0.5)
    assert result.reverse_kl == pytest.approx(math.log(2), abs=0.02)
    assert result.counts[1] == 0


def test_the_protocol_uses_the_first_2500_samples_and_refuses_fewer() -> None:
    mixture = ring8()
    good = mixture.sample(PROTOCOL_SAMPLES, np.random.default_rng(1))
    junk = np.full((1000, 2), 50.0)
    assert coverage(np.concatenate([good, junk]), mixture).hq_share > 0.97
    with pytest.raises(ValueError, match="first 2500"):
        coverage(good[:100], mixture)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        coverage(np.zeros((PROTOCOL_SAMPLES, 3)), mixture)


def test_gan_eval_writes_json_and_a_plot(tmp_path: Path) -> None:
    samples = tmp_path / "generated.npy"
    np.save(samples, grid25().sample(3000, np.random.default_rng(2)))
    out, picture = tmp_path / "grid.json", tmp_path / "grid.png"
    argv = ["modes", "--mixture", "grid25", "--samples", str(samples), "--json", str(out), "--plot", str(picture)]
    assert main(argv) == 0
    figures = json.loads(out.read_text())
    assert figures["modes_covered"] == 25 and figures["hq_share"] == pytest.approx(TRUE_HQ_SHARE, abs=0.007)
    assert Image.open(picture).size == (480, 480)
    assert main(["modes", "--mixture", "ring8", "--self-test", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["expected_hq_share"] == pytest.approx(TRUE_HQ_SHARE)
    assert main(["modes", "--mixture", "ring8", "--samples", str(tmp_path / "missing.npy")]) == 2
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert main(["modes", "--mixture", "ring8", "--self-test", "--json", str(blocked / "ring.json")]) == 2
