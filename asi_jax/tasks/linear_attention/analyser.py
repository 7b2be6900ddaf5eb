"""The offline analyser: statistics, not an AI.

For an evaluated (or failed) candidate it compares the figures with its parent's and its
siblings' (same parent, same stage): which components changed and how loss, recall per
number of key-value pairs and fitness moved. It writes a report, a one-line lesson, and a
problem summary in the vocabulary of the cognition entries' trigger patterns (recall that
drops with more pairs, divergence, leaks, slowness), which the researcher retrieves with.
The parts that do not depend on the task's figures are `asi_jax.agents.grammar_search`'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from asi_jax.agents.base import Analysis, Record
from asi_jax.agents.grammar_search import GrammarAnalyser, compare_with_parent, siblings_line
from asi_jax.tasks.linear_attention.researcher import GRAMMAR

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


class OfflineAnalyser(GrammarAnalyser):
    name = "offline-statistics-analyser"
    grammar = GRAMMAR
    failure_summaries = _FAILURE_SUMMARIES
    failure_default = "the candidate failed"

    def evaluated(self, record: Record, parent: Record | None, siblings: Sequence[Record],
                  described: str) -> Analysis:  # fmt: skip
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
        if vs := compare_with_parent(record, parent, described, "recall"):
            lines.append(vs.line)
            lesson = vs.lesson
            if vs.d_loss > 0:
                problems.append(f"loss got worse than the parent's after {described}")
            if vs.d_benchmark < 0:
                problems.append(f"recall fell below the parent's after {described}")
        if better := siblings_line(record, siblings):
            lines.append(better)
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
