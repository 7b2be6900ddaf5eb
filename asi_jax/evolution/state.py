"""Read-only views of a run's state: records, rankings, budgets. Pure functions of the
database and the config (no writes), shared by the controller and the reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection

from asi_jax.agents.base import Record
from asi_jax.evolution.config import EvolutionConfig, split_stage
from asi_jax.evolution.db import Database

STAGES = ("explore", "verify")


def seed_stages(db: Database, stage: str) -> list[str]:
    """The evaluation stages of `stage` in the database, first seed first ("verify",
    "verify-2", ...): what was queued, whatever the config now says."""
    rows = db.query("SELECT DISTINCT stage FROM evaluations WHERE stage = ? OR stage LIKE ?",
                    stage, f"{stage}-%")  # fmt: skip
    return sorted((r["stage"] for r in rows), key=lambda s: split_stage(s)[1])


def records(db: Database, stage: str, status: str | None = None) -> list[Record]:
    return [Record.from_row(r) for r in db.evaluations(stage, status)]


def ranked(db: Database, stage: str, members: Collection[int] | None = None) -> list[Record]:
    """Scored evaluations of `stage` (of `members` only, when given), fittest first (ties:
    earlier first)."""
    scored = [r for r in records(db, stage, "evaluated") if r.fitness is not None
              and (members is None or r.id in members)]  # fmt: skip
    return sorted(scored, key=lambda r: (-r.fitness, r.id))


def reference_usage(db: Database, stage: str) -> dict[str, float] | None:
    """The wall and CPU seconds the reference baseline took in `stage`, once measured."""
    return (db.get_meta("reference_usage") or {}).get(stage)


def stage_limits(db: Database, config: EvolutionConfig) -> dict[str, dict]:
    """Per stage with a measured reference: its usage and the limits that follow from it."""
    return {stage: {"reference": usage, **dataclasses.asdict(
                config.limits_of(stage).for_stage(usage, config.workers))}
            for stage in STAGES if (usage := reference_usage(db, stage)) is not None}  # fmt: skip


def is_reference(config: EvolutionConfig, candidate: dict) -> bool:
    return candidate["kind"] == "baseline" and candidate["name"] == config.reference_baseline


def budget_used(db: Database, config: EvolutionConfig, elapsed: float) -> str | None:
    """Which budget ran out, or None while exploration may continue."""
    b = config.budget
    if b.candidates and db.count_candidates("candidate") >= b.candidates:
        return f"{b.candidates} candidates proposed"
    if b.wall_seconds and elapsed >= b.wall_seconds:
        return f"wall time {b.wall_seconds:g} s used"
    if b.compute_seconds and db.compute_seconds() >= b.compute_seconds:
        return f"compute {b.compute_seconds:g} s used"
    if b.usd and db.cost_usd() >= b.usd:
        return f"${b.usd:g} of language-model calls spent"
    return None
