"""The offline analyser: statistics, not an AI.

For an evaluated (or failed) candidate it compares the figures with its parent's and its
siblings' (same parent, same stage): which components changed and how loss, recall per
number of key-value pairs and fitness moved. It writes a report, a one-line lesson, and a
problem summary in the vocabulary of the cognition entries' trigger patterns (recall that
drops with more pairs, divergence, leaks, slowness), which the researcher retrieves with.
`component_effects` turns all parent -> child pairs into the per-option statistics the
offline researcher weighs its choices with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asi_jax.agents.base import Analysis, Record
from asi_jax.tasks.linear_attention.grammar import Design, canonical, differences

# Failure stage -> how the situation reads in the cognition entries' terms.
_FAILURE_SUMMARIES = {
    "policy": "the code uses constructs the sandbox does not allow",
    "load": "the module does not build",
    "instantiate": "the module does not build",
    "shapes": "the output shape is wrong",
    "finite": "NaN or inf at initialisation; training diverges; numerically unstable state update",
    "causality": "information leak from future positions; causality failure",
    "cost": "super-linear FLOPs growth with sequence length; cost is not sub-quadratic",
    "memory": "memory grows too much with sequence length",
    "params": "exceeds the parameter budget; gate projections too large",
    "train": "training stopped: loss diverges, NaN, or abnormally low loss from a leak",
    "sandbox": "the run crashed or was too slow",
}


def _recalls(record: Record) -> dict[int, float]:
    """{number of key-value pairs: accuracy} from the evaluation sets named mqar_kv<N>."""
    evals = (record.metrics or {}).get("eval", {})
    return {int(k[len("mqar_kv"):]): v["accuracy"] for k, v in evals.items()
            if k.startswith("mqar_kv")}  # fmt: skip


def _design(record: Record | None) -> Design | None:
    return canonical(Design.from_json(record.design)) if record and record.design else None


def _changes(record: Record, parent: Record | None) -> dict[str, tuple[Any, Any]]:
    a, b = _design(parent), _design(record)
    return differences(a, b) if a and b else {}


def _describe(changes: dict) -> str:
    return ", ".join(f"{f} {old}->{new}" for f, (old, new) in changes.items()) or "no change"


class OfflineAnalyser:
    name = "offline-statistics-analyser"

    def analyse(self, record: Record, parent: Record | None,
                siblings: Sequence[Record]) -> Analysis:  # fmt: skip
        changes = _changes(record, parent)
        if record.status != "evaluated":
            stage = record.failure_stage or "sandbox"
            summary = _FAILURE_SUMMARIES.get(stage, "the candidate failed")
            reason = (record.failure_reason or "").strip().splitlines()
            report = (
                f"{record.name} failed at stage '{stage}' after changes "
                f"[{_describe(changes)}]: {reason[-1] if reason else 'no reason given'}"
            )
            lesson = f"{_describe(changes)} on {parent.name}: failed at {stage}" if parent else None
            return Analysis(report, summary, lesson)

        lines = [
            f"{record.name}: loss {record.loss:.4f}, recall {record.benchmark:.3f}"
            + (f", fitness {record.fitness:.3f}" if record.fitness is not None else "")
        ]
        recalls = _recalls(record)
        if recalls:
            lines.append(
                "recall by pairs: " + ", ".join(f"{k}: {v:.3f}" for k, v in sorted(recalls.items()))
            )
        problems, lesson = [], None
        if parent is not None and parent.status == "evaluated":
            d_loss = record.loss - parent.loss
            d_bench = record.benchmark - parent.benchmark
            d_fit = (
                record.fitness - parent.fitness
                if record.fitness is not None and parent.fitness is not None
                else None
            )
            lines.append(f"vs parent {parent.name} [{_describe(changes)}]: loss {d_loss:+.4f}, "
                         f"recall {d_bench:+.3f}"
                         + (f", fitness {d_fit:+.3f}" if d_fit is not None else ""))  # fmt: skip
            verdict = (
                "helped"
                if d_loss < 0 and d_bench >= 0
                else ("hurt" if d_loss > 0 and d_bench <= 0 else "traded loss against recall")
            )
            lesson = (f"{_describe(changes)} on {parent.name} {verdict}: loss {d_loss:+.4f}, "
                      f"recall {d_bench:+.3f}")  # fmt: skip
            if d_loss > 0:
                problems.append(f"loss got worse than the parent's after {_describe(changes)}")
            if d_bench < 0:
                problems.append(f"recall fell below the parent's after {_describe(changes)}")
        done = [s for s in siblings if s.status == "evaluated" and s.id != record.id]
        if done:
            better = sum(1 for s in done if s.fitness is not None and record.fitness is not None
                         and s.fitness > record.fitness)  # fmt: skip
            lines.append(f"{better} of {len(done)} evaluated siblings scored higher")
            failed = [s.name for s in siblings if s.status == "failed"]
            if failed:
                lines.append(f"failed siblings: {', '.join(failed)}")
        if len(recalls) >= 2:
            few, many = min(recalls), max(recalls)
            if recalls[many] < 0.7 * recalls[few]:
                problems.append(
                    f"recall drops as the number of key-value pairs grows ({recalls[few]:.2f} "
                    f"at {few}, {recalls[many]:.2f} at {many}): the memory saturates and old "
                    "associations interfere with new ones"
                )
        if record.benchmark < 0.5:
            problems.append("associative recall is weak; retrieval returns blended values")
        if not problems:
            problems.append("improves on its parent; to go further, forget old associations "
                            "selectively and raise memory capacity")  # fmt: skip
        return Analysis("\n".join(lines), "; ".join(problems), lesson)
