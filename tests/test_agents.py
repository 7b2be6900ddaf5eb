"""The offline agents: grammar rendering, researcher, analyser, judge."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from asi_jax.agents.base import Record, ResearchContext, component_effects
from asi_jax.candidates.policy import check_source
from asi_jax.cognition.embedders import HashingEmbedder
from asi_jax.cognition.entries import CognitionEntry, load_jsonl
from asi_jax.cognition.store import CognitionStore, Retrieved
from asi_jax.tasks.linear_attention import LinearAttentionTask
from asi_jax.tasks.linear_attention.analyser import OfflineAnalyser
from asi_jax.tasks.linear_attention.contract import MIXER
from asi_jax.tasks.linear_attention.grammar import (
    BASELINE_DESIGNS,
    OPTIONS,
    Design,
    canonical,
    design_from_source,
    differences,
    render,
)
from asi_jax.tasks.linear_attention.judge import OfflineJudge
from asi_jax.tasks.linear_attention.researcher import OfflineResearcher

designs = st.builds(Design, **{f: st.sampled_from(o) for f, o in OPTIONS.items()})


def _record(
    rid, design, *, parent=None, fitness=1.5, loss=1.0, bench=0.5, status="evaluated", recalls=None
):
    metrics = {"eval": {f"mqar_kv{k}": {"accuracy": v} for k, v in (recalls or {}).items()}}
    return Record(
        id=rid,
        name=f"c{rid}",
        parent_id=parent,
        motivation=f"m{rid}",
        code="",
        design=design.to_json(),
        status=status,
        loss=loss,
        benchmark=bench,
        fitness=fitness,
        metrics=metrics,
    )


def _load(source: str):
    namespace = {}
    exec(compile(source, "candidate.py", "exec"), namespace)  # trusted: our own renderer
    return namespace["Mixer"]


@settings(max_examples=60, deadline=None)
@given(designs)
def test_every_rendered_design_passes_the_static_policy(design):
    source = render(design, docstring='a motivation with """ quotes')
    assert check_source(source, MIXER) == []
    assert design_from_source(source) == canonical(design)


@pytest.mark.parametrize("seed", range(6))
def test_rendered_designs_build_run_and_are_causal(seed):
    rng = np.random.default_rng(seed)
    design = canonical(Design(**{f: o[int(rng.integers(len(o)))] for f, o in OPTIONS.items()}))
    mixer = _load(render(design))(32, 4, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.PRNGKey(seed), (2, 12, 32))
    y = mixer(x)
    assert y.shape == x.shape and bool(jnp.isfinite(y).all())
    y2 = mixer(x.at[:, 7:].set(0.0))  # the future changes; the past must not
    np.testing.assert_allclose(y[:, :7], y2[:, :7], atol=1e-5)


def test_canonical_enforces_the_grammar_constraints():
    d = canonical(Design(rule="delta", qk_norm="none", decay="channel"))
    assert d.qk_norm == "l2" and d.decay == "scalar"  # unit keys; no unused options
    assert canonical(Design(rule="additive", beta="sigmoid2")).beta == "sigmoid"
    assert canonical(Design(rule="decay", second_path="decay")).second_path == "none"
    with pytest.raises(ValueError, match=r"design.rule must be one of"):
        Design(rule="quantum")


def _context(parent, *, references=(), effects=None, cognition=(), seed=0, known=frozenset()):
    return ResearchContext(
        parent=parent,
        references=list(references),
        cognition=list(cognition),
        problem_summary="recall is weak",
        lessons=[],
        component_effects=effects or {},
        known_designs=known,
        seed=seed,
    )


@pytest.mark.parametrize("seed", range(25))
def test_offline_researcher_proposals_pass_the_policy_and_are_new(seed):
    store = CognitionStore(load_jsonl(LinearAttentionTask.cognition_file), HashingEmbedder())
    parent = _record(1, BASELINE_DESIGNS["deltanet"])
    reference = _record(2, BASELINE_DESIGNS["gated_deltanet"])
    known = frozenset(
        LinearAttentionTask().design_key(d) for d in (parent.design, reference.design)
    )
    cognition = store.retrieve("forgetting old associations; recall drops", 4)
    p = OfflineResearcher().propose(
        _context(parent, references=[reference], seed=seed, cognition=cognition, known=known)
    )
    assert check_source(p.code, MIXER) == []
    child = Design.from_json(p.design)
    assert child.key() not in known and differences(canonical(child), BASELINE_DESIGNS["deltanet"])
    assert {o["origin"] for o in p.idea_origins} <= {"cognition", "analysis", "original"}
    assert "Builds on c1" in p.motivation and "not a language model" in p.motivation


def test_researcher_follows_cognition_and_analysis_evidence():
    parent = _record(1, BASELINE_DESIGNS["deltanet"])
    researcher = OfflineResearcher()
    effects = {("output_gate", "silu"): (0.5, 4)}  # children gained +0.5 fitness from it
    picks = [
        Design.from_json(researcher.propose(_context(parent, effects=effects, seed=s)).design)
        for s in range(20)
    ]
    assert sum(d.output_gate == "silu" for d in picks) >= 12
    store = CognitionStore(load_jsonl(LinearAttentionTask.cognition_file), HashingEmbedder())
    retrieved = store.retrieve(
        "fails parity and state tracking; transition eigenvalues positive", 3
    )
    proposals = [
        researcher.propose(_context(parent, cognition=retrieved, seed=s)) for s in range(20)
    ]
    chosen = [p for p in proposals if Design.from_json(p.design).beta == "sigmoid2"]
    assert len(chosen) >= 4  # about 1 in 20 without the evidence
    assert any(
        o["origin"] == "cognition" and "Negative eigenvalues" in o["evidence"]
        for p in chosen
        for o in p.idea_origins
    )


def test_researcher_proposals_are_pinned():
    """The same context and seed give the same proposal as before the search moved into
    agents.grammar_search (the quickstart's results depend on it)."""

    def entry(title, insight):
        return CognitionEntry(title, "", insight, "", "", "", "")

    designs = {k: d.to_json() for k, d in BASELINE_DESIGNS.items()}
    parent = _record(1, BASELINE_DESIGNS["deltanet"], bench=0.5)
    references = [dataclasses.replace(_record(i, BASELINE_DESIGNS[n]), name=n)
                  for i, n in ((2, "gated_deltanet"), (3, "linear_attention"))]  # fmt: skip
    cognition = [
        Retrieved(entry("Negative eigenvalues", "beta in (0, 2) lets the transition reflect"), 0.6),
        Retrieved(entry("Output gating", "an output gate with SiLU"), 0.4),
    ]
    known = frozenset(LinearAttentionTask().design_key(d) for d in designs.values())
    effects = {("conv", "k"): (-0.2, 3), ("rule", "gated_delta"): (0.1, 2)}
    proposals = [
        OfflineResearcher().propose(_context(parent, references=references, effects=effects,
                                             cognition=cognition, seed=s, known=known))
        for s in range(10)
    ]  # fmt: skip
    assert [p.name for p in proposals] == [
        "decay-060d80", "gateddelta-f60a3b", "delta_outputgate-silu-291de2", "gateddelta-f60a3b",
        "delta_headmix-true-f52a2a", "delta_beta-sigmoid2-a5afbf", "delta_conv-none-55ac3d",
        "delta_outputgate-silu-291de2", "delta_featuremap-relu-33527c",
        "delta_beta-sigmoid2-a5afbf",
    ]  # fmt: skip
    assert [o["evidence"] for p in proposals[:4] for o in p.idea_origins] == [
        "exploratory draw",
        "children that switched to rule=gated_delta changed fitness by +0.100 on average (n=2)",
        "'Output gating' (similarity 0.40)",
        "inherited from reference gated_deltanet, an evaluated design",
    ]
    assert proposals[3].motivation == (
        "Builds on c1 (fitness 1.500, loss 1.0000, recall 0.500).\n"
        "Its analysis: recall is weak\n"
        "Change rule: delta -> gated_delta: a forget gate on top of delta-rule writes clears old "
        "associations when the context moves on.\n"
        "Idea rule=gated_delta from analysis: inherited from reference gated_deltanet, an "
        "evaluated design.\n"
        "(Proposed by the offline grammar researcher, not a language model.)"
    )
    assert proposals[3].design == canonical(Design(rule="gated_delta")).to_json()


def test_offline_revise_repairs_instability_and_gives_up_otherwise():
    source = render(Design(rule="additive", qk_norm="none", output_norm="none", head_mix=True))
    researcher = OfflineResearcher()
    fixed = researcher.revise(source, "stage finite failed:\nforward output is not finite")
    assert fixed and design_from_source(fixed).output_norm == "rms"
    assert check_source(fixed, MIXER) == []
    assert researcher.revise(source, "stage causality failed: leak") is None


def test_analyser_compares_with_parent_and_names_the_problem():
    parent = _record(
        1, BASELINE_DESIGNS["deltanet"], fitness=1.5, loss=1.0, bench=0.6, recalls={4: 0.9, 8: 0.3}
    )
    child = _record(
        2,
        dataclasses.replace(BASELINE_DESIGNS["deltanet"], output_gate="silu"),
        parent=1,
        fitness=1.8,
        loss=0.9,
        bench=0.62,
        recalls={4: 0.95, 8: 0.29},
    )
    sibling = _record(3, BASELINE_DESIGNS["gated_deltanet"], parent=1, fitness=1.9)
    a = OfflineAnalyser().analyse(child, parent, [child, sibling])
    assert "output_gate none->silu" in a.lesson and "helped" in a.lesson
    assert "1 of 1 evaluated siblings scored higher" in a.report
    assert "recall drops as the number of key-value pairs grows" in a.problem_summary
    failed = dataclasses.replace(
        child,
        status="failed",
        failure_stage="finite",
        failure_reason="forward output is not finite",
    )
    assert "NaN" in OfflineAnalyser().analyse(failed, parent, []).problem_summary


def test_component_effects_average_parent_to_child_changes():
    base = BASELINE_DESIGNS["deltanet"]
    records = [
        _record(1, base, fitness=1.0),
        _record(2, dataclasses.replace(base, output_gate="silu"), parent=1, fitness=1.4),
        _record(3, dataclasses.replace(base, output_gate="silu", conv="k"), parent=1, fitness=1.2),
        _record(4, dataclasses.replace(base, conv="k"), parent=1, status="failed", fitness=None),
    ]
    effects = component_effects(records, LinearAttentionTask().design_changes)
    assert effects[("output_gate", "silu")] == pytest.approx((0.3, 2))
    assert effects[("conv", "k")] == pytest.approx(((0.2 - 1.0) / 2, 2))


def test_judge_rewards_distance_and_new_wording():
    base = BASELINE_DESIGNS["deltanet"]
    population = [_record(1, base)]
    near = _record(2, dataclasses.replace(base, output_gate="silu"))
    far = _record(3, Design(rule="decay", decay="channel", feature_map="elu1", conv="none"))
    judge = OfflineJudge()
    s_near, _ = judge.judge(near, nearest_similarity=0.9, population=population)
    s_far, why = judge.judge(far, nearest_similarity=0.3, population=population)
    assert 1.0 <= s_near < s_far <= 10.0
    assert "component(s)" in why
