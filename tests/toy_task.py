"""A toy task, defined outside asi_jax as a user's would be: candidates are functions
`guess(x: float) -> float` that should square x. It proves the task boundary: the
controller, engineer, policy, sandbox and reports run it knowing nothing of it.

Evaluation needs no training, so a whole evolution takes seconds per candidate (the
sandbox's start-up)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from asi_jax.agents.base import Analysis, Proposal, Record, ResearchContext
from asi_jax.candidates.policy import Contract
from asi_jax.tasks import Baseline, Figure, Figures, Task, register

POINTS = (0.5, 1.0, 2.0, 3.0)


def source(power: float, scale: float) -> str:
    return (f'"""Design: {{"power": {power}, "scale": {scale}}}"""\n\n\n'
            f"def guess(x):\n    return {scale} * x ** {power}\n")  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ToyCheck:
    probe: float = 1.5  # the output at this input must be finite


class ToyResearcher:
    name = "toy-researcher"
    needs_design = True

    def propose(self, context: ResearchContext) -> Proposal:
        design = dict(context.parent.design)
        step = 0.25 * (1 + context.seed % 3)
        for key, delta in (("power", step), ("scale", step), ("power", -step)):
            child = {**design, key: round(design[key] + delta, 4)}
            if str(sorted(child.items())) not in {str(k) for k in context.known_designs}:
                break
        return Proposal(f"toy-p{child['power']}-s{child['scale']}",
                        f"Moves {design} to {child} (seed {context.seed})",
                        source(child["power"], child["scale"]), child,
                        [{"idea": "step", "origin": "original", "evidence": "toy"}])  # fmt: skip

    def revise(self, source: str, error: str) -> str | None:
        return None


class ToyAnalyser:
    name = "toy-analyser"

    def analyse(self, record: Record, parent: Record | None,
                siblings: Sequence[Record]) -> Analysis:  # fmt: skip
        return Analysis(f"{record.name}: {record.status}", "the guess is off", None)


class ToyJudge:
    name = "toy-judge"
    seen: ClassVar[list[tuple[str, float | None, tuple[str, ...]]]] = []  # name, loss, baselines

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record],
              baselines: Sequence[Record] = ()) -> tuple[float, str]:  # fmt: skip
        ToyJudge.seen.append((record.name, record.loss, tuple(b.name for b in baselines)))
        return 5.0, "toy"


@register
class ToyTask(Task):
    name = "toy"
    policy = Contract(imports=frozenset({"math"}), modules=frozenset({"math"}),
                      symbol="guess", symbol_kind="function",
                      described="`def guess(x)`")  # fmt: skip
    loss = Figure("squared error", "loss", "error")
    benchmark = Figure("closeness", "benchmark", "closeness")
    check_config = ToyCheck
    default_baselines = ("linear", "cube")
    default_reference = "linear"
    cognition_file = Path(__file__).resolve().parents[1] / (
        "asi_jax/tasks/linear_attention/cognition.jsonl"
    )  # any entries will do

    @property
    def contract(self) -> str:
        return "A candidate defines `def guess(x)`, which should return x squared."

    def baselines(self) -> dict[str, Baseline]:
        designs = {"linear": {"power": 1.0, "scale": 1.0}, "cube": {"power": 3.0, "scale": 0.5}}
        return {n: Baseline(n, source(**d), f"x to the {d['power']}", d)
                for n, d in designs.items()}  # fmt: skip

    def check_request(self, check: ToyCheck, train: Any, reference: str) -> dict[str, Any]:
        return dataclasses.asdict(check)

    def figures(self, result: Mapping[str, Any] | None) -> Figures:
        if not result or "error" not in result:
            return Figures(None, None)
        return Figures(result["error"], 1.0 / (1.0 + result["error"]), {"points": len(POINTS)})

    def offline_agents(self):
        return ToyResearcher(), ToyAnalyser(), ToyJudge()

    def design_key(self, design: Mapping[str, Any]) -> str:
        return str(sorted(design.items()))

    def baseline_symbol(self, name: str) -> Callable[[float], float]:
        namespace: dict = {}
        exec(self.baselines()[name].source, namespace)  # our own code
        return namespace["guess"]

    def check(self, symbol, settings, describe) -> dict[str, Any]:
        try:
            ok = math.isfinite(symbol(settings["probe"]))
        except Exception as e:
            return {"ok": False, "stage": "probe", "reason": describe(e)}
        return {"ok": ok, "stage": None if ok else "probe",
                "reason": None if ok else "not finite"}  # fmt: skip

    def evaluate(self, symbol, train, workdir: Path, *, label: str, isolation, log):
        error = sum((symbol(x) - x * x) ** 2 for x in POINTS) / len(POINTS)
        return {"status": "completed", "stop_reason": None, "error": error,
                "eval": {"points": list(POINTS)}, "params": {"total": 0}}  # fmt: skip
