"""Replaying a recorded run: the same config, the recorded model replies, and training again;
the decisions must come out the same.

    report = replay_run("runs/recorded", "runs/replayed")

Every language-model request of a run is in its database (`calls`). The replay answers each
request of the new run with the recorded reply to the same request (no network, no key), so
the researcher, analyser and judge decide as they did; training is deterministic for a seed
on one machine, so scores match too. A request the recorded run never made, or a decision
that differs, is a divergence, reported with what differed. Runs with `workers` > 1 finish
evaluations in an order that depends on timing, which changes later prompts: replay those
with the same worker count and expect divergence where the order changed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from asi_jax.agents.replay import ReplayTransport
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import DATABASE, Controller
from asi_jax.evolution.db import Database


@dataclasses.dataclass(frozen=True)
class ReplayReport:
    decisions: dict[str, Any]  # the replayed run's (see `decisions`)
    differences: list[str]  # empty: the same decisions
    replies_served: int
    replies_unused: int  # recorded requests the replay never made


def decisions(db: Database) -> dict[str, Any]:
    """What a run decided: each candidate (name, parent, code, how it was proposed), each
    evaluation's outcome and fitness (per stage and verification seed), the rejections, the
    judgements, the promotions and the researcher's model per proposal (the bandit's pulls
    and rewards)."""
    names = {c["id"]: c["name"] for c in db.candidates()}
    out: dict[str, Any] = {
        "candidates": [(c["name"], c["kind"], names.get(c["parent_id"]), c["code_hash"],
                        c["edit_mode"], names.get(c["second_parent_id"]))
                       for c in db.candidates()],
        "rejections": [(r["name"], r["reason"]) for r in
                       db.query("SELECT name, reason FROM rejections ORDER BY id")],
        "judgements": [(names[r["candidate_id"]], r["judge"], r["score"]) for r in
                       db.query("SELECT * FROM judgements ORDER BY candidate_id")],
        "promoted": db.get_meta("verify_promoted"),
        "bandit": [(p["proposal"], p["arm"], names.get(p["candidate_id"]), p["outcome"],
                    None if p["reward"] is None else round(p["reward"], 9))
                   for p in db.pulls()],
    }  # fmt: skip
    query = "SELECT DISTINCT stage FROM evaluations ORDER BY stage"
    stages = [r["stage"] for r in db.query(query)]
    for stage in stages:  # explore, verify and each further verification seed
        out[stage] = [(r["name"], r["status"], r["failure_stage"],
                       None if r["fitness"] is None else round(r["fitness"], 9))
                      for r in db.evaluations(stage)]  # fmt: skip
    return out


def _differences(recorded: dict[str, Any], replayed: dict[str, Any]) -> list[str]:
    found = []
    for key, before in recorded.items():
        after = replayed.get(key)
        if before != after:
            found.append(f"{key}: recorded {before!r}, replayed {after!r}")
    return found


def replay_run(recorded_workdir: str | Path, workdir: str | Path,
               log: Callable[[str], None] = print) -> ReplayReport:  # fmt: skip
    """Reruns the run in `recorded_workdir` into the new `workdir` on its recorded replies."""
    path = Path(recorded_workdir) / DATABASE
    if not path.is_file():
        raise FileNotFoundError(f"{recorded_workdir} holds no recorded run ({DATABASE} missing)")
    if Path(workdir).resolve() == Path(recorded_workdir).resolve():
        raise ValueError("replay into a new workdir, not the recorded one")
    recorded = Database(path)
    try:
        stored = recorded.get_meta("config")
        if stored is None:
            raise ValueError(f"{recorded_workdir}'s database holds no config")
        config, calls, before = from_config_dict(stored), recorded.calls(), decisions(recorded)
    finally:
        recorded.close()
    transport = ReplayTransport(calls)
    with Controller(config, workdir, log=log, llm_transport=transport) as controller:
        controller.run()
        after = decisions(controller.db)
    return ReplayReport(after, _differences(before, after), transport.served, transport.unused())
