"""Writes a run's report: one self-contained HTML page (no network, no script).

    python scripts/report.py --workdir=runs/quickstart            # runs/quickstart/report.html
    python scripts/report.py --workdir=runs/quickstart --watch=30  # during a run

The page holds the leaderboard per stage, ASI-Arch's analyses (discoveries against compute,
design components and idea origins of the winners against all candidates), the lineage, the
language-model totals and a section per candidate (code, diff against its parent, loss curve,
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
from asi_jax.evolution.db import SchemaError
from asi_jax.report import page, source

_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder (scripts/evolve.py's).")
_OUTPUT = flags.DEFINE_string("output", None, f"The page; default <workdir>/{page.REPORT}.")
_WATCH = flags.DEFINE_float("watch", 0.0, "Rewrite the page every this many seconds (and make "
                            "it reload itself); 0: write it once.")  # fmt: skip
_ITERATIONS = flags.DEFINE_integer("iterations", 0, "With --watch: stop after this many "
                                   "writes; 0: until interrupted.")  # fmt: skip
flags.mark_flags_as_required(["workdir"])


def write_report(workdir: Path, output: Path, refresh_seconds: float | None) -> str:
    """Writes the page once; returns what it shows. Without a run to show yet, a watch
    writes a waiting page and a single write is a usage error."""
    try:
        db = source.open_run(workdir)
        try:
            text = page.render(db, workdir, refresh_seconds=refresh_seconds)
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
    done = 0
    try:
        while True:
            outcome = write_report(workdir, output, refresh)
            done += 1
            print(f"{output}: {outcome}", flush=True)
            if refresh is None or done == _ITERATIONS.value:
                return
            time.sleep(refresh)
    except KeyboardInterrupt:
        print(f"stopped watching; {output} stays", flush=True)


if __name__ == "__main__":
    command_line.run(main)
