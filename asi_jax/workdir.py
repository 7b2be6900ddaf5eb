"""A run's folder: created when missing, refused when it is a file, and held by one process
at a time.

    with hold(workdir, "evolution run") as path:   # absolute Path
        ...

The hold is an exclusive `flock` on `<workdir>/run.lock`, taken without waiting. The kernel
releases it when the holder's process ends however it ends, so `kill -9` leaves nothing to
clean up; the file itself stays and only names the last holder. A second process that finds
the folder held fails at once with the holder's pid, host, start time and command.

A workdir may also be a URL that `etils.epath` opens (`gs://bucket/run`; Google Cloud Storage
needs `pip install gcsfs`): `hold` then yields an `epath.Path`, and the lock file lives in a
local folder named after the URL, so it excludes a second run on the same machine only (an
object store has no lock that a killed process releases).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from etils import epath

LOCK_FILE = "run.lock"


class WorkdirError(RuntimeError):
    """The workdir cannot be used: not a folder, not writable, or held by another run."""


def is_remote(workdir: str | os.PathLike) -> bool:
    """Whether `workdir` is a URL (gs://...) rather than a local path."""
    return "://" in str(workdir)


def _lock_folder(url: str) -> Path:
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "asi_jax_locks" / digest


def prepare(workdir: str | Path) -> Path:
    """The workdir as an absolute path (an `epath.Path` for a URL), created with its parents
    if missing."""
    if is_remote(workdir):
        path = epath.Path(str(workdir))
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (OSError, ImportError) as e:  # no gcsfs, no credentials, no such bucket
            raise WorkdirError(f"cannot open workdir {str(workdir)!r}: {e}") from None
        return path
    path = Path(workdir).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise WorkdirError(f"workdir {str(workdir)!r} is a file, not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a parent is a file, no permission, read-only file system
        raise WorkdirError(f"cannot create workdir {str(workdir)!r}: {e.strerror}") from None
    return path


def _describe(holder: str) -> str:
    try:
        info = json.loads(holder)
        return (f"pid {info['pid']} on {info['host']}, started {info['started_at']}: "
                f"{info['command']}")  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return "a process that left no details"


@contextlib.contextmanager
def hold(workdir: str | Path, what: str) -> Iterator[Path]:
    """Prepares `workdir` and holds it for the duration of the block (see module docstring).
    `what` names the run in the error another process gets."""
    path = prepare(workdir)
    locks = path
    if is_remote(workdir):
        locks = _lock_folder(str(workdir))
        locks.mkdir(parents=True, exist_ok=True)
    fd = os.open(locks / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode(errors="replace")
            raise WorkdirError(
                f"workdir {str(workdir)!r} is in use by another {what} ({_describe(holder)}); "
                "wait for it to end or stop it, or use another workdir"
            ) from None
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        os.close(fd)  # releases the lock
