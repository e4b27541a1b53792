"""Writing files so that a crash never leaves a half-written one behind."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def write_atomically(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` for a temporary file beside ``path``, then move it onto ``path``.

    ``os.replace`` is atomic on one file system: readers see the old file or the new one,
    never a partial write. If ``write`` creates nothing (e.g. nnU-Net skips checkpointing on
    ranks > 0), nothing is moved.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        write(str(tmp))
        if tmp.exists():
            os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
