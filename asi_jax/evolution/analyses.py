"""ASI-Arch's analyses of a run, as pure functions of its database: discoveries against
compute (the paper's linear-scaling claim, with a least-squares fit), the design components
and idea origins of the winners against all candidates, the lineage tree, and the arms of a
comparison with the random-search control (best fitness and verified wins against compute).

A winner is a candidate that beats the reference baseline by the leaderboard's rule (in
exploration its quantitative terms, loss and benchmark, sum above the reference's; in
verification the bootstrap interval of that gain over the seeds lies above zero), so these
analyses and the leaderboard's `beats_<reference>` list always agree. Nothing here writes.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from asi_jax.evolution import report, state, verification
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.db import Database

FREE_FORM = "free-form code (no design)"
NO_ORIGIN = "none recorded"


def _reference(db: Database) -> str | None:
    config = db.get_meta("config") or {}
    return config.get("reference_baseline")


def stage_rows(db: Database, stage: str) -> list[dict[str, Any]]:
    """The stage's evaluations (candidate columns, status, scores) with the leaderboard's
    `terms` (quantitative included) and when each finished, in candidate order."""
    finished = {r["candidate_id"]: r["finished_at"]
                for r in db.query("SELECT candidate_id, finished_at FROM evaluations "
                                  "WHERE stage = ?", stage)}  # fmt: skip
    # report._terms is the leaderboard's own reading of a score row; sharing it keeps one rule.
    return [{**r, "terms": report._terms(r), "finished_at": finished.get(r["id"])}
            for r in db.evaluations(stage)]  # fmt: skip


def winners(db: Database, stage: str = "explore") -> list[str]:
    """Names of the candidates beating the reference baseline in `stage`: in verification,
    those whose gain's bootstrap interval over the seeds lies above zero."""
    reference = _reference(db)
    if not reference:
        return []
    if stage != "verify":
        return report.beating(stage_rows(db, stage), reference)
    return _summariser(db, reference).beating(verification_rows(db))


def _summariser(db: Database, reference: str) -> verification.Summariser:
    verify = ((db.get_meta("config") or {}).get("verify")) or {}
    return verification.Summariser(from_config_dict({"verify": verify}).verify, reference)


def verification_rows(db: Database) -> list[dict[str, Any]]:
    """One row per verified candidate (ablation variants included): `stage_rows`' fields,
    the figures as means over the seeds, with intervals and gains (`verification`)."""
    reference = _reference(db)
    by_seed = {s: stage_rows(db, s) for s in state.seed_stages(db, "verify")}
    return _summariser(db, reference).rows(by_seed) if reference and by_seed else []


@dataclasses.dataclass(frozen=True)
class Fit:
    """y = intercept + slope * x by least squares, and the fraction of variance it explains."""

    slope: float
    intercept: float
    r2: float | None


def least_squares(xs: list[float], ys: list[float]) -> Fit | None:
    """None with fewer than two distinct x (no line is determined)."""
    n = len(xs)
    if n < 2 or len(set(xs)) < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    intercept = my - slope * mx
    syy = sum((y - my) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    return Fit(slope, intercept, None if syy == 0 else 1.0 - residual / syy)


@dataclasses.dataclass(frozen=True)
class Discoveries:
    """After each finished evaluation of the stage (baselines and failures spend compute
    too), in the order they finished: cumulative compute seconds and cumulative winners.
    `fit` is per compute-second; `per_hour` the slope in winners per compute-hour."""

    stage: str
    reference: str | None
    compute_seconds: list[float]
    count: list[int]
    names: list[str | None]  # the winner that finished at each point, else None
    fit: Fit | None

    @property
    def per_hour(self) -> float | None:
        return None if self.fit is None else self.fit.slope * 3600.0


def discoveries(db: Database, stage: str = "explore") -> Discoveries:
    """ASI-Arch's claim that discoveries grow linearly with compute, measured on this run."""
    rows = [r for r in stage_rows(db, stage) if r["status"] != "pending"]
    rows.sort(key=lambda r: (r["finished_at"] or 0.0, r["id"]))
    won = set(winners(db, stage))
    seconds, counts, names, total, found = [], [], [], 0.0, 0
    for r in rows:
        total += r["compute_seconds"] or 0.0
        hit = r["name"] in won
        found += hit
        seconds.append(total)
        counts.append(found)
        names.append(r["name"] if hit else None)
    fit = least_squares(seconds, [float(c) for c in counts])
    return Discoveries(stage, _reference(db), seconds, counts, names, fit)


def _candidates(db: Database, stage: str) -> list[dict[str, Any]]:
    """Proposed candidates (not baselines) with an evaluation in `stage`."""
    return [r for r in stage_rows(db, stage) if r["kind"] == "candidate"]


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def component_frequencies(db: Database, stage: str = "explore") -> dict[str, Any]:
    """How often each design component (`field=value` of candidates.design) appears among
    the winners and among all candidates of the stage; free-form code has no design and is
    counted apart. Rows are sorted by how much more common a component is in winners."""
    rows = _candidates(db, stage)
    won = set(winners(db, stage))
    designed = [r for r in rows if isinstance(r["design"], dict)]
    all_counts: collections.Counter[tuple[str, str]] = collections.Counter()
    win_counts: collections.Counter[tuple[str, str]] = collections.Counter()
    for r in designed:
        parts = {(str(k), str(v)) for k, v in r["design"].items()}
        all_counts.update(parts)
        if r["name"] in won:
            win_counts.update(parts)
    designed_winners = sum(r["name"] in won for r in designed)
    components = [{"component": k, "value": v, "winners": win_counts[(k, v)], "all": n,
                   "winner_share": _share(win_counts[(k, v)], designed_winners),
                   "all_share": _share(n, len(designed))}
                  for (k, v), n in all_counts.items()]  # fmt: skip
    components.sort(key=lambda c: (-(c["winner_share"] - c["all_share"]), c["component"],
                                   c["value"]))  # fmt: skip
    free = [r for r in rows if not isinstance(r["design"], dict)]
    return {"stage": stage, "candidates": len(designed), "winners": designed_winners,
            "components": components,
            "free_form": {"all": len(free),
                          "winners": sum(r["name"] in won for r in free)}}  # fmt: skip


def idea_origins(db: Database, stage: str = "explore") -> dict[str, Any]:
    """Where the ideas of the winners came from (cognition / analysis / original), against
    all candidates of the stage: each idea of candidates.idea_origins counts once; a
    candidate that recorded none counts once as `NO_ORIGIN`."""
    won = set(winners(db, stage))
    counts = {"winners": collections.Counter(), "all": collections.Counter()}
    for r in _candidates(db, stage):
        origins = [str(i.get("origin", "unknown")) for i in r["idea_origins"] or []]
        for origin in origins or [NO_ORIGIN]:
            counts["all"][origin] += 1
            if r["name"] in won:
                counts["winners"][origin] += 1
    totals = {k: sum(c.values()) for k, c in counts.items()}
    order = ["cognition", "analysis", "original"]
    names = order + sorted(set(counts["all"]) - set(order))
    return {"stage": stage, "totals": totals,
            "origins": [{"origin": o, "winners": counts["winners"][o], "all": counts["all"][o],
                         "winner_share": _share(counts["winners"][o], totals["winners"]),
                         "all_share": _share(counts["all"][o], totals["all"])}
                        for o in names]}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Node:
    id: int
    name: str
    kind: str
    generation: int
    island: int
    edit_mode: str | None
    parent_id: int | None
    second_parent_id: int | None  # a crossover's other parent
    winner: bool
    children: tuple[int, ...]


def lineage(db: Database, stage: str = "explore") -> dict[int, Node]:
    """Every candidate by id, with its parents, edit mode, children (by parent_id) and
    whether it beat the reference in `stage`. Roots are the nodes without a parent."""
    candidates = db.candidates()
    won = set(winners(db, stage))
    children: dict[int, list[int]] = collections.defaultdict(list)
    for c in candidates:
        if c["parent_id"] is not None:
            children[c["parent_id"]].append(c["id"])
    return {c["id"]: Node(c["id"], c["name"], c["kind"], c["generation"], c["island"],
                          c["edit_mode"], c["parent_id"], c["second_parent_id"],
                          c["name"] in won, tuple(children[c["id"]]))
            for c in candidates}  # fmt: skip


def roots(tree: dict[int, Node]) -> list[Node]:
    """Nodes whose parent is absent (baselines, seeds), in id order."""
    return [n for n in tree.values() if n.parent_id is None or n.parent_id not in tree]


# -- the control comparison -------------------------------------------------------------------


def verified_wins(db: Database) -> list[str]:
    """Names of the candidates that beat the reference baseline in verification (the
    interval of their gain over the seeds lies above zero): the one rule for a verified win,
    which every comparison of arms counts."""
    return winners(db, "verify")


@dataclasses.dataclass(frozen=True)
class Arm:
    """One arm of a comparison (a run, or one island of it): its proposed candidates and the
    baselines, which every arm runs (in one run they are shared). The curves hold a point
    after each of the arm's finished exploration evaluations (baselines and failures spend
    compute too), in the order they finished."""

    label: str
    compute_seconds: list[float]  # cumulative exploration compute
    proposed: list[int]  # the arm's candidates explored so far
    best: list[float | None]  # the best exploration fitness of those (None: none scored)
    wins: list[int]  # how many of those won in verification (`verified_wins`)
    verify_seconds: float  # the arm's compute in verification
    verified: list[str]  # its verified wins
    best_verified: float | None  # the best verification fitness of its candidates

    @property
    def candidates(self) -> int:
        return self.proposed[-1] if self.proposed else 0

    @property
    def total_seconds(self) -> float:
        return (self.compute_seconds[-1] if self.compute_seconds else 0.0) + self.verify_seconds

    @property
    def best_fitness(self) -> float | None:
        return self.best[-1] if self.best else None


def arm(db: Database, label: str, island: int | None = None) -> Arm:
    """The arm of the candidates proposed on `island` (None: the whole run), with the
    baselines."""

    def own(r: dict[str, Any]) -> bool:
        return r["kind"] == "baseline" or island is None or r["island"] == island

    rows = [r for r in stage_rows(db, "explore") if r["status"] != "pending" and own(r)]
    rows.sort(key=lambda r: (r["finished_at"] or 0.0, r["id"]))
    verify = [r for r in verification_rows(db) if own(r)]  # every seed, and ablations
    verified = [n for n in verified_wins(db) if n in {r["name"] for r in verify}]
    seconds, proposed, best, wins = [], [], [], []
    total, count, top, won = 0.0, 0, None, 0
    for r in rows:
        total += r["compute_seconds"] or 0.0
        if r["kind"] == "candidate":
            count += 1
            if r["fitness"] is not None:
                top = r["fitness"] if top is None else max(top, r["fitness"])
            won += r["name"] in verified
        seconds.append(total)
        proposed.append(count)
        best.append(top)
        wins.append(won)
    scored = [r["fitness"] for r in verify if r["kind"] == "candidate" and r["fitness"] is not None]
    return Arm(label, seconds, proposed, best, wins,
               sum(r["compute_seconds"] or 0.0 for r in verify if r["status"] != "pending"),
               verified, max(scored, default=None))  # fmt: skip


def island_arms(db: Database) -> list[Arm]:
    """One arm per island, when the run's islands have agents of different kinds with the
    random-search control among them (as `islands.agents='("offline", "random")'`); else
    none."""
    islands = (db.get_meta("config") or {}).get("islands") or {}
    kinds = list(islands.get("agents") or ())
    if "random" not in kinds or len(set(kinds)) < 2:
        return []
    return [arm(db, f"island {i} ({kind})", i) for i, kind in enumerate(kinds)]
