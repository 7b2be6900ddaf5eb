"""The offline researcher: mutates and recombines designs in the mixer grammar.

Not an AI. The search is `asi_jax.agents.grammar_search`'s: it weighs every admissible
single-component change with (a) the cognition entries retrieved for the parent's problem
summary (an entry whose text names the option, e.g. "output gate" or "negative
eigenvalues", votes for it with its similarity score), and (b) the analyser's statistics of
what such changes did before; sometimes it recombines the parent with a reference instead,
and its motivation says where each idea came from (cognition, analysis, original). This
module gives it the mixer grammar (`GRAMMAR`, on JSON designs), the keywords and
rationales, and repairs unstable designs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from asi_jax.agents.grammar_search import Grammar, GrammarResearcher, SearchConfig, Wording
from asi_jax.tasks.linear_attention.grammar import (
    OPTIONS,
    Design,
    canonical,
    design_from_source,
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


def _canonical(design: Mapping[str, Any]) -> dict[str, Any]:
    return canonical(Design.from_json(dict(design))).to_json()


def _name(design: dict[str, Any]) -> str:
    d = Design.from_json(design)
    return f"{short_name(d)}-{d.key()[:6]}"


def _render(design: dict[str, Any], *, docstring: str = "") -> str:
    return render(Design.from_json(design), docstring=docstring)


# The mixer grammar on JSON designs, for the grammar-generic agents (judge and analyser too).
GRAMMAR = Grammar(OPTIONS, _canonical, key=lambda d: Design.from_json(d).key(), name=_name,
                  render=_render)  # fmt: skip
WORDING = Wording(KEYWORDS, RATIONALE, benchmark="recall", signature="offline grammar researcher",
                  inherited="inherited from reference {name}, an evaluated design")  # fmt: skip
CONFIG = SearchConfig()


class OfflineResearcher(GrammarResearcher):
    """The grammar researcher (offline, no LLM). See the module docstring."""

    name = "offline-grammar-researcher"
    needs_design = True  # it mutates the parent's design: the controller offers no other

    def __init__(self, config: SearchConfig = CONFIG):
        super().__init__(GRAMMAR, WORDING, config)

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
