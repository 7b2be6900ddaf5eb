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

The search logic (weighing, sampling, recombining, origins) is grammar-agnostic: it reads
the grammar only through `OPTIONS`, `canonical`, `differences` and `render`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from asi_jax.agents.base import Analysis, Proposal, Record, ResearchContext
from asi_jax.tasks.optimizer import grammar
from asi_jax.tasks.optimizer.grammar import BASELINE_DESIGNS, OPTIONS, canonical, differences

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


def supports(text: str, option: tuple[str, Any]) -> bool:
    """Whether an entry's `text` names `option` (every keyword group matches)."""
    text = text.lower()
    groups = KEYWORDS.get(option, ())
    return bool(groups) and all(any(word in text for word in group) for group in groups)


def _entry_text(retrieved) -> str:
    e = retrieved.entry
    return " ".join([e.title, e.design_insight, e.algorithmic_innovation,
                     e.implementation_guidance])  # fmt: skip


def _design_of(record: Record | None) -> dict[str, Any] | None:
    if record is None or not record.design:
        return None
    try:
        return canonical(record.design)
    except ValueError:  # a design outside the grammar (an LLM's)
        return None


def _key(design: Mapping[str, Any]) -> str:
    return json.dumps(canonical(design), sort_keys=True)  # = OptimizerTask.design_key


@dataclasses.dataclass(frozen=True)
class ResearcherConfig:
    recombine_probability: float = 0.25
    cognition_weight: float = 3.0  # log-odds per unit of retrieval similarity
    analysis_weight: float = 10.0  # log-odds per unit of mean fitness change
    two_changes_probability: float = 0.25
    max_draws: int = 60  # attempts at a design not proposed before


class OptimizerResearcher:
    """The grammar researcher for optimizers (offline, no LLM)."""

    name = "offline-optimizer-grammar-researcher"

    def __init__(self, config: ResearcherConfig = ResearcherConfig()):
        self.config = config

    def _weigh(self, parent: dict, context: ResearchContext) -> list:
        """Every single change of `parent` with its log-odds and the evidence for it."""
        changes = []
        for field, options in OPTIONS.items():
            for value in options:
                if field not in differences(parent, {**parent, field: value}):
                    continue  # no change, or one the canonical form undoes
                logit, evidence = 0.0, []
                for r in context.cognition:
                    if supports(_entry_text(r), (field, value)):
                        logit += self.config.cognition_weight * max(r.score, 0.0)
                        evidence.append(("cognition", f"'{r.entry.title}' (similarity "
                                                      f"{r.score:.2f})"))  # fmt: skip
                effect = context.component_effects.get((field, value))
                if effect is not None:
                    mean, count = effect
                    logit += self.config.analysis_weight * mean
                    evidence.append(("analysis", f"children that switched to {field}={value} "
                                                 f"changed fitness by {mean:+.3f} on average "
                                                 f"(n={count})"))  # fmt: skip
                changes.append(((field, value), logit, evidence))
        return changes

    def _mutate(self, parent: dict, context: ResearchContext, rng: np.random.Generator):
        changes = self._weigh(parent, context)
        logits = np.array([c[1] for c in changes])
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        count = 2 if rng.random() < self.config.two_changes_probability else 1
        picks = rng.choice(len(changes), size=min(count, len(changes)), replace=False, p=probs)
        child, origins = dict(parent), []
        for i in picks:
            (field, value), _, evidence = changes[int(i)]
            child = canonical({**child, field: value})
            origins.append(_origin(field, value, evidence))
        return child, origins

    def _recombine(self, parent: dict, other: dict, other_name: str,
                   rng: np.random.Generator):  # fmt: skip
        diff = list(differences(parent, other))
        if not diff:
            return None, []
        take = [f for f in diff if rng.random() < 0.5] or [diff[int(rng.integers(len(diff)))]]
        child = canonical({**parent, **{f: other[f] for f in take}})
        origins = [{"idea": f"{f}={other[f]}", "origin": "analysis",
                    "evidence": f"inherited from {other_name}, an evaluated design"}
                   for f in take if child[f] == other[f]]  # fmt: skip
        return child, origins

    def propose(self, context: ResearchContext) -> Proposal:
        rng = np.random.default_rng(context.seed)
        parent = _design_of(context.parent) or dict(BASELINE_DESIGNS["adamw"])
        references = [(r.name, d) for r in context.references if (d := _design_of(r))]
        child, origins = None, []
        for _ in range(self.config.max_draws):
            if references and rng.random() < self.config.recombine_probability:
                name, other = references[int(rng.integers(len(references)))]
                child, origins = self._recombine(parent, other, name, rng)
            else:
                child, origins = self._mutate(parent, context, rng)
            if child is not None and _key(child) not in context.known_designs:
                break
        if child is None:
            child, origins = self._mutate(parent, context, rng)
        motivation = self._motivation(child, parent, origins, context)
        name = f"{grammar.short_name(child)}-{grammar.key(child)[:6]}"
        return Proposal(name, motivation, grammar.render(child, docstring=motivation),
                        child, origins)  # fmt: skip

    @staticmethod
    def _motivation(child: dict, parent: dict, origins, context: ResearchContext) -> str:
        p = context.parent
        figures = (f"fitness {p.fitness:.3f}, loss {p.loss:.4f}, accuracy {p.benchmark:.3f}"
                   if p.fitness is not None and p.loss is not None and p.benchmark is not None
                   else "not yet scored")  # fmt: skip
        lines = [f"Builds on {p.name} ({figures})."]
        if context.problem_summary:
            lines.append(f"Its analysis: {context.problem_summary}")
        for field, (old, new) in differences(parent, child).items():
            lines.append(f"Change {field}: {old} -> {new}: {RATIONALE.get((field, new), '')}.")
        for o in origins:
            lines.append(f"Idea {o['idea']} from {o['origin']}: {o['evidence']}.")
        lines.append("(Proposed by the offline optimizer grammar researcher, not a language "
                     "model.)")  # fmt: skip
        return "\n".join(lines)

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


def _origin(field: str, value, evidence) -> dict[str, str]:
    idea = f"{field}={value}"
    if not evidence:
        return {"idea": idea, "origin": "original", "evidence": "exploratory draw"}
    origin = "cognition" if any(k == "cognition" for k, _ in evidence) else "analysis"
    return {"idea": idea, "origin": origin, "evidence": "; ".join(t for _, t in evidence)}


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


class OptimizerAnalyser:
    """Statistics of an optimizer's run against its parent's and its siblings'."""

    name = "offline-optimizer-statistics-analyser"

    def analyse(self, record: Record, parent: Record | None,
                siblings: Sequence[Record]) -> Analysis:  # fmt: skip
        own, base = _design_of(record), _design_of(parent)
        changes = differences(base, own) if own and base else {}
        described = ", ".join(f"{f} {a}->{b}" for f, (a, b) in changes.items()) or "no change"
        if record.status != "evaluated":
            stage = record.failure_stage or "sandbox"
            reason = (record.failure_reason or "").strip().splitlines()
            report = (f"{record.name} failed at stage '{stage}' after changes [{described}]: "
                      f"{reason[-1] if reason else 'no reason given'}")  # fmt: skip
            lesson = f"{described} on {parent.name}: failed at {stage}" if parent else None
            return Analysis(report, FAILURE_SUMMARIES.get(stage, "the optimizer failed"), lesson)

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
        if parent is not None and parent.status == "evaluated" and parent.loss is not None:
            d_loss = record.loss - parent.loss
            d_acc = record.benchmark - (parent.benchmark or 0.0)
            d_fit = (record.fitness - parent.fitness if record.fitness is not None
                     and parent.fitness is not None else None)  # fmt: skip
            lines.append(f"vs parent {parent.name} [{described}]: loss {d_loss:+.4f}, "
                         f"accuracy {d_acc:+.3f}"
                         + (f", fitness {d_fit:+.3f}" if d_fit is not None else ""))  # fmt: skip
            verdict = ("helped" if d_loss < 0 and d_acc >= 0 else "hurt" if d_loss > 0 and
                       d_acc <= 0 else "traded loss against accuracy")  # fmt: skip
            lesson = (f"{described} on {parent.name} {verdict}: loss {d_loss:+.4f}, accuracy "
                      f"{d_acc:+.3f}")  # fmt: skip
            if d_loss > 0:
                problems.append(f"slow convergence: the loss falls more slowly than the "
                                f"parent's after {described}")  # fmt: skip
        done = [s for s in siblings if s.status == "evaluated" and s.id != record.id]
        if done:
            better = sum(1 for s in done if s.fitness is not None and record.fitness is not None
                         and s.fitness > record.fitness)  # fmt: skip
            lines.append(f"{better} of {len(done)} evaluated siblings scored higher")
        if record.fitness is not None and record.fitness < 0.5 and not problems:
            problems.append("slow convergence: the loss falls more slowly than AdamW's; "
                            "a better-conditioned or larger step may help")  # fmt: skip
        if not problems:
            problems.append("converges well; to go further, better preconditioning, "
                            "momentum with look-ahead, or less optimizer state")  # fmt: skip
        return Analysis("\n".join(lines), "; ".join(problems), lesson)


def component_effects(records: Sequence[Record]) -> dict[tuple[str, Any], tuple[float, int]]:
    """(component, new option) -> (mean fitness change parent -> child, count), over children
    of scored parents; a failed child counts as -1."""
    by_id = {r.id: r for r in records}
    totals: dict[tuple[str, Any], list[float]] = defaultdict(list)
    for r in records:
        parent = by_id.get(r.parent_id) if r.parent_id is not None else None
        if parent is None or parent.fitness is None or r.status == "pending":
            continue
        own, base = _design_of(r), _design_of(parent)
        if own is None or base is None:
            continue
        delta = (r.fitness - parent.fitness) if r.fitness is not None else -1.0
        for field, (_, new) in differences(base, own).items():
            totals[(field, new)].append(delta)
    return {k: (sum(v) / len(v), len(v)) for k, v in totals.items()}


# ------------------------------------------------------------------------------------------
# The judge.


class OptimizerJudge:
    """score = 1 + 9 * (0.5 * (1 - s) + 0.5 * min(1, h / 3)): s the motivation's similarity
    to the nearest earlier one, h the components in which the design differs from the
    nearest earlier design. It cannot judge soundness; an LLM judge can."""

    name = "offline-optimizer-novelty-judge"

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record]) -> tuple[float, str]:  # fmt: skip
        own = _design_of(record)
        others = [d for r in population if r.id != record.id and (d := _design_of(r))]
        distance = min((len(differences(own, d)) for d in others), default=3) if own else 3
        similarity = nearest_similarity if math.isfinite(nearest_similarity) else 0.0
        text_novelty = 1.0 - max(0.0, min(1.0, similarity))
        score = 1.0 + 9.0 * (0.5 * text_novelty + 0.5 * min(1.0, distance / 3))
        return score, (f"offline novelty: motivation similarity {similarity:.2f} to the "
                       f"nearest earlier one, {distance} component(s) from the nearest "
                       "design")  # fmt: skip
