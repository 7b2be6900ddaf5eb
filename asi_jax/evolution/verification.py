"""Verification across seeds: bootstrap intervals of every figure, gains over the reference
paired by seed, the rule that decides "beats the reference", and the ablation table.

Each verification seed is a stage of its own ("verify", "verify-2", ...), scored against the
reference's run of the same seed, so a gain is a paired difference: seed k's candidate minus
seed k's reference. A candidate beats the reference only when the percentile-bootstrap
interval of its mean quantitative gain (the loss and benchmark terms of the fitness; the
judge's term is the same on every seed and counts for nothing here) lies above zero. With
three seeds the 95% interval's lower end is the worst seed's gain, so every seed must gain.
One seed gives no interval, and so no verified win.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from asi_jax.evolution.config import VerifyConfig, split_stage

# A row's fields that are not figures of the run (everything else numeric is aggregated).
_NOT_FIGURES = frozenset((
    "name", "kind", "generation", "island", "parent", "stage", "status", "terms", "params",
    "compute_seconds", "judge", "failure_stage", "failure_reason", "researcher",
    "idea_origins", "folder",
))  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Interval:
    """The mean of `n` values and its bootstrap interval (None below two values)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    def above_zero(self) -> bool:
        return self.low is not None and self.low > 0.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def bootstrap(values: Sequence[float], *, confidence: float = 0.95, resamples: int = 10_000,
              seed: int = 0) -> Interval:  # fmt: skip
    """The percentile-bootstrap interval of the mean of `values` (deterministic: `seed`)."""
    x = np.asarray([v for v in values], dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"bootstrap needs finite values, got {list(values)}")
    mean = float(x.mean())
    if x.size == 1:
        return Interval(mean, None, None, 1)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return Interval(mean, float(low), float(high), int(x.size))


def _above_zero(interval: Mapping[str, Any] | None) -> bool:
    return interval is not None and Interval(**interval).above_zero()


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _figures(row: Mapping[str, Any]) -> dict[str, float]:
    """A row's figures by name, a task's nested ones flattened ("recall 4" of recall {"4":
    ...})."""
    out = {}
    for k, v in row.items():
        if k in _NOT_FIGURES:
            continue
        if isinstance(v, Mapping):
            out.update({f"{k} {j}": x for j, x in v.items() if _number(x)})
        elif _number(v):
            out[k] = v
    return out


def _quantitative(row: Mapping[str, Any]) -> float | None:
    return row["terms"]["quantitative"] if row.get("terms") else None


def _gains(own: Sequence[Mapping], reference: Sequence[Mapping]) -> dict[str, list[float]]:
    """Per seed where both were scored: the quantitative gain, the relative loss gain
    (positive: lower loss) and the benchmark difference."""
    gains: dict[str, list[float]] = {"quantitative": [], "loss_relative": [], "benchmark": []}
    for a, ref in zip(own, reference, strict=True):
        if a is None or ref is None or a["status"] != "evaluated" or ref["status"] != "evaluated":
            continue
        if (qa := _quantitative(a)) is not None and (qr := _quantitative(ref)) is not None:
            gains["quantitative"].append(qa - qr)
        if _number(a["loss"]) and _number(ref["loss"]) and ref["loss"] != 0:
            gains["loss_relative"].append((ref["loss"] - a["loss"]) / abs(ref["loss"]))
        if _number(a["benchmark"]) and _number(ref["benchmark"]):
            gains["benchmark"].append(a["benchmark"] - ref["benchmark"])
    return gains


def _status(replicates: Sequence[Mapping | None]) -> tuple[str, str | None, str | None]:
    if any(r is None or r["status"] == "pending" for r in replicates):
        return "pending", None, None
    for k, r in enumerate(replicates, start=1):
        if r["status"] == "failed":
            return "failed", r["failure_stage"], f"seed {k}: {r['failure_reason']}"
    return "evaluated", None, None


class Summariser:
    """Aggregates the per-seed leaderboard rows of verification."""

    def __init__(self, verify: VerifyConfig, reference: str):
        self.verify, self.reference = verify, reference

    def interval(self, values: Sequence[float]) -> dict[str, Any] | None:
        if not values:
            return None
        return bootstrap(values, confidence=self.verify.confidence,
                         resamples=self.verify.bootstrap_resamples).to_json()  # fmt: skip

    def rows(self, by_stage: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
        """One row per candidate: its first seed's row, the figures replaced by their means
        over the evaluated seeds, with `intervals` (every figure), `gain` (paired with the
        reference's seeds) and `replicates` (each seed's own figures and folder)."""
        stages = sorted(by_stage, key=lambda s: split_stage(s)[1])
        tables = [{r["name"]: r for r in by_stage[s]} for s in stages]
        references = [t.get(self.reference) for t in tables]
        out = []
        for name, first in tables[0].items():
            replicates = [t.get(name) for t in tables]
            done = [r for r in replicates if r is not None and r["status"] == "evaluated"]
            per_seed = [_figures(r) for r in done]
            figures = sorted({k for f in per_seed for k in f})
            intervals = {k: self.interval([f[k] for f in per_seed if k in f]) for k in figures}
            quantitative = [q for r in done if (q := _quantitative(r)) is not None]
            intervals["quantitative"] = self.interval(quantitative)
            status, failure_stage, failure_reason = _status(replicates)
            gain = {k: self.interval(v) for k, v in _gains(replicates, references).items()}
            means: dict[str, Any] = {}
            for k, v in intervals.items():  # nested figures back in their own dicts
                if v and k != "quantitative":
                    outer, _, inner = k.partition(" ") if k not in first else (k, "", "")
                    if inner:
                        means.setdefault(outer, {})[inner] = v["mean"]
                    else:
                        means[k] = v["mean"]
            out.append({
                **first, **means, "stage": "verify", "status": status,
                "failure_stage": failure_stage or first["failure_stage"],
                "failure_reason": failure_reason or first["failure_reason"],
                "seeds": len(done), "intervals": intervals, "gain": gain,
                "compute_seconds": sum(r["compute_seconds"] or 0.0 for r in replicates if r),
                "replicates": [None if r is None else {
                    "stage": stage, "status": r["status"], "fitness": r["fitness"],
                    "loss": r["loss"], "benchmark": r["benchmark"],
                    "quantitative": _quantitative(r), "failure_stage": r["failure_stage"],
                    "failure_reason": r["failure_reason"], "folder": r.get("folder"),
                } for stage, r in zip(stages, replicates, strict=True)],
            })  # fmt: skip
        order = {"evaluated": 0, "failed": 1, "pending": 2}
        return sorted(out, key=lambda x: (order[x["status"]], -(x["fitness"] or 0.0)))

    def beating(self, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Candidates whose quantitative gain's interval lies above zero."""
        return [r["name"] for r in rows if r["kind"] == "candidate" and r["status"] == "evaluated"
                and _above_zero(r["gain"].get("quantitative"))]  # fmt: skip

    def ablations(self, rows: Sequence[Mapping[str, Any]], winner: Mapping[str, Any],
                  labels: Mapping[str, str]) -> dict[str, Any]:  # fmt: skip
        """The winner's ablation table: per variant (`labels`: what it changed -> its name), its
        gain over the reference and its drop from the winner's gain, paired by seed; the
        component that carries the gain is the variant with the largest mean drop."""
        own = {r["name"]: r for r in rows}
        table = []
        for label, name in labels.items():
            variant = own.get(name)
            if variant is None:
                continue
            pairs = zip(winner["replicates"], variant["replicates"], strict=True)
            drops = [w["quantitative"] - v["quantitative"] for w, v in pairs
                     if w and v and w["quantitative"] is not None
                     and v["quantitative"] is not None]  # fmt: skip
            drop = self.interval(drops)
            table.append({"variant": name, "change": label, "status": variant["status"],
                          "gain": variant["gain"].get("quantitative"), "drop": drop,
                          "significant": _above_zero(drop)})  # fmt: skip
        scored = [t for t in table if t["drop"]]
        carrier = max(scored, key=lambda t: t["drop"]["mean"]) if scored else None
        return {"winner": winner["name"], "gain": winner["gain"].get("quantitative"),
                "variants": table, "carried_by": carrier and carrier["change"]}  # fmt: skip
