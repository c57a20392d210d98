"""Atomic file writes: the one place that turns "write a file" into "the file is whole or absent".

Every file latpred writes for a user (bundles, CSV/Parquet exports, model lists, results) goes
through :func:`atomic_write`: the data go to a temporary file in the target's folder (created by
``mkstemp``, so mode 0600 whatever the umask, and on the same file system so that ``os.replace`` is
atomic), are flushed to disk, and only then take the target's name. A crash, a full disk or an
exception leaves the previous file untouched and no temporary file behind. OS errors come out as
one :class:`LatpredError` line naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from typing import IO, Iterator

from .errors import LatpredError


def os_error_message(path: str, exc: OSError) -> str:
    """One line for an OSError on ``path`` (disk full and permission get their plain words)."""
    if exc.errno == errno.ENOSPC:
        what = "no space left on the device"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        what = "permission denied (read-only folder?)"
    else:
        what = exc.strerror or exc.__class__.__name__
    return f"{path}: cannot write ({what})"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", *,
                 encoding: str | None = "utf-8", suffix: str = ".tmp") -> Iterator[IO]:
    """``with atomic_write(p, "wb") as fh: ...`` writes ``p`` all at once or not at all."""
    if mode not in ("w", "wb"):
        raise ValueError("atomic_write mode is 'w' or 'wb'")
    if os.path.isdir(path):
        raise LatpredError(f"{os.fspath(path)}: is a directory")
    binary = "b" in mode
    with atomic_path(path, suffix) as tmp:
        # the file mkstemp made keeps its 0600 mode when opened again
        with open(tmp, mode, encoding=None if binary else encoding,
                  newline=None if binary else "") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return os.fspath(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return os.fspath(path)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """A temporary path next to ``path`` for libraries that write files by name (pandas'
    ``to_parquet``, matplotlib's ``savefig``); it replaces ``path`` when the block ends cleanly."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise LatpredError(f"{path}: folder {folder} does not exist")
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix,
                                   dir=folder)
        os.close(fd)
        yield tmp
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        raise LatpredError(os_error_message(path, exc)) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
