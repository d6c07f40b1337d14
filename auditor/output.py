"""Files written whole or not at all, readable only by their owner (they hold key hashes and aliases)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from auditor.errors import UnavailableError


def write_atomic(path: str | Path, content: str, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, rename: readers never see half a report, and a failure (disk full,
    no permission) leaves the old file as it was and no temp file behind."""
    target = Path(path)
    if _special(target):
        _write_in_place(target, content)
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent if str(target.parent) else ".")
    except OSError as err:
        raise UnavailableError(f"cannot write {target}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as err:
        raise UnavailableError(f"cannot write {target}: {err.strerror or err}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _special(target: Path) -> bool:
    """A device, FIFO or /dev/stdout-style link: there is nothing to rename over (and renaming over /dev/stdout
    as root would replace it), so it is written in place."""
    try:
        if not stat.S_ISREG(os.stat(target).st_mode):
            return True
        return os.path.islink(target) and os.readlink(target).startswith("/proc/")
    except OSError:
        return False  # absent (or unreadable): the atomic path creates it or says why not


def _write_in_place(target: Path, content: str) -> None:
    try:
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(content)
    except OSError as err:
        raise UnavailableError(f"cannot write {target}: {err.strerror or err}") from None
