"""TensorBoard event files under out_dir/tensorboard: the logged scalars and every sample grid.

Off unless the config says `tensorboard: true`, so that a config means the same on every
install; the `train` extra installs the tensorboard package that it needs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from training.config import ConfigError

SAMPLES_TAG = "samples"


class Board(Protocol):
    def scalars(self, step: int, values: Mapping[str, float]) -> None: ...

    def image(self, step: int, png: Path) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class TensorBoardLog:
    """One SummaryWriter; on resume, events after the checkpoint's step are hidden, as losses.csv drops them."""

    def __init__(self, directory: Path, resume_step: int) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ConfigError(
                "tensorboard: true needs the tensorboard package; pip install 'gan-serving[train]' "
                "(or pip install tensorboard), or set tensorboard=false"
            ) from None
        purge_step = resume_step + 1 if resume_step > 0 else None
        self.writer: Any = SummaryWriter(log_dir=str(directory), purge_step=purge_step)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def image(self, step: int, png: Path) -> None:
        """The picture at `png` (a sample grid just written), exactly as it is on disk."""
        with Image.open(png) as picture:
            pixels = np.asarray(picture.convert("RGB"))  # (H, W, 3) uint8
        self.writer.add_image(SAMPLES_TAG, pixels, step, dataformats="HWC")

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class NoBoard:
    """What the run logs to when TensorBoard is off, or on ranks other than 0: nothing."""

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        pass

    def image(self, step: int, png: Path) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def open_board(directory: Path, resume_step: int, enabled: bool) -> Board:
    """A TensorBoard log in `directory`, or one that drops everything when not `enabled`."""
    return TensorBoardLog(directory, resume_step) if enabled else NoBoard()
