"""Measuring the cognition index at scale: synthetic ASI-Arch-style entries and queries, and
build time, time per query and recall@k against exact search.

The text is composed from a vocabulary of linear-attention terms so that entries share
words the way papers of one field do, without being near-duplicates: each paper has a title
and one to three insights, each insight two to four trigger sentences drawn from templates
with independently chosen slots. Queries are written like an analyser's problem summary,
from the same vocabulary but other templates. Used by scripts/bench_cognition.py and the
recall test.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from asi_jax.cognition.entries import CognitionEntry
from asi_jax.cognition.index import IndexConfig, VectorIndex

MECHANISMS = """delta rule|gated delta rule|scalar forget gate|data-dependent decay|channel-wise
decay|fixed exponential decay|short causal convolution|token shift|output gate|gated RMS
normalisation|L2-normalised keys|positive feature map|Taylor feature map|random feature map|
sliding-window attention|product of Householder matrices|WY representation|chunkwise parallel
form|outer-product state expansion|multi-head state|low-rank gate projection|exponential
gating|mixture of memories|token router|hybrid softmax layer|rotary position encoding|
log-linear memory hierarchy|test-time regression|momentum in the state update|surprise-based
memory write|negative eigenvalues in the transition|sigmoid write strength|gated slot
attention|multi-scale retention|selective state space|talking-heads mixing|learnable
temperature|key-value normalisation|bounded slot memory|two-pass lookahead|per-head decay
initialisation|data-dependent position encoding""".replace("\n", " ")
MODELS = """Mamba2|DeltaNet|Gated DeltaNet|GLA|RetNet|RWKV-7|HGRN2|xLSTM|linear transformers|
state-space models|hybrid models|Titans|Longhorn|Based|Hedgehog|Kimi Linear|TTT layers|
Performers|Forgetting Transformer|Log-Linear Attention""".replace("\n", " ")
COMPONENTS = """the keys|the queries|the values|the recurrent state|the decay gate|the write
strength|the output projection|the normaliser|the feature map|the chunk boundaries|the head
dimension|the gate projection|the convolution kernel|the state update|the residual branch|the
key projection|the eigenvalues of the transition|the memory slots|the router logits|the
position encoding""".replace("\n", " ")
SYMPTOMS = """associative recall stays near chance|loss plateaus after warm-up|gradients
explode early in training|NaN values appear|perplexity rises on long contexts|throughput falls
below the baseline|the state saturates|memory grows with sequence length|state tracking tasks
fail|copying accuracy drops beyond the training length|validation loss lags the baseline|the
gate collapses to zero|training becomes unstable at high learning rates|retrieval of early
tokens fails|the model ignores distant context|attention entropy collapses|the decay
saturates near one|recall degrades as more pairs are stored|outputs drift in scale|the
candidate leaks future tokens""".replace("\n", " ")
CONDITIONS = """at sequence lengths above 4k|when the key-value pairs outnumber the head
dimension|in bfloat16|at small model scale|with many narrow heads|after doubling the
context|under a fixed parameter budget|on multi-query associative recall|on parity and
modular arithmetic|late in long training runs|with large batch sizes|on byte-level
inputs|when decays are strong|with a single wide head|on in-context regression
probes|during length extrapolation""".replace("\n", " ")
EFFECTS = """forgetting of stale associations|interference between stored keys|precision of
the cumulative decay|the effective memory horizon|the rank of the state|local token
binding|the scale of the state|the conditioning of the update|the expressivity of the
transition|competition between heads|saturation of the gate|the spread of decay
rates|orthogonality of the keys|the error of the online regression""".replace("\n", " ")
METRICS = """validation loss|recall accuracy|perplexity|tokens per second|training
stability|state-tracking accuracy|long-context loss|copying accuracy|benchmark
average""".replace("\n", " ")
GOALS = """associative recall|length extrapolation|stable training|state tracking|efficient
decoding|long-context modelling|hardware efficiency|expressive recurrences|memory
capacity|in-context learning""".replace("\n", " ")
ADJECTIVES = """Gated|Selective|Normalised|Chunked|Expressive|Scalable|Hierarchical|
Adaptive|Structured|Stable|Efficient|Multi-scale""".replace("\n", " ")

TRIGGERS = (
    "{Symptom} {condition}.",
    "A candidate built on {mechanism} shows that {symptom} {condition}.",
    "{Metric} lags the baseline while {symptom}.",
    "The analysis points to {effect} in {component}.",
    "Ablating {mechanism} changes {metric} by less than {pct} percent.",
    "Use when {symptom} and {effect} is suspected.",
    "{Metric} improves {condition} once {component} is changed, but {symptom}.",
    "Compared with {model}, {symptom} {condition}.",
)
QUERIES = (
    "The candidate with {mechanism} {condition}: {symptom}; {metric} is worse than the "
    "parent's, which suggests a problem with {effect} in {component}.",
    "{Metric} stalls and {symptom} {condition}. Changing {component} did not help.",
    "Compared with {model}, our mixer fails because {symptom}; we suspect {effect}.",
    "After adding {mechanism}, {symptom} and {metric} gets worse {condition}.",
)
TITLES = (
    "{Adjective} {mechanism} for {goal}",
    "{Mechanism}: improving {model} for {goal}",
    "Improving {model} with {mechanism}",
    "On {effect} in {model}",
)


def _choices(rng: np.random.Generator) -> dict[str, str]:
    def pick(options: str) -> str:
        parts = options.split("|")
        return " ".join(parts[rng.integers(len(parts))].split())

    slots = {
        "mechanism": pick(MECHANISMS), "model": pick(MODELS), "component": pick(COMPONENTS),
        "symptom": pick(SYMPTOMS), "condition": pick(CONDITIONS), "effect": pick(EFFECTS),
        "metric": pick(METRICS), "goal": pick(GOALS), "adjective": pick(ADJECTIVES).lower(),
        "pct": str(rng.integers(1, 10)),
    }  # fmt: skip
    return slots | {k.capitalize(): v[:1].upper() + v[1:] for k, v in slots.items()}


def _fill(template: str, rng: np.random.Generator) -> str:
    return template.format(**_choices(rng))


def synthetic_entries(n: int, seed: int = 0) -> list[CognitionEntry]:
    """`n` entries, one to three per synthetic paper (which share its title)."""
    rng = np.random.default_rng(seed)
    entries: list[CognitionEntry] = []
    while len(entries) < n:
        title = _fill(TITLES[rng.integers(len(TITLES))], rng)
        paper = f"synthetic:{len(entries)}"
        for _ in range(min(int(rng.integers(1, 4)), n - len(entries))):
            sentences = rng.choice(len(TRIGGERS), size=int(rng.integers(2, 5)), replace=False)
            triggers = " ".join(_fill(TRIGGERS[i], rng) for i in sentences)
            entries.append(CognitionEntry(
                title=title, source=paper,
                design_insight=_fill("{Mechanism} addresses {effect} in {component}.", rng),
                trigger_patterns=triggers,
                background=f"**Title**: {title}\n" + _fill("Builds on {model}.", rng),
                algorithmic_innovation=_fill("Replace {component} with {mechanism}.", rng),
                implementation_guidance=_fill("Watch {effect} {condition}.", rng),
            ))  # fmt: skip
    return entries


def synthetic_queries(n: int, seed: int = 1) -> list[str]:
    """`n` problem summaries in an analyser's words."""
    rng = np.random.default_rng(seed)
    return [_fill(QUERIES[rng.integers(len(QUERIES))], rng) for _ in range(n)]


@dataclasses.dataclass(frozen=True)
class Measurement:
    setting: str
    rows: int
    kind: str  # brute_force or tree_ah
    build_seconds: float
    ms_per_query: float  # one query at a time, as the store asks
    recall_at_k: float  # fraction of the exact top k found


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """Indices [Q, k] of the k largest inner products (ties broken by index)."""
    scores = queries @ vectors.T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def measure(setting: str, vectors: np.ndarray, queries: np.ndarray, config: IndexConfig,
            k: int = 10, exact: np.ndarray | None = None) -> Measurement:  # fmt: skip
    """Builds an index over `vectors` with `config` and measures it with `queries`."""
    exact = exact_top_k(vectors, queries, k) if exact is None else exact
    start = time.perf_counter()
    index = VectorIndex(vectors, config)
    build = time.perf_counter() - start
    index.search(queries[:1], k)  # warm-up
    found, start = [], time.perf_counter()
    for q in queries:
        found.append(index.search(q, k)[0][0])
    per_query = (time.perf_counter() - start) / len(queries) * 1e3
    return Measurement(setting, len(vectors), index.kind, build, per_query,
                       recall_at_k(np.stack(found), exact))  # fmt: skip


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / k."""
    hits = [len(set(f.tolist()) & set(e.tolist())) for f, e in zip(found, exact, strict=True)]
    return float(np.mean(hits) / exact.shape[1])


def key_texts(entries: Sequence[CognitionEntry]) -> list[str]:
    from asi_jax.cognition.store import key_text

    return [key_text(e) for e in entries]


@dataclasses.dataclass(frozen=True)
class Quality:
    recall_at_5: float  # mean over queries of the fraction of relevant entries in the top 5
    mrr: float  # mean reciprocal rank of the first relevant entry (0 if none is ranked)


def retrieval_quality(rankings: Sequence[Sequence[str]],
                      relevant: Sequence[Sequence[str]]) -> Quality:  # fmt: skip
    """Judged quality of ranked titles (one ranking per query, best first)."""
    recalls, reciprocal = [], []
    for ranked, wanted in zip(rankings, relevant, strict=True):
        wanted = set(wanted)
        recalls.append(len(wanted & set(ranked[:5])) / len(wanted))
        ranks = [i for i, title in enumerate(ranked, 1) if title in wanted]
        reciprocal.append(1 / ranks[0] if ranks else 0.0)
    return Quality(float(np.mean(recalls)), float(np.mean(reciprocal)))
