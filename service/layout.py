"""The model repository's layout, shared by the exporter (writer) and the service (reader).

<repository>/<model>/config.json           per-model settings (batching), optional
<repository>/<model>/<version>/model.onnx  versions are positive integers
"""

from __future__ import annotations

import re
from pathlib import Path

MODEL_FILE = "model.onnx"
CONFIG_FILE = "config.json"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
MODEL_NAME_RULE = "1-128 characters of letters, digits, '_', '.', '-', starting with a letter or digit"


def is_model_name(name: str) -> bool:
    # fullmatch: with match, the pattern's $ also matches before a final newline ('digits\n')
    return MODEL_NAME.fullmatch(name) is not None and ".." not in name


MAX_VERSION_DIGITS = 18  # within int64, as V2 clients hold versions; int() of a huge string is refused


def is_version_number(text: str) -> bool:
    """A version as Triton writes it: ASCII digits without leading zeros ('7', not '007': the folder
    of version 7 is 7/). str.isdigit alone takes '²' and other Unicode digits, which int() refuses
    or misreads."""
    return 0 < len(text) <= MAX_VERSION_DIGITS and text.isascii() and text.isdigit() and text == str(int(text))


def version_dirs(model_dir: Path) -> dict[int, Path]:
    """Version folders holding a model file, by version number."""
    found = {}
    if model_dir.is_dir():
        for child in model_dir.iterdir():
            if is_version_number(child.name) and int(child.name) > 0 and (child / MODEL_FILE).is_file():
                found[int(child.name)] = child
    return found
