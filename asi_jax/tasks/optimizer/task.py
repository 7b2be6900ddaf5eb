"""The optimizer-discovery task: candidates are `make_optimizer(learning_rate)` factories.

Each candidate trains the same small language model (the stage's config names the mixer,
the data, the steps and the warmup-cosine schedule); fitness compares its held-out loss and
next-token accuracy with AdamW's, trained in the same run, config and seed (the reference
baseline). The trainer keeps its global-norm gradient clipping for every optimizer.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asi_jax.agents.base import Analyser, Judge, Researcher
from asi_jax.tasks.base import Baseline, Figure, Figures, Task
from asi_jax.tasks.optimizer import baselines as _baselines
from asi_jax.tasks.optimizer import grammar
from asi_jax.tasks.optimizer.checker import CheckConfig
from asi_jax.tasks.optimizer.contract import CONTRACT_TEXT, OPTIMIZER

if TYPE_CHECKING:
    from asi_jax.agents.grammar_search import Grammar

COGNITION_FILE = Path(__file__).with_name("cognition.jsonl")


class OptimizerTask(Task):
    """See the module docstring; `contract` says what a candidate is, for prompts."""

    name = "optimizer"
    policy = OPTIMIZER
    loss = Figure(name="held-out loss", kind="loss", short="loss")
    benchmark = Figure(name="held-out next-token accuracy", kind="benchmark", short="acc")
    check_config = CheckConfig
    default_baselines = ("adamw", "lion", "adafactor")
    default_reference = "adamw"
    cognition_file = COGNITION_FILE
    worker_modules = ("asi_jax.models.mixers", "asi_jax.train.config", "asi_jax.train.trainer",
                      "asi_jax.tasks.optimizer.checker")  # fmt: skip

    # -- controller side -------------------------------------------------------------------
    @property
    def contract(self) -> str:
        return CONTRACT_TEXT

    def baselines(self) -> Mapping[str, Baseline]:
        return {
            name: Baseline(
                name=name,
                source=_baselines.source_of(name),
                description=_baselines.description_of(name),
                design=dict(grammar.BASELINE_DESIGNS[name]),
            )
            for name in _baselines.FACTORIES
        }

    def check_request(self, check: Any, train: Any, reference: str) -> dict[str, Any]:
        """The check's settings as JSON; they depend on neither the stage nor the reference
        (the state budget is absolute: AdamW's is 2)."""
        if isinstance(check, Mapping):
            check = CheckConfig(**check)
        values = dataclasses.asdict(check)
        values["shapes"] = [list(s) for s in values["shapes"]]
        values["dtypes"] = list(values["dtypes"])
        return values

    def figures(self, result: Mapping[str, Any] | None) -> Figures:
        heldout = ((result or {}).get("eval") or {}).get("heldout") or {}
        loss, accuracy = heldout.get("loss"), heldout.get("accuracy")
        final = (result or {}).get("final_train") or {}
        details = {k: final[k] for k in ("loss", "grad_norm") if k in final}
        details = {f"train_{k}": v for k, v in details.items()}
        if "bits_per_byte" in heldout:
            details["bits_per_byte"] = heldout["bits_per_byte"]
        if loss is None or accuracy is None:
            return Figures(None, None, details)
        return Figures(float(loss), float(accuracy), details)

    def offline_agents(self) -> tuple[Researcher, Analyser, Judge]:
        from asi_jax.tasks.optimizer.agents import (
            OptimizerAnalyser,
            OptimizerJudge,
            OptimizerResearcher,
        )

        return OptimizerResearcher(), OptimizerAnalyser(), OptimizerJudge()

    def grammar(self) -> Grammar:
        from asi_jax.tasks.optimizer.agents import GRAMMAR

        return GRAMMAR

    def design_of(self, source: str) -> dict[str, Any] | None:
        return grammar.design_from_source(source)

    def design_changes(
        self, parent: Mapping[str, Any], child: Mapping[str, Any]
    ) -> dict[str, tuple[Any, Any]]:
        """Differences of the canonical designs (options a design does not use are equal)."""
        try:
            return grammar.differences(parent, child)
        except ValueError:  # not a grammar design (an LLM's free-form one)
            return super().design_changes(parent, child)

    def design_key(self, design: Mapping[str, Any]) -> str:
        """The canonical design's JSON: equal for designs that behave the same."""
        import json

        try:
            return json.dumps(grammar.canonical(design), sort_keys=True)
        except ValueError:  # not a grammar design (an LLM's free-form one): as given
            return json.dumps(dict(design), sort_keys=True)

    # -- worker side -----------------------------------------------------------------------
    def baseline_symbol(self, name: str) -> Callable:
        if name not in _baselines.FACTORIES:
            raise ValueError(f"unknown optimizer baseline {name!r}; known: "
                             f"{sorted(_baselines.FACTORIES)}")  # fmt: skip
        return _baselines.FACTORIES[name]

    def check(self, symbol: Any, settings: Mapping[str, Any],
              describe: Callable[[BaseException], str]) -> dict[str, Any]:  # fmt: skip
        from asi_jax.tasks.optimizer.checker import check_optimizer

        return check_optimizer(symbol, CheckConfig(**settings), describe)

    def evaluate(
        self,
        symbol: Any,
        train: Mapping[str, Any],
        workdir: Path,
        *,
        label: str,
        isolation: dict[str, Any],
        log: Callable[[str], None],
    ) -> dict[str, Any]:
        """Trains the stage's fixed model with the candidate optimizer. A run whose held-out
        loss is not finite diverged: it is "stopped", with that reason, not scored."""
        from asi_jax.train.config import from_config_dict
        from asi_jax.train.trainer import train as run

        config = from_config_dict(dict(train))
        result = run(config, workdir, optimizer=symbol, optimizer_label=label,
                     isolation=isolation, log=log)  # fmt: skip
        loss = ((result.get("eval") or {}).get("heldout") or {}).get("loss")
        if result["status"] == "completed" and not (loss is not None and math.isfinite(loss)):
            result = {**result, "status": "stopped",
                      "stop_reason": f"training diverged: the held-out loss is {loss}"}  # fmt: skip
        return result
