"""Writes a run's report: one self-contained HTML page (no network, no script).

    python scripts/report.py --workdir=runs/quickstart            # runs/quickstart/report.html
    python scripts/report.py --workdir=runs/quickstart --watch=30  # during a run
    python scripts/report.py --workdir=runs/quickstart --control=runs/quickstart_random

The page holds the leaderboard per stage, ASI-Arch's analyses (discoveries against compute,
design components and idea origins of the winners against all candidates), the lineage, the
language-model totals, the comparison with a random-search control arm (--control, a run
of agents "random" on the same task; or this run's islands when one samples at random) and a
section per candidate (code, diff against its parent, loss curve,
analysis, judgement, attempts). It reads the database read-only, so it may run beside the
controller. With --watch=SECONDS it rewrites the page that often and the page reloads itself;
--iterations stops after that many writes (0: until interrupted).

Exit status: 0 written, 2 the command line or workdir is invalid.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from absl import flags

from asi_jax import command_line
from asi_jax.evolution.db import Database, SchemaError
from asi_jax.report import page, source

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (scripts/evolve.py's).")
_OUTPUT = flags.DEFINE_string("output", None, f"The page; default <workdir>/{page.REPORT}.")
_WATCH = flags.DEFINE_float("watch", 0.0, "Rewrite the page every this many seconds (and make "
                            "it reload itself); 0: write it once.")  # fmt: skip
_ITERATIONS = flags.DEFINE_integer("iterations", 0, "With --watch: stop after this many "
                                   "writes; 0: until interrupted.")  # fmt: skip
_CONTROL = flags.DEFINE_string("control", None, "A control run's folder (the same task with "
                               "--config.agents=random), compared with this run.")  # fmt: skip
flags.mark_flags_as_required(["workdir"])


def open_control(workdir: Path, control: Path) -> source.ReadOnlyDatabase:
    """The control run's database, refused (a usage error) when it is not a run of the
    same task and reference baseline as `workdir`'s, or has not started."""
    if not control.is_dir():
        raise command_line.UsageError(f"--control {control} is not a folder")
    try:
        db = source.open_run(control)
    except (FileNotFoundError, SchemaError, ValueError, sqlite3.OperationalError) as e:
        raise command_line.UsageError(f"--control: {e}") from e
    theirs = db.get_meta("config") or {}
    try:
        ours = source.open_run(workdir)
    except (FileNotFoundError, SchemaError, ValueError, sqlite3.OperationalError):
        return db  # this run not started yet: write_report says so
    mine = ours.get_meta("config") or {}
    ours.close()
    for key in ("task", "reference_baseline"):
        if mine and theirs.get(key) != mine.get(key):
            db.close()
            raise command_line.UsageError(
                f"--control {control} is a run with {key} {theirs.get(key)!r} and --workdir "
                f"{workdir} one with {mine.get(key)!r}: nothing to compare"
            )
    return db


def write_report(workdir: Path, output: Path, refresh_seconds: float | None,
                 control: Database | None = None) -> str:  # fmt: skip
    """Writes the page once; returns what it shows. Without a run to show yet, a watch
    writes a waiting page and a single write is a usage error."""
    try:
        db = source.open_run(workdir)
        try:
            text = page.render(db, workdir, refresh_seconds=refresh_seconds, control=control)
        finally:
            db.close()
    except SchemaError as e:
        raise command_line.UsageError(str(e)) from e
    except (FileNotFoundError, ValueError, sqlite3.OperationalError) as e:
        if not refresh_seconds:
            raise command_line.UsageError(str(e)) from e
        page.write(page.waiting(workdir, f"waiting: {e}", refresh_seconds), output)
        return f"waiting ({e})"
    page.write(text, output)
    return "written"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    workdir = Path(_WORKDIR.value)
    if not workdir.is_dir():
        raise command_line.UsageError(f"--workdir {workdir} is not a folder")
    if _WATCH.value < 0 or _ITERATIONS.value < 0:
        raise command_line.UsageError("--watch and --iterations must not be negative")
    output = Path(_OUTPUT.value) if _OUTPUT.value else workdir / page.REPORT
    refresh = _WATCH.value or None
    control = open_control(workdir, Path(_CONTROL.value)) if _CONTROL.value else None
    done = 0
    try:
        while True:
            outcome = write_report(workdir, output, refresh, control)
            done += 1
            print(f"{output}: {outcome}", flush=True)
            if refresh is None or done == _ITERATIONS.value:
                return
            time.sleep(refresh)
    except KeyboardInterrupt:
        print(f"stopped watching; {output} stays", flush=True)
    finally:
        if control is not None:
            control.close()


if __name__ == "__main__":
    command_line.run(main)
