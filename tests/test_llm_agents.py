"""LLM-backed agents against model servers of our own on 127.0.0.1 (never a real API)."""

import json
from pathlib import Path

import pytest
from fake_servers import serve

from asi_jax.agents.base import Record, ResearchContext
from asi_jax.agents.llm import (
    LLMConfig,
    LLMError,
    LLMJudge,
    LLMResearcher,
    extract_code,
    make_client,
)
from asi_jax.candidates.policy import check_source
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import Controller
from asi_jax.tasks.linear_attention import LinearAttentionTask
from asi_jax.tasks.linear_attention.contract import MIXER

GOOD = (Path(__file__).parent / "candidates" / "good_gated_delta.py").read_text()
PROPOSAL = (
    '```json\n{"name": "Gated Delta + Conv!", "motivation": "Forget stale pairs (Gated '
    'DeltaNet entry).", "idea_origins": [{"idea": "gate", "origin": "cognition", "evidence": '
    '"Gated DeltaNet"}, {"idea": "x", "origin": "magic"}]}\n```\nHere is the code:\n'
    f"```python\n{GOOD}```\n"
)

TASK = LinearAttentionTask()


def _chat(provider: str, text: str) -> dict:
    """A model reply in the provider's wire format."""
    if provider == "openai":
        return {"choices": [{"message": {"role": "assistant", "content": text}}]}
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ]
    }


def _replying(provider: str, replies: list[tuple[int, str]]):
    """A server answering with `replies` in order, then with an empty JSON object."""

    def respond(path, body):
        status, text = replies.pop(0) if replies else (200, "{}")
        return status, _chat(provider, text) if status == 200 else {"error": {"message": "x"}}

    return serve(respond)


@pytest.fixture(autouse=True)
def llm_key(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")


def _config(url, provider="openai", **kw):
    return LLMConfig(
        provider=provider,
        model="test-model",
        base_url=url,
        api_key_env="TEST_LLM_KEY",
        retry_seconds=0.01,
        **kw,
    )


def _record(**kw):
    values = dict(
        id=1,
        name="deltanet",
        parent_id=None,
        motivation="Baseline DeltaNet.",
        code="class Mixer: ...",
        design=None,
        status="evaluated",
        loss=0.3,
        benchmark=0.8,
        fitness=1.5,
        metrics={},
    )
    return Record(**{**values, **kw})


def _context():
    return ResearchContext(
        parent=_record(),
        references=[],
        cognition=[],
        problem_summary="recall drops with more pairs",
        lessons=["a lesson"],
        component_effects={},
        known_designs=frozenset(),
        seed=0,
    )


@pytest.mark.parametrize("provider", ["openai", "gemini"])
def test_researcher_proposes_a_policy_clean_candidate(provider):
    with _replying(provider, [(200, PROPOSAL)]) as server:
        researcher = LLMResearcher(make_client(_config(server.url, provider)), TASK)
        proposal = researcher.propose(_context())
    assert proposal.name == "gated-delta-conv"
    assert check_source(proposal.code, MIXER) == []
    assert [o["origin"] for o in proposal.idea_origins] == ["cognition"]  # "magic" dropped
    path, body, headers = server.requests[0]
    text = json.dumps(body)
    assert "recall drops with more pairs" in text and "class Mixer(nnx.Module)" in text
    if provider == "openai":
        assert path == "/chat/completions" and headers["Authorization"] == "Bearer sk-test"
        assert body["messages"][0]["role"] == "system"
    else:
        assert path.endswith("models/test-model:generateContent")
        assert headers["x-goog-api-key"] == "sk-test"
    assert researcher.name.startswith("llm-researcher:")


def test_transient_errors_are_retried_and_others_are_not():
    replies = [(500, ""), (429, ""), (200, f"```python\n{GOOD}```"), (400, "")]
    with _replying("openai", replies) as server:
        researcher = LLMResearcher(make_client(_config(server.url)), TASK)
        assert researcher.revise("old code", "stage finite failed") == GOOD
        assert len(server.requests) == 3
        with pytest.raises(LLMError, match=r"chat request to .* failed"):
            make_client(_config(server.url)).complete("s", "p")
        assert len(server.requests) == 4  # a 400 is not retried


def test_unusable_replies_fail_clearly():
    replies = [
        (200, "I would rather not."),
        (200, "no code here"),
        (200, '{"score": 42, "rationale": "wow"}'),
    ]
    with _replying("openai", replies) as server:
        client = make_client(_config(server.url))
        with pytest.raises(LLMError, match=r"JSON does not parse|no ```python"):
            LLMResearcher(client, TASK).propose(_context())
        assert LLMResearcher(client, TASK).revise("x", "error") is None  # gives up, no crash
        with pytest.raises(LLMError, match=r"score must be a number in \[1, 10\]"):
            LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])
    with pytest.raises(LLMError, match=r"no ```python code block"):
        extract_code("just prose")


def test_missing_key_is_named(monkeypatch):
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with pytest.raises(LLMError, match=r"\$TEST_LLM_KEY"):
        make_client(LLMConfig(provider="openai", api_key_env="TEST_LLM_KEY"))


def test_controller_records_bad_llm_replies_as_rejections(tmp_path):
    replies = [(200, '{"score": 5, "rationale": "a baseline"}')]  # judges deltanet
    replies += [(200, "no usable reply")] * 3
    with _replying("openai", replies) as server:
        _run_controller_with_bad_replies(server.url, tmp_path)


def _run_controller_with_bad_replies(url: str, tmp_path) -> None:
    config = from_config_dict(
        {
            "agents": "llm",
            "baselines": ["deltanet"],
            "max_proposal_tries": 3,
            "llm": {
                "provider": "openai",
                "model": "m",
                "base_url": url,
                "api_key_env": "TEST_LLM_KEY",
                "retry_seconds": 0.01,
            },
        }
    )
    controller = Controller(config, tmp_path, log=lambda line: None)
    controller.seed_baselines()
    (baseline,) = controller.db.candidates()
    controller.db.finish_evaluation(
        baseline["id"],
        "explore",
        ok=True,
        failure_stage=None,
        failure_reason=None,
        loss=0.3,
        benchmark=0.8,
        params=1,
        metrics={},
        check_report={},
        compute_seconds=1.0,
        attempts=[],
    )
    controller.catch_up()  # judges the explored baseline, then scores it
    assert controller.propose() is None
    reasons = [r["reason"] for r in controller.db.query("SELECT reason FROM rejections")]
    assert len(reasons) == 3 and all(r.startswith("researcher error") for r in reasons)
    assert controller.db.judgement(baseline["id"])["judge"].startswith("llm-judge:")
    assert len(controller.db.candidates()) == 1  # nothing lost, nothing half-written
