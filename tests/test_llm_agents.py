"""LLM-backed agents against model servers of our own on 127.0.0.1 (never a real API)."""

import http.server
import json
import threading
from pathlib import Path

import pytest

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
from asi_jax.evolution.loop import Controller

GOOD = (Path(__file__).parent / "candidates" / "good_gated_delta.py").read_text()
PROPOSAL = (
    '```json\n{"name": "Gated Delta + Conv!", "motivation": "Forget stale pairs (Gated '
    'DeltaNet entry).", "idea_origins": [{"idea": "gate", "origin": "cognition", "evidence": '
    '"Gated DeltaNet"}, {"idea": "x", "origin": "magic"}]}\n```\nHere is the code:\n'
    f"```python\n{GOOD}```\n"
)


class _Server(http.server.BaseHTTPRequestHandler):
    """Answers POSTs from a queue of (status, reply text); records every request."""

    replies: list = []
    seen: list = []
    kind = "openai"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append((self.path, body, dict(self.headers)))
        status, text = type(self).replies.pop(0) if type(self).replies else (200, "{}")
        if type(self).kind == "openai":
            payload = {"choices": [{"message": {"role": "assistant", "content": text}}]}
        else:
            payload = {
                "candidates": [
                    {
                        "content": {"role": "model", "parts": [{"text": text}]},
                        "finishReason": "STOP",
                    }
                ]
            }
        data = json.dumps(payload if status == 200 else {"error": {"message": "boom"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Server)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    _Server.replies, _Server.seen, _Server.kind = [], [], "openai"
    monkeypatch.setenv("TEST_LLM_KEY", "sk-test")
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


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
def test_researcher_proposes_a_policy_clean_candidate(server, provider):
    _Server.kind = provider
    _Server.replies = [(200, PROPOSAL)]
    researcher = LLMResearcher(make_client(_config(server, provider)))
    proposal = researcher.propose(_context())
    assert proposal.name == "gated-delta-conv"
    assert check_source(proposal.code) == []
    assert [o["origin"] for o in proposal.idea_origins] == ["cognition"]  # "magic" dropped
    path, body, headers = _Server.seen[0]
    text = json.dumps(body)
    assert "recall drops with more pairs" in text and "class Mixer(nnx.Module)" in text
    if provider == "openai":
        assert path == "/chat/completions" and headers["Authorization"] == "Bearer sk-test"
        assert body["messages"][0]["role"] == "system"
    else:
        assert path.endswith("models/test-model:generateContent")
        assert headers["x-goog-api-key"] == "sk-test"
    assert researcher.name.startswith("llm-researcher:")


def test_transient_errors_are_retried_and_others_are_not(server):
    _Server.replies = [(500, ""), (429, ""), (200, f"```python\n{GOOD}```")]
    researcher = LLMResearcher(make_client(_config(server)))
    assert researcher.revise("old code", "stage finite failed") == GOOD
    assert len(_Server.seen) == 3
    _Server.replies = [(400, "")]
    with pytest.raises(LLMError, match="chat request to .* failed"):
        make_client(_config(server)).complete("s", "p")
    assert len(_Server.seen) == 4


def test_unusable_replies_fail_clearly(server):
    _Server.replies = [
        (200, "I would rather not."),
        (200, "no code here"),
        (200, '{"score": 42, "rationale": "wow"}'),
    ]
    client = make_client(_config(server))
    with pytest.raises(LLMError, match="JSON does not parse|no ```python"):
        LLMResearcher(client).propose(_context())
    assert LLMResearcher(client).revise("x", "error") is None  # gives up, no crash
    with pytest.raises(LLMError, match=r"score must be a number in \[1, 10\]"):
        LLMJudge(client).judge(_record(), nearest_similarity=0.2, population=[])
    with pytest.raises(LLMError, match="no ```python code block"):
        extract_code("just prose")


def test_missing_key_is_named(monkeypatch):
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with pytest.raises(LLMError, match=r"\$TEST_LLM_KEY"):
        make_client(LLMConfig(provider="openai", api_key_env="TEST_LLM_KEY"))


def test_controller_records_bad_llm_replies_as_rejections(server, tmp_path):
    config = from_config_dict(
        {
            "agents": "llm",
            "baselines": ["deltanet"],
            "max_proposal_tries": 3,
            "llm": {
                "provider": "openai",
                "model": "m",
                "base_url": server,
                "api_key_env": "TEST_LLM_KEY",
                "retry_seconds": 0.01,
            },
        }
    )
    _Server.replies = [(200, '{"score": 5, "rationale": "a baseline"}')]  # judges deltanet
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
    controller.score("explore")
    _Server.replies = [(200, "no usable reply")] * 3
    assert controller.propose() is None
    reasons = [r["reason"] for r in controller.db.query("SELECT reason FROM rejections")]
    assert len(reasons) == 3 and all(r.startswith("researcher error") for r in reasons)
    assert controller.db.judgement(baseline["id"])["judge"].startswith("llm-judge:")
    assert len(controller.db.candidates()) == 1  # nothing lost, nothing half-written
