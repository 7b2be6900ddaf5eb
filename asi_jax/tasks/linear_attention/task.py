"""The linear-attention task: candidates are token mixers (`class Mixer(nnx.Module)`).

A mixer is checked for causality, gradients, cost growth in T, parameters and memory
(`checker`), then trained as the token mixer of a small causal LM; the fitness reads the
held-out loss and the mean MQAR recall over the evaluated numbers of key-value pairs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flax import nnx

from asi_jax.agents.base import Record
from asi_jax.tasks import register
from asi_jax.tasks.base import Baseline, Figure, Figures, Task
from asi_jax.tasks.linear_attention import checker, grammar
from asi_jax.tasks.linear_attention.contract import ALLOWED_IMPORTS, MIXER

if TYPE_CHECKING:
    from asi_jax.agents.grammar_search import Grammar

CONTRACT = f"""The candidates are causal linear-attention token mixers for language models,
written as Flax NNX modules. A candidate is one Python file defining `class Mixer(nnx.Module)`:
    Mixer(d_model: int, num_heads: int, *, rngs: nnx.Rngs)   # keyword options need defaults
    mixer(x: [B, T, d_model]) -> [B, T, d_model]              # causal, sub-quadratic in T
Allowed imports: {", ".join(sorted(ALLOWED_IMPORTS))}. No file, network, process or
environment access, no exec/eval/getattr, no `while` loops, no dunder attributes, no private
(`_x`) attributes of modules. Modules are used only as `module.name`, never as values. Set
attributes only as `self.x = ...` inside `__init__` or `__call__`; classes derive from nnx
classes and define no dunder method but `__init__` and `__call__`; annotations are plain
types.
`pallas_kernels` provides chunked linear-attention ops (q, k: [B, T, H, K]; v: [B, T, H, V];
returns (o [B, T, H, V], final_state)): linear_attention(q, k, v), simple_gla(q, k, v, g)
with g [B, T, H] log decay, gla(q, k, v, gk) with gk [B, T, H, K], delta_rule(q, k, v, beta)
with beta [B, T, H], gated_delta_rule(q, k, v, g, beta). Use L2-normalised q and k with the
delta rules.
A mixer must be causal at every position, with gradients that match finite differences, a
cost that grows at most like T^1.5, and a parameter count within a budget relative to the
reference baseline at two widths. It then trains as a small LM; the fitness reads the
held-out loss and the mean recall on multi-query associative recall (MQAR)."""


BASELINE_TAG = "# baseline "  # the first line of a baseline's code


_STANDALONE_HEADER = """\"\"\"Baseline {name} as a candidate: asi_jax.models.mixers.{cls},
with the helpers it uses inlined.\"\"\"

import math

import jax
import jax.numpy as jnp
from flax import nnx
from jax import Array

import pallas_kernels as pk
"""


def _top_level_definitions(module) -> dict[str, str]:
    """name -> source of each top-level function, class and assignment of `module`."""
    source = inspect.getsource(module)
    out = {}
    for node in ast.parse(source).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            out[node.name] = ast.get_source_segment(source, node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    out[target.id] = ast.get_source_segment(source, node)
    return out


def standalone_source(name: str) -> str:
    """The baseline `name`'s registry class as one candidate file (what a model is shown of
    a baseline parent without a grammar design): its base classes, and every helper of
    asi_jax.models.layers and .mixers it reaches, inlined; the class renamed `Mixer`."""
    from asi_jax.models import layers, mixers

    cls = mixers.MIXERS[name]
    chain = [c for c in reversed(cls.__mro__) if c.__module__ == mixers.__name__]
    body = "\n\n\n".join(inspect.getsource(c) for c in chain)
    body = body.replace(f"class {cls.__name__}(", "class Mixer(", 1)
    classes = {c.__name__ for c in mixers.MIXERS.values()}
    pool = {n: text for module in (layers, mixers)
            for n, text in _top_level_definitions(module).items()
            if n not in classes and n not in ("MIXERS", "get_mixer", "resolve_mixer")}  # fmt: skip
    needed: set[str] = set()
    pending = [body]
    while pending:
        text = pending.pop()
        for helper, source in pool.items():
            if helper not in needed and re.search(rf"\b{re.escape(helper)}\b", text):
                needed.add(helper)
                pending.append(source)
    helpers = [source for helper, source in pool.items() if helper in needed]
    header = _STANDALONE_HEADER.format(name=name, cls=cls.__name__)
    return "\n\n\n".join([header.rstrip(), *helpers, body]) + "\n"


def _mqar_recalls(evals: Mapping[str, Any]) -> dict[str, float]:
    """{"<pairs>": accuracy} from the evaluation sets named mqar_kv<pairs>."""
    return {k[len("mqar_kv"):]: v["accuracy"] for k, v in evals.items()
            if k.startswith("mqar_kv")}  # fmt: skip


@register
class LinearAttentionTask(Task):
    name = "linear_attention"
    policy = MIXER
    loss = Figure("held-out loss", "loss", "loss")
    benchmark = Figure("mean MQAR recall (on text: mean downstream benchmark accuracy)",
                       "benchmark", "recall")  # fmt: skip
    check_config = checker.CheckConfig
    default_baselines = ("linear_attention", "deltanet", "gated_deltanet")
    default_reference = "deltanet"
    cognition_file = Path(__file__).with_name("cognition.jsonl")
    worker_modules = ("asi_jax.models.mixers", "asi_jax.train.config", "asi_jax.train.trainer",
                      "asi_jax.evals.checkpoint", "asi_jax.train.exported")  # fmt: skip

    @property
    def contract(self) -> str:
        return CONTRACT

    def baselines(self) -> dict[str, Baseline]:
        from asi_jax.models.mixers import MIXERS

        out = {}
        for name, cls in MIXERS.items():
            design = grammar.BASELINE_DESIGNS.get(name)
            out[name] = Baseline(
                name=name,
                source=f"{BASELINE_TAG}{name}: asi_jax.models.mixers.{cls.__name__}\n"
                + inspect.getsource(cls),
                description=inspect.getdoc(cls) or "",
                design=design.to_json() if design else None,
            )
        return out

    def candidate_source(self, record: Record) -> str:
        """A baseline as a valid candidate file: with a grammar design as the grammar renders
        it, else its registry class with the helpers it uses inlined; other code as it is."""
        if not record.code.startswith(BASELINE_TAG):
            return record.code
        if record.design:
            design = grammar.Design.from_json(dict(record.design))
            doc = f"Baseline {record.name} as a candidate: the grammar's equivalent of its class."
            return grammar.render(design, docstring=doc)
        return standalone_source(record.name)

    def check_request(self, check: checker.CheckConfig, train: Any, reference: str
                      ) -> dict[str, Any]:  # fmt: skip
        """The parameter budget is `param_budget_ratio` times the reference mixer's at the
        check's width and at twice it; causality is checked at the shapes the run trains and
        evaluates at too: its batches and the held-out sets' last, smaller one."""
        budget, budget_wide = parameter_budget(check, reference)
        shapes = None if train is None else train.data
        settings = dataclasses.replace(
            check, max_params=budget, max_params_wide=budget_wide,
            train_batch_sizes=() if shapes is None else (
                shapes.batch_size, shapes.eval_examples % shapes.batch_size),
            train_seq_len=0 if shapes is None else shapes.seq_len)  # fmt: skip
        return dataclasses.asdict(settings)

    def figures(self, result: Mapping[str, Any] | None) -> Figures:
        """Held-out loss, and mean MQAR recall over the evaluated numbers of key-value pairs;
        on text, the mean accuracy of the configured downstream benchmarks (`config.evals`),
        else held-out accuracy (which repeats the loss term)."""
        if not result or not result.get("eval"):
            return Figures(None, None)
        evals = result["eval"]
        recalls = _mqar_recalls(evals)
        downstream = (evals.get("downstream") or {}).get("benchmarks") or {}
        accuracies = {k: v["accuracy"] for k, v in downstream.items() if "accuracy" in v}
        if recalls:
            benchmark, details = sum(recalls.values()) / len(recalls), {"recall": recalls}
        elif accuracies:
            benchmark = sum(accuracies.values()) / len(accuracies)
            details = {"recall": {}, "downstream": accuracies}
        else:
            benchmark, details = evals["heldout"]["accuracy"], {"recall": {}}
        return Figures(evals["heldout"]["loss"], benchmark, details)

    def offline_agents(self):
        from asi_jax.tasks.linear_attention.analyser import OfflineAnalyser
        from asi_jax.tasks.linear_attention.judge import OfflineJudge
        from asi_jax.tasks.linear_attention.researcher import OfflineResearcher

        return OfflineResearcher(), OfflineAnalyser(), OfflineJudge()

    def grammar(self) -> Grammar:
        from asi_jax.tasks.linear_attention.researcher import GRAMMAR

        return GRAMMAR

    def design_of(self, source: str) -> dict[str, Any] | None:
        design = grammar.design_from_source(source)
        return design.to_json() if design else None

    def design_changes(self, parent: Mapping[str, Any], child: Mapping[str, Any]
                       ) -> dict[str, tuple[Any, Any]]:  # fmt: skip
        """Differences of the canonical designs: options a design does not use are not
        changes."""

        def design(d):
            return grammar.canonical(grammar.Design.from_json(dict(d)))

        return grammar.differences(design(parent), design(child))

    def design_key(self, design: Mapping[str, Any]) -> str:
        return grammar.canonical(grammar.Design.from_json(dict(design))).key()

    # -- worker side -------------------------------------------------------------------------
    def baseline_symbol(self, name: str) -> type[nnx.Module]:
        from asi_jax.models.mixers import get_mixer

        return get_mixer(name)

    def check(self, symbol: type, settings: Mapping[str, Any],
              describe: Callable[[BaseException], str]) -> dict[str, Any]:  # fmt: skip
        return checker.check_mixer(symbol, checker.CheckConfig(**settings), describe=describe)

    def evaluate(self, symbol: type, train: Mapping[str, Any], workdir: Path, *, label: str,
                 isolation: dict[str, Any],
                 log: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
        from asi_jax.train.config import from_config_dict
        from asi_jax.train.trainer import train as train_model

        config = from_config_dict({**train, "mixer": label})
        return train_model(config, workdir, mixer=symbol, isolation=isolation, log=log)

    def evaluate_checkpoint(self, symbol: type, workdir: Path, options: Mapping[str, Any]
                            ) -> dict[str, Any]:  # fmt: skip
        from asi_jax.evals.checkpoint import evaluate_run

        return evaluate_run(workdir, mixer=symbol, **options)

    def export_program(self, symbol: type, train: Mapping[str, Any], folder: Path,
                       options: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
        from asi_jax.train.config import from_config_dict
        from asi_jax.train.exported import export_program

        config = from_config_dict(train)
        return export_program(config, symbol, folder, platform=str(options["platform"]),
                              eval_rows=[int(r) for r in options["eval_rows"]])  # fmt: skip


def parameter_budget(check: checker.CheckConfig, reference: str) -> tuple[int, int]:
    """`param_budget_ratio` times the reference mixer's parameters at the check's width and
    at twice it (the same heads): a candidate must fit both, so its parameters cannot grow
    faster with the width than the reference's."""
    from asi_jax.models.lm import parameter_count
    from asi_jax.models.mixers import get_mixer

    def budget(d_model: int) -> int:
        mixer = nnx.eval_shape(lambda: get_mixer(reference)(d_model, check.num_heads,
                                                            rngs=nnx.Rngs(0)))  # fmt: skip
        return int(check.param_budget_ratio * parameter_count(mixer))

    return budget(check.d_model), budget(2 * check.d_model)
