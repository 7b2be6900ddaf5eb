"""Steers a run, running or stopped: ideas, bans and requirements, pause, approvals.

    python scripts/steer.py --workdir=runs/quickstart idea "try a short convolution on keys"
    python scripts/steer.py --workdir=runs/quickstart ban conv=qkv
    python scripts/steer.py --workdir=runs/quickstart require --pattern='jax\\.nn\\.silu'
    python scripts/steer.py --workdir=runs/quickstart pause      # then: resume
    python scripts/steer.py --workdir=runs/quickstart veto NAME  # or: approve NAME
    python scripts/steer.py --workdir=runs/quickstart withdraw ID
    python scripts/steer.py --workdir=runs/quickstart list

Each command becomes one file in `<workdir>/steering/inbox/`, which the controller reads at
every turn of its loop (or when the run resumes), records with its author (--author, default
the user's name) and applies; `list` shows every command, its status and what it did.
asi_jax/evolution/steering.py says what each does. The controller alone writes the
database: this script only reads it.

Exit status: 0 done, 2 the command line or workdir is invalid (nothing was written).
"""

from __future__ import annotations

import datetime
import getpass
import sqlite3
from pathlib import Path

from absl import flags

from asi_jax import command_line
from asi_jax.evolution import steering
from asi_jax.evolution.db import SchemaError
from asi_jax.report import source
from asi_jax.tasks import get_task

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (scripts/evolve.py's).")
_AUTHOR = flags.DEFINE_string("author", None, "Who gives the command; default the user name.")
_PATTERN = flags.DEFINE_string("pattern", None, "ban/require: a regular expression searched in "
                               "each proposal's file, instead of component=value.")  # fmt: skip
flags.mark_flags_as_required(["workdir"])


def _recorded(workdir: Path) -> tuple[list[dict], str | None]:
    """(the recorded commands, the run's task) from the database, read-only; ([], None)
    before the run has a database this asi-jax reads."""
    try:
        db = source.open_run(workdir)
    except (FileNotFoundError, SchemaError, source.OlderSchema, sqlite3.Error):
        return [], None
    try:
        return db.steering(), (db.get_meta("config") or {}).get("task")
    finally:
        db.close()


def _when(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def _list(workdir: Path, recorded: list[dict]) -> None:
    rows = [(r["id"], r["status"], r["author"], _when(r["created_at"]),
             steering.describe(r["command"], r["arguments"]), steering.effect(r))
            for r in recorded]  # fmt: skip
    for path, payload in steering.queued(workdir):
        if isinstance(payload, str):
            rows.append((path.stem, "queued", "?", "?", path.name, f"malformed: {payload}"))
        else:
            rows.append((payload["id"], "queued", payload["author"], _when(payload["created_at"]),
                         steering.describe(payload["command"], payload["arguments"]),
                         "not read by the controller yet"))  # fmt: skip
    if not rows:
        print(f"no steering commands in {workdir}")
    for row in rows:
        print("  ".join(row[:5]) + (f"\n    {row[5]}" if row[5] else ""))


def _arguments(command: str, words: list[str]) -> dict[str, str]:
    """The command's arguments from the words after it."""
    if command in ("ban", "require"):
        if _PATTERN.value is not None:
            if words:
                raise ValueError(f"{command} takes --pattern or component=value, not both")
            return {"pattern": _PATTERN.value}
        if len(words) != 1 or "=" not in words[0]:
            raise ValueError(f"{command} takes one component=value (or --pattern=REGEX)")
        component, _, value = words[0].partition("=")
        return {"component": component.strip(), "value": value.strip()}
    if _PATTERN.value is not None:
        raise ValueError("--pattern is for ban and require")
    if command == "idea":
        return {"text": " ".join(words)}
    key = {"approve": "name", "veto": "name", "withdraw": "id"}.get(command)
    if key is None:
        if words:
            raise ValueError(f"{command} takes no arguments, got {words}")
        return {}
    if len(words) != 1:
        raise ValueError(f"{command} takes one {key}, got {words}")
    return {key: words[0]}


def main(argv: list[str]) -> None:
    workdir = Path(_WORKDIR.value)
    if not workdir.is_dir():
        raise command_line.UsageError(f"--workdir {workdir} is not a folder")
    if len(argv) < 2:
        raise command_line.UsageError(f"name a command: {[*steering.COMMANDS, 'list']}")
    command, words = argv[1], argv[2:]
    recorded, task = _recorded(workdir)
    if command == "list":
        _list(workdir, recorded)
        return
    try:
        options = steering.options_of(get_task(task)) if task else None
        payload = steering.submit(workdir, command, _arguments(command, words),
                                  _AUTHOR.value or getpass.getuser(), options)  # fmt: skip
    except ValueError as e:
        raise command_line.UsageError(str(e)) from e
    print(f"#{payload['id']} {steering.describe(command, payload['arguments'])} (by "
          f"{payload['author']}): queued; the run applies it at its next turn (or when it "
          "resumes); see it with `list`")  # fmt: skip


if __name__ == "__main__":
    command_line.run(main)
