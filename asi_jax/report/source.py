"""A run's database opened for reading only, while the controller may be writing it.

The controller keeps the database in write-ahead-log mode (asi_jax/evolution/db.py), so a
reader neither blocks it nor sees half a transaction; `snapshot` holds one read transaction
so every query of one report sees the same state. Opening read-only never migrates: a file
from another schema version is refused, not upgraded behind the controller's back.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from asi_jax.evolution import db as db_module
from asi_jax.evolution import report
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.db import DATABASE, Database, SchemaError
from asi_jax.tasks import get_task


class OlderSchema(ValueError):
    """The file predates this asi-jax's schema, or the controller is creating it now: the
    controller upgrades it when it opens the run, a reader may not."""


class ReadOnlyDatabase(Database):
    """`Database`'s queries over a `mode=ro` connection: any write raises."""

    def __init__(self, path: str | Path, timeout: float = 30.0):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no run database at {self.path}")
        uri = f"file:{urllib.parse.quote(str(self.path.resolve()))}?mode=ro"
        self.connection = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=timeout)
        version = self.connection.execute("PRAGMA user_version").fetchone()[0]
        if version != db_module.SCHEMA_VERSION:
            self.connection.close()
            newer = version > db_module.SCHEMA_VERSION
            raise (SchemaError if newer else OlderSchema)(
                f"{self.path} has schema version {version}, this asi-jax reads "
                f"{db_module.SCHEMA_VERSION}; "
                + ("upgrade asi-jax to read it" if newer else "resume the run with "
                   "scripts/evolve.py to upgrade it (or it is being created right now)")
            )  # fmt: skip
        # The row factory `Database` uses, so rows decode their JSON columns the same way.
        self.connection.row_factory = db_module._row


def open_run(workdir: str | Path) -> ReadOnlyDatabase:
    return ReadOnlyDatabase(Path(workdir) / DATABASE)


@contextlib.contextmanager
def snapshot(db: Database) -> Iterator[Database]:
    """One read transaction: the queries inside see a single committed state."""
    db.connection.execute("BEGIN")
    try:
        yield db
    finally:
        db.connection.execute("ROLLBACK")


def leaderboard(db: Database, workdir: str | Path) -> dict[str, Any]:
    """The leaderboard as `report.leaderboard` builds it, from the stored config and the
    run state the controller last wrote to leaderboard.json (absent before its first
    write)."""
    workdir = Path(workdir)
    stored = db.get_meta("config")
    if stored is None:
        raise ValueError(f"{workdir} has no run config yet (the run has not started)")
    try:
        config = from_config_dict(stored)
    except (TypeError, OSError) as e:  # OSError: a data file the config names is gone
        raise ValueError(f"the run's stored config cannot be read here: {e}") from e
    written: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        written = json.loads((workdir / report.LEADERBOARD).read_text())
    return report.leaderboard(db, config, get_task(config.task), workdir,
                              agents=written.get("agents") or {}, run=written.get("run"),
                              wall_seconds=float(db.get_meta("wall_seconds") or 0.0))  # fmt: skip
