"""The optimizer task's offline agents: a grammar researcher, a statistics analyser and a
novelty judge. None is an AI; each says so in its name.

The researcher weighs every single-component change of the parent's design by (a) the
cognition entries retrieved for the parent's problem summary whose text names the option
(`KEYWORDS`), with their similarity, and (b) `context.component_effects`, the mean fitness
change of earlier children that switched to the option; it sometimes recombines the parent
with a reference instead, skips designs in `context.known_designs`, and says where each
idea came from. The analyser describes an evaluation in the cognition entries' vocabulary
(divergence, slow convergence, overfitting, memory), which is what the researcher
retrieves with. The judge scores novelty from the motivation's similarity and the design's
distance to the nearest earlier one.

The search, the judge's score and the analyser's parent and sibling comparisons are
`asi_jax.agents.grammar_search`'s; this module gives them the optimizer grammar
(`GRAMMAR`), its keywords, rationales and failure vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from asi_jax.agents.base import Analysis, Record
from asi_jax.agents.grammar_search import (
    Grammar,
    GrammarAnalyser,
    GrammarResearcher,
    SearchConfig,
    Wording,
    compare_with_parent,
    novelty_judgement,
    siblings_line,
)
from asi_jax.tasks.optimizer import grammar
from asi_jax.tasks.optimizer.grammar import BASELINE_DESIGNS, OPTIONS, canonical

# Words that, found in a cognition entry, support an option: every group must match.
KEYWORDS: dict[tuple[str, Any], tuple[tuple[str, ...], ...]] = {
    ("direction", "adam"): (
        ("m_hat / (sqrt(v_hat)", "squared gradients (the second moment)", "adam's scaling"),
    ),
    ("direction", "sgd"): (("sgd", "plain gradient descent", "heavy ball", "heavy-ball"),),
    ("direction", "factored"): (("factored", "row and column", "adafactor"),),
    ("direction", "sign"): (("sign of", "sign-based", "signsgd", "lion"),),
    ("direction", "orthogonal"): (("orthogonal", "newton-schulz", "muon"),),
    ("momentum", "ema"): (("momentum", "moving average of gradients", "first moment"),),
    ("momentum", "nesterov"): (("nesterov", "look-ahead", "lookahead"),),
    ("momentum", "none"): (("no momentum", "without momentum", "momentum-free"),),
    ("beta2", 0.95): (("beta2 0.95", "lower beta2", "smaller beta2", "shorter horizon"),),
    ("beta2", 0.99): (("beta2 0.99",),),
    ("beta2", 0.999): (("beta2 0.999", "longer horizon"),),
    ("bias_correction", True): (("bias correction", "bias-corrected"),),
    ("bias_correction", False): (("without bias correction", "no bias correction"),),
    ("clip", "rms"): (
        ("update clipping", "clip the update", "clipping the update", "rms of the update"),
    ),
    ("clip", "none"): (("no update clipping",),),
    ("weight_decay", 0.1): (("decoupled weight decay",),),
    ("weight_decay", 0.3): (("larger weight decay", "stronger weight decay"),),
    ("weight_decay", 0.01): (("small weight decay", "weaker weight decay"),),
    ("weight_decay", 0.0): (("no weight decay", "without weight decay"),),
    ("trust_ratio", True): (("trust ratio", "layer-wise", "layerwise"),),
    ("trust_ratio", False): (("no trust ratio",),),
    ("lr_scale", 0.3): (("smaller learning rate", "lower learning rate"),),
    ("lr_scale", 3.0): (("larger learning rate", "higher learning rate"),),
    ("lr_scale", 1.0): (("same learning rate", "learning rate of adamw"),),
}

RATIONALE: dict[tuple[str, Any], str] = {
    ("direction", "adam"): "per-coordinate scaling by the RMS of recent gradients evens out "
    "step sizes across parameters",
    ("direction", "sgd"): "the momentum itself is the step: no per-coordinate scaling, and "
    "no second-moment state",
    ("direction", "factored"): "a row x column estimate of the second moment scales like Adam "
    "with sublinear state",
    ("direction", "sign"): "the sign gives every coordinate the same step size, with one "
    "state tensor (Lion)",
    ("direction", "orthogonal"): "orthogonalised momentum for matrices equalises the step "
    "over all singular directions (Muon)",
    ("momentum", "ema"): "an EMA of gradients averages out minibatch noise",
    ("momentum", "nesterov"): "a Nesterov look-ahead uses the momentum's next value, "
    "reacting faster to a change of direction",
    ("momentum", "none"): "no first moment: less state, and no lag behind the gradient",
    ("beta2", 0.95): "a shorter second-moment horizon adapts faster and avoids stale, too "
    "small denominators after a spike",
    ("beta2", 0.99): "a middle second-moment horizon",
    ("beta2", 0.999): "a long second-moment horizon gives a smoother, less noisy scale",
    ("bias_correction", True): "bias-corrected EMAs are unbiased from the first step",
    ("bias_correction", False): "without bias correction the first steps are small, an "
    "implicit warmup",
    ("clip", "rms"): "clipping each tensor's update to RMS 1 bounds a step after a spike",
    ("clip", "none"): "no update clipping",
    ("weight_decay", 0.0): "no weight decay",
    ("weight_decay", 0.01): "light decoupled weight decay",
    ("weight_decay", 0.1): "decoupled weight decay 0.1 on matrices, AdamW's",
    ("weight_decay", 0.3): "strong decoupled weight decay, as sign updates want",
    ("trust_ratio", True): "a per-tensor trust ratio makes the step relative to the "
    "parameter's norm (LAMB)",
    ("trust_ratio", False): "no trust ratio",
    ("lr_scale", 1.0): "the schedule as given",
    ("lr_scale", 0.3): "a 0.3x learning rate, for updates of larger RMS",
    ("lr_scale", 3.0): "a 3x learning rate, for updates of smaller RMS",
}


def _name(design: dict[str, Any]) -> str:
    return f"{grammar.short_name(design)}-{grammar.key(design)[:6]}"


# The optimizer grammar for the grammar-generic agents; key = OptimizerTask.design_key.
GRAMMAR = Grammar(OPTIONS, canonical, key=lambda d: json.dumps(d, sort_keys=True), name=_name,
                  render=grammar.render)  # fmt: skip
WORDING = Wording(KEYWORDS, RATIONALE, benchmark="accuracy",
                  signature="offline optimizer grammar researcher")  # fmt: skip
CONFIG = SearchConfig(two_changes_probability=0.25, max_draws=60)


class OptimizerResearcher(GrammarResearcher):
    """The grammar researcher for optimizers (offline, no LLM); a parent without a design
    in the grammar is built on as AdamW."""

    name = "offline-optimizer-grammar-researcher"

    def __init__(self, config: SearchConfig = CONFIG):
        super().__init__(GRAMMAR, WORDING, config, fallback=dict(BASELINE_DESIGNS["adamw"]))

    def revise(self, source: str, error: str) -> str | None:
        """Repairs what the grammar can: a diverging or non-finite run gets update clipping,
        bias correction, no trust ratio and a smaller step; too much state, a factored
        second moment; no descent, a larger step. Else gives up (None)."""
        design = grammar.design_from_source(source)
        if design is None:
            return None
        text = error.lower()
        safer = dict(design)
        if any(w in text for w in ("finite", "nan", "inf", "diverg")):
            smaller = {3.0: 1.0, 1.0: 0.3}.get(design["lr_scale"], design["lr_scale"])
            safer.update(clip="rms", bias_correction=True, trust_ratio=False, lr_scale=smaller)
        elif "state" in text and design["direction"] == "adam":
            safer.update(direction="factored")
        elif "descent" in text or "zero" in text:
            larger = {0.3: 1.0, 1.0: 3.0}.get(design["lr_scale"], design["lr_scale"])
            safer.update(lr_scale=larger, clip="none")
        safer = canonical(safer)
        if safer == design:
            return None
        doc = source.split('"""')[1].split(grammar.DESIGN_TAG)[0].strip() if '"""' in source \
            else ""  # fmt: skip
        cause = error.strip().splitlines()[0][:200]
        return grammar.render(safer, docstring=f"{doc}\nRevised after: {cause}")


# ------------------------------------------------------------------------------------------
# The analyser.

# Failure stage -> the situation in the cognition entries' trigger vocabulary.
FAILURE_SUMMARIES = {
    "policy": "the code uses constructs the sandbox does not allow",
    "load": "the optimizer module does not build",
    "build": "make_optimizer does not return a gradient transformation",
    "init": "the optimizer state cannot be initialised for the parameters",
    "pure": "the update runs callbacks or has side effects",
    "state": "optimizer state memory is too large; the second moment costs as much as the "
    "parameters",
    "update": "the update raises an error on some parameter shapes or dtypes",
    "structure": "the update has the wrong shapes or dtypes",
    "finite": "NaN or inf updates; training diverges; the update is numerically unstable",
    "moves": "the updates are zero; the optimizer does not move the parameters",
    "deterministic": "the update depends on hidden Python state",
    "jit": "the jitted update differs from the eager one",
    "descent": "the update does not descend on a quadratic; steps too small or wrong sign",
    "train": "training diverges: loss spikes, NaN, unstable updates",
    "sandbox": "the run crashed or was too slow",
}


def _train_figures(record: Record) -> dict[str, float]:
    final = (record.metrics or {}).get("final_train") or {}
    return {k: float(v) for k, v in final.items() if isinstance(v, (int, float))}


class OptimizerAnalyser(GrammarAnalyser):
    """Statistics of an optimizer's run against its parent's and its siblings'."""

    name = "offline-optimizer-statistics-analyser"
    grammar = GRAMMAR
    failure_summaries = FAILURE_SUMMARIES
    failure_default = "the optimizer failed"

    def evaluated(self, record: Record, parent: Record | None, siblings: Sequence[Record],
                  described: str) -> Analysis:  # fmt: skip
        fitness = f", fitness {record.fitness:.3f}" if record.fitness is not None else ""
        lines = [f"{record.name}: held-out loss {record.loss:.4f}, accuracy "
                 f"{record.benchmark:.3f}{fitness}"]  # fmt: skip
        train = _train_figures(record)
        problems, lesson = [], None
        if "loss" in train:
            gap = record.loss - train["loss"]
            lines.append(f"final training loss {train['loss']:.4f} (held-out minus training "
                         f"{gap:+.4f})")  # fmt: skip
            if gap > 0.1 * max(abs(train["loss"]), 1e-6):
                problems.append("generalisation gap: held-out loss well above training "
                                "loss; overfitting, more weight decay may help")  # fmt: skip
        if train.get("grad_norm", 0.0) > 5.0:
            problems.append(f"large gradient norm at the end ({train['grad_norm']:.1f}): "
                            "unstable updates, loss spikes")  # fmt: skip
        if vs := compare_with_parent(record, parent, described, "accuracy"):
            lines.append(vs.line)
            lesson = vs.lesson
            if vs.d_loss > 0:
                problems.append(f"slow convergence: the loss falls more slowly than the "
                                f"parent's after {described}")  # fmt: skip
        if better := siblings_line(record, siblings):
            lines.append(better)
        if record.fitness is not None and record.fitness < 0.5 and not problems:
            problems.append("slow convergence: the loss falls more slowly than AdamW's; "
                            "a better-conditioned or larger step may help")  # fmt: skip
        if not problems:
            problems.append("converges well; to go further, better preconditioning, "
                            "momentum with look-ahead, or less optimizer state")  # fmt: skip
        return Analysis("\n".join(lines), "; ".join(problems), lesson)


# ------------------------------------------------------------------------------------------
# The judge.


class OptimizerJudge:
    """The offline novelty judge on the optimizer grammar (`novelty_judgement`). It cannot
    judge soundness; an LLM judge can."""

    name = "offline-optimizer-novelty-judge"

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record],
              baselines: Sequence[Record] = ()) -> tuple[float, str]:  # fmt: skip
        return novelty_judgement(GRAMMAR, record, nearest_similarity, population)
