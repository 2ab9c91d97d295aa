"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[IO], object], *, binary: bool = False) -> None:
    """Call ``write(handle)`` on a temporary file beside ``path``, flush it to disk, then rename it
    over ``path`` (``os.replace`` is atomic on one file system). On any error the temporary is removed.
    The file gets the permissions of a plain ``open`` (``0o666`` less the umask), not ``mkstemp``'s
    ``0o600``, so a cache or a table shared by a group stays readable; a directory in the way (a damaged
    cache entry) is removed."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb" if binary else "w") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(text))


def remove_stale_temporaries(directory: str | os.PathLike, *, pattern: str = f".*{TMP_SUFFIX}",
                             older_than_s: float = 60.0) -> int:
    """Remove temporaries of :func:`atomic_write` matching ``pattern`` under ``directory`` that are older
    than ``older_than_s`` (left by a killed writer; a live one renames its file within milliseconds).
    Returns how many were removed."""
    removed, now = 0, time.time()
    for tmp in Path(directory).glob(pattern):
        try:
            if tmp.is_file() and now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
                removed += 1
        except OSError:
            continue  # removed by a concurrent cleaner, or not ours to remove
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
