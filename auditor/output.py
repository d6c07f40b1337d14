"""Files written whole or not at all, readable only by their owner (they hold key hashes and aliases)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from auditor.errors import UnavailableError


def write_atomic(path: str | Path, content: str, mode: int = 0o600) -> None:
    """Temp file in the same directory, fsync, rename: readers never see half a report."""
    target = Path(path)
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
