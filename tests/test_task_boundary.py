"""The task boundary: a task defined in a test folder, as a user's would be, runs through the
unchanged controller, engineer, policy and sandbox, with islands, and resumes after kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from asi_jax.candidates.policy import check_source
from asi_jax.evolution import report
from asi_jax.evolution.config import (
    BudgetConfig,
    EvolutionConfig,
    IslandConfig,
    StageLimits,
    VerifyConfig,
)
from asi_jax.evolution.controller import DATABASE, Controller
from asi_jax.tasks import get_task, names

sys.path.insert(0, str(Path(__file__).parent))
import toy_task

# One worker: which evaluations have finished when the next proposal is made is then fixed,
# so an interrupted run can be compared with an uninterrupted one exactly.
CONFIG = EvolutionConfig(
    task="toy", seed=3, workers=1, max_attempts=1,
    budget=BudgetConfig(candidates=6), verify=VerifyConfig(promote=1, seeds=1),
    islands=IslandConfig(count=2, migration_interval=2, migrants=1),
    limits=StageLimits(wall_seconds=120, cpu_seconds=120),
)  # fmt: skip


def _ranking(board: dict, stage: str) -> list[tuple]:
    return sorted((r["name"], r["island"], r["status"], r["fitness"], r["loss"])
                  for r in board[stage]["ranking"])  # fmt: skip


def test_the_registry_knows_the_built_in_tasks_and_refuses_unknown_ones():
    assert {"linear_attention", "optimizer", "toy"} <= set(names())
    with pytest.raises(ValueError, match="unknown task 'nope'; known tasks"):
        get_task("nope")


def test_the_policy_reads_the_tasks_contract():
    task = get_task("toy")
    assert check_source(toy_task.source(2.0, 1.0), task.policy) == []
    found = check_source("import os\ndef guess(x):\n    return x\n", task.policy)
    assert [v.construct for v in found] == ["import os"]
    assert "allowed: math" in found[0].message
    missing = check_source("import math\n", task.policy)
    assert [v.construct for v in missing] == ["function guess"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> dict:
    """One whole run of the toy task, uninterrupted."""
    with Controller(CONFIG, tmp_path_factory.mktemp("toy"), log=lambda _: None) as controller:
        return controller.run()


def test_a_task_outside_asi_jax_evolves_through_the_controller_with_islands(finished):
    board = finished
    assert board["task"] == "toy" and board["figures"]["loss"] == "squared error"
    explore = board["explore"]
    assert explore["evaluated"] == 2 + 6 and explore["failed"] == 0
    linear = next(r for r in explore["ranking"] if r["name"] == "linear")
    expected = sum((x - x * x) ** 2 for x in toy_task.POINTS) / len(toy_task.POINTS)
    assert linear["loss"] == pytest.approx(expected) and linear["points"] == 4
    candidates = [r for r in explore["ranking"] if r["kind"] == "candidate"]
    assert sorted(r["island"] for r in candidates) == [0, 0, 0, 1, 1, 1]  # in turn
    assert [i["proposed"] for i in board["islands"]] == [3, 3]
    # Migrations after 2 and 4 proposals: each island's fittest joins the other.
    assert board["migrations"] and {m["after_proposals"] for m in board["migrations"]} <= {2, 4}
    assert all(m["to"] == 1 - m["from"] for m in board["migrations"])
    assert board["verify"]["evaluated"] == 2 + 1
    assert board["agents"]["researcher"] == "toy-researcher"


def test_the_judge_scores_after_training_beside_the_baselines(finished):
    judged = {name: (loss, baselines) for name, loss, baselines in toy_task.ToyJudge.seen}
    candidates = [r["name"] for r in finished["explore"]["ranking"] if r["kind"] == "candidate"]
    assert set(candidates) <= set(judged)
    for name in candidates:
        loss, baselines = judged[name]
        assert loss is not None  # judged with its figures, after training
        assert "linear" in baselines and name not in baselines


def test_only_the_quantitative_terms_beat_the_reference():
    def row(name, kind, loss, benchmark, judge):
        terms = {"loss": loss, "benchmark": benchmark, "judge": judge,
                 "quantitative": loss + benchmark}  # fmt: skip
        return {"name": name, "kind": kind, "status": "evaluated", "terms": terms}

    rows = [row("ref", "baseline", 0.5, 0.5, 0.4),
            row("worse-but-novel", "candidate", 0.45, 0.5, 1.0),  # 2% worse loss, judge 10
            row("better-but-plain", "candidate", 0.6, 0.5, 0.0)]  # fmt: skip
    assert report.beating(rows, "ref") == ["better-but-plain"]
    assert report.beating(rows, "absent") == []


def test_parents_come_from_their_own_island(finished, tmp_path):
    """Each candidate's parent was a member of its island when it was proposed."""
    del tmp_path
    board = finished
    members = {i: set() for i in range(2)}
    rows = {r["name"]: r for r in board["explore"]["ranking"]}
    for row in sorted(rows.values(), key=lambda r: r["generation"]):
        if row["kind"] == "baseline":
            continue
        parent = rows[row["parent"]]
        assert (
            parent["kind"] == "baseline"
            or parent["island"] == row["island"]
            or any(
                m["candidate"] == parent["name"] and m["to"] == row["island"]
                for m in board["migrations"]
            )
        )
        members[row["island"]].add(row["name"])


_RUN = """
import importlib.util, sys
sys.path.insert(0, {tests!r})
import toy_task
from test_task_boundary import CONFIG
from asi_jax.evolution.controller import evolve
evolve(CONFIG, {workdir!r}, log=lambda line: print(line, flush=True))
"""


def _finished_evaluations(workdir: Path) -> int:
    if not (workdir / DATABASE).exists():
        return 0
    with sqlite3.connect(workdir / DATABASE) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM evaluations WHERE status != 'pending'"
                              ).fetchone()[0]  # fmt: skip
        except sqlite3.OperationalError:
            return 0


def kill_9_mid_run(script: str, workdir: Path, evaluations: int = 5) -> None:
    """Runs `script` (an evolution into `workdir`) in a process group of its own and kills
    it with SIGKILL once `evaluations` evaluations have finished, before it ends."""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    while _finished_evaluations(workdir) < 5 and process.poll() is None:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_leaderboard(finished, tmp_path):
    workdir = tmp_path / "run"
    kill_9_mid_run(_RUN.format(tests=str(Path(__file__).parent), workdir=str(workdir)), workdir)
    with Controller(CONFIG, workdir, log=lambda _: None) as controller:
        board = controller.run()
    assert _ranking(board, "explore") == _ranking(finished, "explore")
    assert _ranking(board, "verify") == _ranking(finished, "verify")
    assert board["migrations"] == finished["migrations"]
    # Nothing finished was run twice: one attempt per candidate and stage.
    with sqlite3.connect(workdir / DATABASE) as db:
        counts = db.execute("SELECT MAX(n) FROM (SELECT COUNT(*) AS n FROM attempts "
                            "GROUP BY candidate_id, stage)").fetchone()[0]  # fmt: skip
    assert counts == 1
    assert json.loads((workdir / "leaderboard.json").read_text())["run"]["state"] == "finished"


@pytest.mark.slow
def test_the_optimizer_quickstart_resumes_after_kill_9(tmp_path):
    """The second task through scripts/evolve.py, shrunk: kill -9 once the reference (AdamW)
    has finished, then the same command finishes the run without repeating it."""
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(root / "scripts" / "evolve.py"),
               f"--config={root / 'configs' / 'quickstart_optimizer.py'}",
               f"--workdir={tmp_path / 'run'}", "--config.budget.candidates=2",
               "--config.baselines=('adamw','lion')", "--config.verify.promote=0",
               "--config.explore.train.steps=20", "--config.workers=1"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)  # fmt: skip
    workdir, deadline = tmp_path / "run", time.monotonic() + 600
    while _finished_evaluations(workdir) < 1 and process.poll() is None:
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.2)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    with sqlite3.connect(workdir / DATABASE) as db:
        (adamw_finished,) = db.execute("SELECT finished_at FROM evaluations WHERE "
                                       "status != 'pending'").fetchone()  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    board = json.loads((workdir / "leaderboard.json").read_text())
    assert board["task"] == "optimizer" and board["run"]["state"] == "finished"
    assert board["explore"]["evaluated"] + board["explore"]["failed"] == 2 + 2
    adamw = next(r for r in board["explore"]["ranking"] if r["name"] == "adamw")
    assert adamw["status"] == "evaluated" and adamw["fitness"] is not None
    with sqlite3.connect(workdir / DATABASE) as db:
        row = db.execute("SELECT e.finished_at FROM evaluations e JOIN candidates c ON "
                         "c.id = e.candidate_id WHERE c.name = 'adamw'").fetchone()  # fmt: skip
    assert row[0] == adamw_finished  # finished before the kill: not run again
