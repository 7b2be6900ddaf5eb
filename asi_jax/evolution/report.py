"""What a run reports: `leaderboard.json` and the progress lines, as pure functions of the
database, the config and the task (the controller adds only its clock and its state)."""

from __future__ import annotations

import collections
import json
import os
from pathlib import Path
from typing import Any

from asi_jax.evolution import bandit, state, verification
from asi_jax.evolution.config import EvolutionConfig, split_stage
from asi_jax.evolution.db import Database
from asi_jax.tasks.base import Task

LEADERBOARD = "leaderboard.json"


def last_line(text: str | None) -> str | None:
    lines = (text or "").strip().splitlines()
    return lines[-1][:300] if lines else None


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def folder(workdir: Path, candidate: dict, stage: str) -> Path:
    """Where a candidate's evaluation in `stage` keeps its code, engineer.json and, per
    attempt, the sandbox folder with its run."""
    return workdir / "candidates" / f"{candidate['id']:04d}-{candidate['name']}" / stage


def _terms(row: dict) -> dict[str, float] | None:
    if row["fitness"] is None:
        return None
    terms = row["terms"] or {"loss": row["loss_term"], "benchmark": row["benchmark_term"],
                             "judge": row["judge_term"]}  # fmt: skip
    return {**terms, "quantitative": terms["loss"] + terms["benchmark"]}


def _rows(db: Database, task: Task, workdir: Path, stage: str) -> list[dict[str, Any]]:
    names = {c["id"]: c["name"] for c in db.candidates()}
    rows = []
    for r in db.evaluations(stage):
        judgement = db.judgement(r["id"])
        rows.append({
            "name": r["name"], "kind": r["kind"], "generation": r["generation"],
            "island": r["island"], "parent": names.get(r["parent_id"]), "stage": stage,
            "status": r["status"], "fitness": r["fitness"], "terms": _terms(r),
            "loss": r["loss"], "benchmark": r["benchmark"],
            **task.figures(r["metrics"]).details,
            "params": r["params"], "compute_seconds": r["compute_seconds"],
            "judge": judgement and {"score": judgement["score"], "by": judgement["judge"]},
            "failure_stage": r["failure_stage"],
            "failure_reason": last_line(r["failure_reason"]),
            "researcher": r["researcher"], "idea_origins": r["idea_origins"],
            "folder": str(folder(workdir, r, stage).relative_to(workdir)),
        })  # fmt: skip
    order = {"evaluated": 0, "failed": 1, "pending": 2}
    return sorted(rows, key=lambda x: (order[x["status"]], -(x["fitness"] or 0.0)))


def beating(rows: list[dict[str, Any]], reference: str) -> list[str]:
    """The evaluated candidates whose quantitative terms (loss and benchmark) sum above the
    reference's: the judge's term, which fitness also counts, cannot lift a candidate that
    trains worse than the reference into this list."""
    ref = next((r for r in rows if r["name"] == reference), None)
    if ref is None or ref["terms"] is None:
        return []
    return [r["name"] for r in rows
            if r["kind"] == "candidate" and r["status"] == "evaluated" and r["terms"]
            and r["terms"]["quantitative"] > ref["terms"]["quantitative"]]  # fmt: skip


def _counts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    failures = collections.Counter(r["failure_stage"] for r in rows if r["status"] == "failed")
    return {"ranking": rows, "evaluated": sum(r["status"] == "evaluated" for r in rows),
            "failed": sum(r["status"] == "failed" for r in rows),
            "failures_by_stage": dict(failures)}  # fmt: skip


def _ablations(db: Database, summariser: verification.Summariser,
               rows: list[dict[str, Any]]) -> list[dict[str, Any]]:  # fmt: skip
    """The ablation table of every ablated winner (`ablations` meta: winner -> {change:
    the variant's name, the reference's where the change gives the reference})."""
    by_name = {r["name"]: r for r in rows}
    return [summariser.ablations(rows, by_name[winner], labels)
            for winner, labels in (db.get_meta("ablations") or {}).items()
            if winner in by_name]  # fmt: skip


def _islands(db: Database, config: EvolutionConfig) -> list[dict[str, Any]]:
    out = []
    for island in range(config.islands.count):
        members = db.members(island)
        best = next(iter(state.ranked(db, "explore", members)), None)
        out.append({"island": island, "agents": config.agents_of(island),
                    "members": len(members),
                    "proposed": sum(1 for c in db.candidates()
                                    if c["kind"] == "candidate" and c["island"] == island),
                    "best": best and {"name": best.name, "fitness": best.fitness}})  # fmt: skip
    return out


def leaderboard(db: Database, config: EvolutionConfig, task: Task, workdir: Path, *,
                agents: dict[str, str], run: dict | None, wall_seconds: float
                ) -> dict[str, Any]:  # fmt: skip
    reference = config.reference_baseline
    board: dict[str, Any] = {
        "task": task.name, "figures": {"loss": task.loss.name,
                                       "benchmark": task.benchmark.name},
        "reference_baseline": reference, "seed": config.seed, "agents": agents, "run": run,
        "wall_seconds": wall_seconds, "compute_seconds": db.compute_seconds(),
        "limits": state.stage_limits(db, config),
        "config": db.get_meta("config"),
        "config_changes": db.get_meta("config_changes") or [],
        "environments": db.get_meta("environments"),
        "islands": _islands(db, config),
        "migrations": [{"candidate": m["name"], "from": m["origin"], "to": m["island"],
                        "after_proposals": m["joined_at_round"]}
                       for m in db.migrations()],
    }  # fmt: skip
    if rows := _rows(db, task, workdir, "explore"):
        board["explore"] = {**_counts(rows), f"beats_{reference}": beating(rows, reference)}
    if seeds := state.seed_stages(db, "verify"):
        summariser = verification.Summariser(config.verify, reference)
        every = summariser.rows({s: _rows(db, task, workdir, s) for s in seeds})
        rows = [r for r in every if r["kind"] != "ablation"]
        board["verify"] = {
            **_counts(rows), "seeds": len(seeds),
            "confidence": config.verify.confidence,
            f"beats_{reference}": summariser.beating(rows),
            "ablations": _ablations(db, summariser, every),
        }  # fmt: skip
    board["rejected_proposals"] = db.rejection_count()
    board["llm"] = {"cost_usd": db.cost_usd(), "calls": db.call_totals()}
    if "llm" in {config.agents_of(i) for i in range(config.islands.count)}:
        arms = [e.name for e in config.llm.endpoints("researcher")]
        board["llm"]["bandit"] = bandit.board(arms, db.pulls(), config.llm.bandit)
    return board


def write(board: dict[str, Any], workdir: Path) -> None:
    """Replaces `leaderboard.json` atomically: a reader never sees half a file."""
    tmp = workdir / (LEADERBOARD + ".tmp")
    tmp.write_text(json.dumps(board, indent=2) + "\n")
    os.replace(tmp, workdir / LEADERBOARD)


def describe(config: EvolutionConfig, candidate: dict) -> str:
    if state.is_reference(config, candidate):
        return f"baseline {candidate['name']} (reference)"
    if candidate["kind"] == "baseline":
        return f"baseline {candidate['name']}"
    island = f", island {candidate['island']}" if config.islands.count > 1 else ""
    return f"{candidate['name']} (generation {candidate['generation']}{island})"


def stage_total(db: Database, config: EvolutionConfig, stage: str, done_rows: int,
                finished_proposing: bool) -> int | None:  # fmt: skip
    """Evaluations the stage will have run when it ends; None when only a wall or compute
    budget bounds exploration."""
    if stage == "verify" or finished_proposing:
        return done_rows
    if not config.budget.candidates:
        return None
    return db.count_candidates("baseline") + config.budget.candidates


def estimate_left(db: Database, config: EvolutionConfig, stage: str, total: int | None,
                  elapsed: float) -> str:  # fmt: skip
    """Time left in the stage (every seed of verification): the mean sandbox time of its
    finished evaluations, times what remains, over the workers (the remaining wall budget
    when that is the bound)."""
    finished = [r for s in state.seed_stages(db, stage) for r in db.evaluations(s)
                if r["status"] != "pending"]  # fmt: skip
    b = config.budget
    if total is None:
        if stage == "explore" and b.wall_seconds:
            return f"~{minutes(max(0.0, b.wall_seconds - elapsed))} left (wall budget)"
        return "time left unknown (compute budget)"
    if not finished:
        return "time left: estimating"
    mean = sum(r["compute_seconds"] or 0.0 for r in finished) / len(finished)
    left = mean * (total - len(finished)) / config.workers
    return f"~{minutes(left)} left in {stage}"


def progress(db: Database, config: EvolutionConfig, task: Task, stage: str, candidate_id: int,
             *, elapsed: float, finished_proposing: bool) -> str:  # fmt: skip
    """One line per finished evaluation: stage (counting every seed of verification),
    finished/total, the outcome, the best so far on that seed, failures, elapsed time and an
    estimate of the time left."""
    base, seed = split_stage(stage)
    r = next(x for x in state.records(db, stage) if x.id == candidate_id)
    every = [x for s in state.seed_stages(db, base) for x in state.records(db, s)]
    best = next(iter(state.ranked(db, stage)), None)
    failures = collections.Counter(x.failure_stage for x in every if x.status == "failed")
    if r.status == "evaluated":
        figures = f"{task.loss.short} {r.loss:.4f}, {task.benchmark.short} {r.benchmark:.3f}"
        outcome = (f"fitness {r.fitness:.3f} ({figures})" if r.fitness is not None else
                   f"evaluated ({figures}; scored when {config.reference_baseline} "
                   "finishes)")  # fmt: skip
    else:
        outcome = f"{r.status} at {r.failure_stage}: {last_line(r.failure_reason)}"
    done = sum(x.status != "pending" for x in every)
    total = stage_total(db, config, base, len(every), finished_proposing)
    leader = f"{best.name} {best.fitness:.3f}" if best else "none scored yet"
    failed = ", ".join(f"{n} at {k}" for k, n in failures.items()) or "0"
    on_seed = f" (seed {seed})" if base == "verify" else ""
    return (f"[{base} {done}/{total or '?'}] {describe(config, db.candidate(r.id))}{on_seed}: "
            f"{outcome} | best {leader} | failed {failed} | {minutes(elapsed)} elapsed, "
            f"{estimate_left(db, config, base, total, elapsed)}")  # fmt: skip


def heartbeat(stage: str, running: dict[str, float], elapsed: float, now: float) -> str:
    """`running`: name -> monotonic start time of each evaluation in flight."""
    busy = ", ".join(f"{name} {minutes(now - t)}" for name, t in running.items())
    return f"[{stage}] running: {busy} | {minutes(elapsed)} elapsed"


def summary(board: dict[str, Any]) -> str:
    """A finished run in a few lines: per stage, the counts and the top of the ranking."""
    ref = board["reference_baseline"]
    lines = []
    for stage in state.STAGES:
        if stage not in board:
            continue
        s = board[stage]
        lines.append(f"{stage}: {s['evaluated']} evaluated, {s['failed']} failed; "
                     f"beating {ref}: {s[f'beats_{ref}'] or 'none'}")  # fmt: skip
        for row in s["ranking"][:8]:
            fit = "-" if row["fitness"] is None else f"{row['fitness']:.3f}"
            lines.append(f"  {fit:>6}  {row['name']} ({row['kind']}, {row['status']})")
    return "\n".join(lines)
