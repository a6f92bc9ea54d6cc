"""The permissions a plain open() or mkdir() would give, for files made by tempfile (which keeps them private).

tempfile.mkstemp creates 0600 files and mkdtemp 0700 folders whatever the umask; renamed into place
as a checkpoint or a model version, they would be unreadable to a server running as another user.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC_STATUS = Path("/proc/self/status")


def current_umask() -> int:
    """The process umask, read without changing it where Linux reports it (os.umask can only be read by
    setting it, which would briefly change it for every thread)."""
    try:
        for line in PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def plain_file_mode() -> int:
    """What open(path, "w") gives a new file: rw for everyone, less the umask."""
    return 0o666 & ~current_umask()


def plain_dir_mode() -> int:
    """What mkdir gives a new folder: rwx for everyone, less the umask."""
    return 0o777 & ~current_umask()
