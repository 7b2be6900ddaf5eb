"""What every run records about itself: package versions, git revision, devices, time.

A figure without these cannot be reproduced or compared, so every script writes this record
next to its results.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import jax

PACKAGES = (
    "jax",
    "jaxlib",
    "flax",
    "optax",
    "orbax-checkpoint",
    "grain",
    "google-genai",
    "scann",
    "numpy",
    "ml-collections",
    "absl-py",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(path: Path | None = None) -> str | None:
    """The checkout's HEAD commit, with '+dirty' if tracked files have changes; None outside git."""
    cwd = path or Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+dirty" if dirty else "")


def environment_record(*, devices: bool = True) -> dict:
    """A JSON-serialisable description of the software and hardware this process runs on.

    `devices=False` leaves JAX's backends untouched: listing devices initialises them, and on
    a GPU that claims most of its memory for this process.
    """
    record = {
        "time_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }
    if devices:
        found = jax.devices()
        record |= {
            "backend": jax.default_backend(),
            "devices": [str(d.device_kind) for d in found],
            "device_count": len(found),
        }
    return record
