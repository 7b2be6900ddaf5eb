"""The offline researcher: mutates and recombines designs in the mixer grammar.

Not an AI. It chooses a change to the parent by weighing every admissible single-component
change with (a) the cognition entries retrieved for the parent's problem summary (an entry
whose text names the option, e.g. "output gate" or "negative eigenvalues", votes for it with
its similarity score), and (b) the analyser's statistics of what such changes did before
(mean fitness change of children that switched to the option). With some probability it
recombines the parent with a reference instead. Its motivation says which of the three
origins each idea had: cognition (with the entry), analysis (with the figure), or original
(an exploratory draw with no support).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from asi_jax.agents.base import Proposal, ResearchContext
from asi_jax.tasks.linear_attention.grammar import (
    OPTIONS,
    Design,
    canonical,
    design_from_source,
    differences,
    render,
    short_name,
)

# Words that, found in a cognition entry, support choosing an option. Each option lists
# groups of alternatives; an entry supports the option when every group has a match.
KEYWORDS: dict[tuple[str, Any], tuple[tuple[str, ...], ...]] = {
    ("rule", "additive"): (("linear attention", "additive"),),
    ("rule", "decay"): (("decay", "forget gate", "retention"),),
    ("rule", "delta"): (("delta rule", "householder", "targeted"),),
    ("rule", "gated_delta"): (("delta",), ("forget", "decay", "gate")),
    ("decay", "channel"): (("per-channel", "per key channel", "channel-wise", "per channel"),),
    ("decay", "scalar"): (("scalar per head", "scalar decay", "scalar forget"),),
    ("decay_param", "mamba"): (("softplus", "mamba"),),
    ("decay_param", "logsigmoid"): (("log-sigmoid", "logsigmoid", "temperature"),),
    ("feature_map", "elu1"): (("elu",),),
    ("feature_map", "relu"): (("relu",),),
    ("feature_map", "silu"): (("silu",),),
    ("feature_map", "identity"): (("identity",),),
    ("qk_norm", "l2"): (("l2", "normalis", "normaliz"),),
    ("conv", "k"): (("key",), ("token shift", "convolution")),
    ("conv", "qk"): (("short conv", "convolution"),),
    ("conv", "qkv"): (("short causal conv", "q, k, v", "q, k and v"),),
    ("conv_size", 2): (("width 2", "width-2", "token shift"),),
    ("conv_size", 4): (("width 4", "kernel 4", "width of 4"),),
    ("beta", "sigmoid2"): (("negative eigenvalue", "(0, 2)", "reflect"),),
    ("beta", "normalised"): (("1 + b", "self-normalised", "normalised step"),),
    ("beta", "sigmoid"): (("sigmoid beta", "beta with a sigmoid", "sigmoid of a linear"),),
    ("output_norm", "rms"): (("rms norm", "group norm", "output norm", "per-head norm"),),
    ("output_gate", "silu"): (("output gate", "gated output", "gating"), ("silu", "swish")),
    ("output_gate", "sigmoid"): (("output gate", "gated output", "gating"), ("sigmoid",)),
    ("second_path", "additive"): (("router", "multi-path", "paths", "mixture"),),
    ("second_path", "decay"): (("router", "multi-path", "paths", "hybrid"), ("decay",)),
    ("second_path", "delta"): (("router", "multi-path", "paths"), ("delta",)),
    ("second_path", "gated_delta"): (("router", "paths", "mixture"), ("forget", "gate")),
    ("head_mix", True): (("talking", "head mix", "across heads", "heads share"),),
}

RATIONALE: dict[tuple[str, Any], str] = {
    ("rule", "additive"): "plain additive writes: the cheapest state update",
    ("rule", "decay"): "a data-dependent decay lets the state forget stale content",
    ("rule", "delta"): "delta-rule writes replace the value stored under a key instead of "
    "piling values up, reducing interference between associations",
    ("rule", "gated_delta"): "a forget gate on top of delta-rule writes clears old "
    "associations when the context moves on",
    ("decay", "channel"): "a decay per key channel gives each feature its own memory horizon",
    ("decay", "scalar"): "one decay per head is cheaper and more stable",
    ("decay_param", "mamba"): "Mamba2's -exp(A) softplus(dt) decay spreads horizons over heads",
    ("decay_param", "logsigmoid"): "a log-sigmoid gate with temperature 16 starts near "
    "no forgetting",
    ("feature_map", "identity"): "no feature map on q and k",
    ("feature_map", "silu"): "SiLU on q and k sparsifies the keys a little",
    ("feature_map", "elu1"): "elu + 1 keeps scores positive",
    ("feature_map", "relu"): "ReLU makes keys sparse and non-negative",
    ("qk_norm", "l2"): "unit-norm q and k bound the scores and the state update",
    ("qk_norm", "none"): "no normalisation of q and k",
    ("conv", "none"): "no short convolution",
    ("conv", "k"): "a short causal conv on keys lets keys encode the previous token",
    ("conv", "qk"): "short causal convs on queries and keys give local context to matching",
    ("conv", "qkv"): "short causal convs on q, k and v give every projection local context",
    ("conv_size", 2): "a width-2 conv is a learned token shift",
    ("conv_size", 4): "a width-4 conv sees three previous tokens",
    ("beta", "sigmoid"): "beta in (0, 1) interpolates between keeping and replacing",
    ("beta", "sigmoid2"): "beta in (0, 2) lets the transition reflect (negative eigenvalues)",
    ("beta", "normalised"): "beta = b / (1 + b), Longhorn's self-normalised step",
    ("output_norm", "rms"): "a per-head RMS norm on the output stabilises its scale",
    ("output_norm", "none"): "no output norm",
    ("output_gate", "none"): "no output gate",
    ("output_gate", "sigmoid"): "a sigmoid output gate filters the output by the input",
    ("output_gate", "silu"): "a SiLU output gate adds input-dependent non-linearity",
    ("second_path", "none"): "a single memory path",
    ("second_path", "additive"): "a second, additive path fused by a learned router",
    ("second_path", "decay"): "a second, decaying path fused by a learned router",
    ("second_path", "delta"): "a second, delta-rule path fused by a learned router",
    ("second_path", "gated_delta"): "a second, gated delta path fused by a learned router",
    ("head_mix", False): "independent heads",
    ("head_mix", True): "a learned mixing of head outputs lets heads share what they store",
}


@dataclasses.dataclass(frozen=True)
class OfflineResearcherConfig:
    recombine_probability: float = 0.25
    cognition_weight: float = 3.0  # log-odds per unit of retrieval similarity
    analysis_weight: float = 10.0  # log-odds per unit of mean fitness change
    two_changes_probability: float = 0.2
    max_draws: int = 50  # attempts at a design not proposed before


def supports(entry_text: str, option: tuple[str, Any]) -> bool:
    text = entry_text.lower()
    groups = KEYWORDS.get(option, ())
    return bool(groups) and all(any(word in text for word in group) for group in groups)


def _entry_text(retrieved) -> str:
    e = retrieved.entry
    return " ".join([e.title, e.design_insight, e.algorithmic_innovation,
                     e.implementation_guidance])  # fmt: skip


class OfflineResearcher:
    """The grammar researcher (offline, no LLM). See the module docstring."""

    name = "offline-grammar-researcher"
    needs_design = True  # it mutates the parent's design: the controller offers no other

    def __init__(self, config: OfflineResearcherConfig = OfflineResearcherConfig()):
        self.config = config

    # -- choosing changes ---------------------------------------------------------------
    def _weigh(self, parent: Design, context: ResearchContext):
        """Every admissible single change with its log-odds and the evidence for it."""
        changes = []
        for field, options in OPTIONS.items():
            for value in options:
                child = canonical(dataclasses.replace(parent, **{field: value}))
                if child == parent or not differences(parent, child).get(field):
                    continue
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

    def _mutate(self, parent: Design, context: ResearchContext, rng: np.random.Generator):
        changes = self._weigh(parent, context)
        logits = np.array([c[1] for c in changes])
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        count = 2 if rng.random() < self.config.two_changes_probability else 1
        picks = rng.choice(len(changes), size=min(count, len(changes)), replace=False, p=probs)
        child, origins = parent, []
        for i in picks:
            (field, value), _, evidence = changes[int(i)]
            child = canonical(dataclasses.replace(child, **{field: value}))
            origins.append(self._origin(field, value, evidence))
        return child, origins

    @staticmethod
    def _origin(field: str, value, evidence) -> dict[str, str]:
        idea = f"{field}={value}"
        if not evidence:
            return {"idea": idea, "origin": "original", "evidence": "exploratory draw"}
        # the strongest kind first: cognition when an entry supported it, else analysis
        kinds = [k for k, _ in evidence]
        origin = "cognition" if "cognition" in kinds else "analysis"
        return {"idea": idea, "origin": origin, "evidence": "; ".join(t for _, t in evidence)}

    def _recombine(self, parent: Design, other: Design, other_name: str,
                   rng: np.random.Generator):  # fmt: skip
        diff = list(differences(parent, other))
        if not diff:
            return None, []
        take = [f for f in diff if rng.random() < 0.5] or [diff[int(rng.integers(len(diff)))]]
        child = canonical(dataclasses.replace(parent, **{f: getattr(other, f) for f in take}))
        origins = [{"idea": f"{f}={getattr(other, f)}", "origin": "analysis",
                    "evidence": f"inherited from reference {other_name}, an evaluated design"}
                   for f in take if getattr(child, f) == getattr(other, f)]  # fmt: skip
        return child, origins

    # -- the role ---------------------------------------------------------------------------
    def propose(self, context: ResearchContext) -> Proposal:
        rng = np.random.default_rng(context.seed)
        if not context.parent.design:
            raise ValueError(f"the parent {context.parent.name} has no design in the mixer "
                             "grammar to build on")  # fmt: skip
        parent_design = canonical(Design.from_json(context.parent.design))
        references = [r for r in context.references if r.design]
        child, origins = None, []
        for _ in range(self.config.max_draws):
            if references and rng.random() < self.config.recombine_probability:
                ref = references[int(rng.integers(len(references)))]
                child, origins = self._recombine(
                    parent_design, canonical(Design.from_json(ref.design)), ref.name, rng
                )
            else:
                child, origins = self._mutate(parent_design, context, rng)
            if child is not None and child.key() not in context.known_designs:
                break
        if child is None:
            child, origins = self._mutate(parent_design, context, rng)
        motivation = self._motivation(child, parent_design, origins, context)
        name = f"{short_name(child)}-{child.key()[:6]}"
        return Proposal(name, motivation, render(child, docstring=motivation),
                        child.to_json(), origins)  # fmt: skip

    def _motivation(self, child: Design, parent: Design, origins, context) -> str:
        p = context.parent
        figures = (f"fitness {p.fitness:.3f}, loss {p.loss:.4f}, recall {p.benchmark:.3f}"
                   if p.fitness is not None else "not yet scored")  # fmt: skip
        lines = [f"Builds on {p.name} ({figures})."]
        if context.problem_summary:
            lines.append(f"Its analysis: {context.problem_summary}")
        for field, (old, new) in differences(parent, child).items():
            why = RATIONALE.get((field, new), "")
            lines.append(f"Change {field}: {old} -> {new}: {why}.")
        for o in origins:
            lines.append(f"Idea {o['idea']} from {o['origin']}: {o['evidence']}.")
        lines.append("(Proposed by the offline grammar researcher, not a language model.)")
        return "\n".join(lines)

    def revise(self, source: str, error: str) -> str | None:
        """Repairs what the grammar can repair: a non-finite or diverging run gets the stable
        options (unit q/k, output norm, beta in (0, 1), no head mixing). Else gives up."""
        design = design_from_source(source)
        unstable = any(w in error.lower() for w in ("finite", "nan", "inf", "diverg"))
        if design is None or not unstable:
            return None
        safer = canonical(dataclasses.replace(design, qk_norm="l2", output_norm="rms",
                                              beta="sigmoid", head_mix=False))  # fmt: skip
        if safer == canonical(design):
            return None
        doc = source.split('"""')[1].split("Design: ")[0].strip() if '"""' in source else ""
        return render(safer, docstring=f"{doc}\nRevised after: {error.splitlines()[0][:200]}")
