"""LLM-backed agents against model servers of our own on 127.0.0.1 (never a real API)."""

import json
import time
from pathlib import Path

import pytest
from fake_servers import Reply, serve

from asi_jax.agents.base import Record, ResearchContext
from asi_jax.agents.llm import (
    LLMAnalyser,
    LLMConfig,
    LLMError,
    LLMJudge,
    LLMResearcher,
    LLMUnavailable,
    MemorySink,
    ReplyRefused,
    extract_code,
    make_client,
    research_prompt,
    retry_after_seconds,
    sub_scores,
)
from asi_jax.candidates.policy import check_source
from asi_jax.evolution.config import complete_config, from_config_dict
from asi_jax.evolution.controller import Controller
from asi_jax.tasks.linear_attention import LinearAttentionTask, grammar
from asi_jax.tasks.linear_attention.contract import MIXER
from asi_jax.train.config import convert

GOOD = (Path(__file__).parent / "candidates" / "good_gated_delta.py").read_text()
FIELDS = {
    "name": "Gated Delta + Conv!",
    "motivation": "Forget stale pairs (Gated DeltaNet entry).",
    "idea_origins": [
        {"idea": "gate", "origin": "cognition", "evidence": "Gated DeltaNet"},
        {"idea": "x", "origin": "magic"},
    ],
}
PROPOSAL = f"```json\n{json.dumps(FIELDS)}\n```\nHere is the code:\n```python\n{GOOD}```\n"
PROPOSAL_JSON = json.dumps({**FIELDS, "code": GOOD})  # what a JSON schema asks for
KEY = "sk-test-0123456789abcdef"
PROVIDERS = ["openai", "gemini"]
TASK = LinearAttentionTask()


def _chat(provider: str, text: str, usage: tuple[int, int] = (0, 0)) -> dict:
    """A model reply in the provider's wire format, with its token counts."""
    if provider == "openai":
        return {
            "choices": [{"message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1],
                      "total_tokens": sum(usage)},
        }  # fmt: skip
    return {
        "candidates": [
            {"content": {"role": "model", "parts": [{"text": text}]}, "finishReason": "STOP"}
        ],
        "usageMetadata": {"promptTokenCount": usage[0], "candidatesTokenCount": usage[1],
                          "totalTokenCount": sum(usage)},
    }  # fmt: skip


def _replying(provider: str, replies: list):
    """A server answering with `replies` in order ((status, text) or a Reply), then with an
    empty JSON object."""

    def respond(path, body):
        reply = replies.pop(0) if replies else (200, "{}")
        if isinstance(reply, Reply):
            return reply
        status, text = reply
        return status, _chat(provider, text) if status == 200 else {"error": {"message": "x"}}

    return serve(respond)


@pytest.fixture(autouse=True)
def llm_key(monkeypatch):
    monkeypatch.setenv("TEST_LLM_KEY", KEY)


def _config(url, provider="openai", **kw):
    """An LLMConfig from nested mappings, as a config file gives them."""
    values = dict(provider=provider, model="test-model", base_url=url,
                  api_key_env="TEST_LLM_KEY", retry_seconds=0.01)  # fmt: skip
    return convert(LLMConfig, {**values, **kw})


def _prompt(provider: str, body: dict) -> str:
    """The user message of a request."""
    if provider == "openai":
        return body["messages"][1]["content"]
    return body["contents"][0]["parts"][0]["text"]


def _schema_asked(provider: str, body: dict) -> bool:
    if provider == "openai":
        return body.get("response_format", {}).get("type") == "json_schema"
    settings = body.get("generationConfig", {})
    return settings.get("responseMimeType") == "application/json" and bool(
        settings.get("responseJsonSchema")
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


def _context(**kw):
    values = dict(
        parent=_record(),
        references=[],
        cognition=[],
        problem_summary="recall drops with more pairs",
        lessons=["a lesson"],
        component_effects={},
        known_designs=frozenset(),
        seed=0,
    )
    return ResearchContext(**{**values, **kw})


def _verdict(score, rationale="ok", subs=(6, 4, 8)) -> str:
    """A judge's reply: the overall score, its rationale and the three sub-scores."""
    return json.dumps({"performance": subs[0], "innovation": subs[1], "complexity": subs[2],
                       "score": score, "rationale": rationale})  # fmt: skip


def _check_proposal(proposal):
    assert proposal.name == "gated-delta-conv"
    assert check_source(proposal.code, MIXER) == []
    assert [o["origin"] for o in proposal.idea_origins] == ["cognition"]  # "magic" dropped


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "reply",
    [PROPOSAL_JSON, PROPOSAL, f"Sure, here it is:\n{PROPOSAL_JSON}\nHope it helps."],
    ids=["schema", "free-form", "json-in-prose"],
)
def test_researcher_proposes_from_a_schema_reply_or_free_text(provider, reply):
    with _replying(provider, [(200, reply)]) as server:
        researcher = LLMResearcher(make_client(_config(server.url, provider)), TASK)
        _check_proposal(researcher.propose(_context()))
    ((path, body, headers),) = server.requests
    headers = {k.lower(): v for k, v in headers.items()}
    text = json.dumps(body)
    assert "recall drops with more pairs" in text and "class Mixer(nnx.Module)" in text
    assert _schema_asked(provider, body)  # "auto" asks for the schema first
    assert '"code": the complete candidate file' in _prompt(provider, body)
    if provider == "openai":
        assert path == "/chat/completions" and headers["authorization"] == f"Bearer {KEY}"
        assert body["messages"][0]["role"] == "system"
        schema = body["response_format"]["json_schema"]["schema"]
    else:
        assert path.endswith("models/test-model:generateContent")
        assert headers["x-goog-api-key"] == KEY
        schema = body["generationConfig"]["responseJsonSchema"]
    assert schema["required"] == ["name", "motivation", "idea_origins", "code"]
    assert researcher.name.startswith("llm-researcher:")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_text_mode_asks_for_a_fenced_block_and_no_schema(provider):
    with _replying(provider, [(200, PROPOSAL)]) as server:
        client = make_client(_config(server.url, provider, structured_output="text"))
        _check_proposal(LLMResearcher(client, TASK).propose(_context()))
    body = server.requests[0][1]
    assert not _schema_asked(provider, body)
    assert "in one ```python block" in _prompt(provider, body)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_analyser_and_judge_read_schema_replies(provider):
    analysis = {"report": "conv helped", "problem_summary": "long contexts", "lesson": ""}
    replies = [(200, json.dumps(analysis)), (200, _verdict(7, "sound"))]
    with _replying(provider, replies) as server:
        client = make_client(_config(server.url, provider))
        result = LLMAnalyser(client, TASK).analyse(_record(), None, [])
        score = LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])
    assert (result.report, result.problem_summary, result.lesson) == (
        "conv helped", "long contexts", None)  # fmt: skip
    assert score[0] == 7.0 and score[1].startswith("sound\n")
    assert sub_scores(score[1]) == {"performance": 6.0, "innovation": 4.0, "complexity": 8.0}
    assert sub_scores("an offline judge's rationale") == {}
    assert all(_schema_asked(provider, body) for _, body, _ in server.requests)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_refused_reply_is_asked_again_saying_why(provider):
    sink = MemorySink()
    replies = [(200, "I would rather not."), (200, '{"score": 42}'), (200, _verdict(3))]
    with _replying(provider, replies) as server:
        client = make_client(_config(server.url, provider), sink)
        judge = LLMJudge(client, TASK)
        assert judge.judge(_record(), nearest_similarity=0.2, population=[])[0] == 3.0
    prompts = [_prompt(provider, body) for _, body, _ in server.requests]
    assert "refused" not in prompts[0]
    assert "Your previous reply was refused: the reply's JSON does not parse" in prompts[1]
    assert "score must be a number in [1, 10], got 42" in prompts[2]
    assert [(r.attempt, r.role, r.error is None) for r in sink.records] == [
        (1, "judge", False), (2, "judge", False), (3, "judge", True)]  # fmt: skip
    assert (
        sink.records[0].error.startswith("refused: ")
        and len({r.call_id for r in sink.records}) == 1
    )
    assert sink.records[0].reply == "I would rather not."


def test_a_cut_off_reply_says_so():
    cut = _chat("openai", '{"score": 4, "rati')
    cut["choices"][0]["finish_reason"] = "length"
    with _replying("openai", [Reply(200, cut), (200, _verdict(4, ""))]) as server:
        judge = LLMJudge(make_client(_config(server.url)), TASK)
        assert judge.judge(_record(), nearest_similarity=0.2, population=[])[0] == 4.0
    assert "(the reply ended with length)" in _prompt("openai", server.requests[1][1])


def test_unusable_replies_fail_clearly_after_the_retries():
    replies = [(200, "I would rather not."), (200, "no code here")]
    replies += [(200, _verdict(42, "wow"))] * 2
    with _replying("openai", replies) as server:
        client = make_client(_config(server.url, reply_retries=1))
        with pytest.raises(ReplyRefused, match=r"JSON does not parse.*\(2 replies"):
            LLMResearcher(client, TASK).propose(_context())
        assert LLMResearcher(client, TASK).revise("x", "error") is None  # gives up, no crash
        with pytest.raises(ReplyRefused, match=r"score must be a number in \[1, 10\]"):
            LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])
        assert len(server.requests) == 6
    with pytest.raises(LLMError, match=r"no ```python code block"):
        extract_code("just prose")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_garbage_and_truncated_bodies_are_retried(provider):
    whole = json.dumps(_chat(provider, f"```python\n{GOOD}```")).encode()
    replies = [Reply(200, b"<html>garbage"), Reply(200, whole, truncate=True),
               Reply(200, whole)]  # fmt: skip
    with _replying(provider, replies) as server:
        client = make_client(_config(server.url, provider))
        assert LLMResearcher(client, TASK).revise("old code", "stage finite failed") == GOOD
    assert len(server.requests) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_retry_after_is_honoured(provider):
    busy = Reply(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"})
    with _replying(provider, [busy, (200, _verdict(5, "ok"))]) as server:
        client = make_client(_config(server.url, provider))
        assert LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])
    first, second = server.times
    assert second - first >= 0.95  # not the 0.01 s backoff


def test_retry_after_takes_seconds_or_an_http_date():
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) is None
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:50 GMT", now=now) == 30.0
    assert retry_after_seconds("Tue, 14 Nov 2023 22:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon") is None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_server_errors_are_retried_then_unavailable(provider):
    boom = Reply(500, {"error": {"message": "boom: the GPU fell over"}})
    with _replying(provider, [boom] * 3) as server:
        client = make_client(_config(server.url, provider, max_retries=2))
        with pytest.raises(LLMUnavailable, match=r"HTTP 500.*boom: the GPU fell over.*3 requests"):
            LLMResearcher(client, TASK).propose(_context())
    assert len(server.requests) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_rejected_request_keeps_the_servers_words(provider):
    too_long = Reply(400, {"error": {"message": "maximum context length exceeded"}})
    with _replying(provider, [too_long] * 2) as server:
        client = make_client(_config(server.url, provider, structured_output="json_schema"))
        with pytest.raises(LLMError, match="maximum context length exceeded") as error:
            LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])
        assert not isinstance(error.value, (LLMUnavailable, ReplyRefused))
        assert len(server.requests) == 1  # not retried
        server.respond = lambda path, body: too_long
        auto = make_client(_config(server.url, provider))  # asks once more in free text
        for _ in range(2):
            with pytest.raises(LLMError, match="maximum context length exceeded"):
                LLMJudge(auto, TASK).judge(_record(), nearest_similarity=0.2, population=[])
        asked = [_schema_asked(provider, body) for _, body, _ in server.requests[1:]]
        assert asked == [True, False, True, False]  # free text did no better: schemas stay
        denied = Reply(401, {"error": {"message": "API key not valid"}})
        server.respond = lambda path, body: denied
        with pytest.raises(LLMUnavailable, match="API key not valid"):
            LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_auto_falls_back_to_free_text_where_schemas_are_rejected(provider):
    def respond(path, body):
        if _schema_asked(provider, body):
            return Reply(400, {"error": {"message": "response_format is not supported"}})
        return 200, _chat(provider, f"```json\n{_verdict(6, 'fine')}\n```")

    log = []
    with serve(respond) as server:
        judge = LLMJudge(make_client(_config(server.url, provider), log=log.append), TASK)
        for _ in range(2):
            assert judge.judge(_record(), nearest_similarity=0.2, population=[])[0] == 6.0
    assert [_schema_asked(provider, body) for _, body, _ in server.requests] == [
        True, False, False]  # fmt: skip
    assert any("response_format is not supported" in line for line in log)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_hang_is_bounded_by_the_roles_timeout(provider):
    with serve(lambda path, body: Reply(hang=True)) as server:
        config = _config(server.url, provider, timeout_seconds=60.0, max_retries=1,
                         roles={"judge": {"timeout_seconds": 0.3}})  # fmt: skip
        judge = LLMJudge(make_client(config), TASK)
        started = time.monotonic()
        with pytest.raises(LLMUnavailable, match=r"no answer.*2 requests"):
            judge.judge(_record(), nearest_similarity=0.2, population=[])
    assert time.monotonic() - started < 5 and len(server.requests) == 2


def test_connection_refused_is_unavailable():
    client = make_client(_config("http://127.0.0.1:9/v1", max_retries=1))
    with pytest.raises(LLMUnavailable, match=r"no answer"):
        LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_calls_are_accounted_and_recorded(provider):
    sink, log = MemorySink(), []
    reply = _chat(provider, _verdict(5, "ok"), usage=(1200, 300))
    with serve(lambda path, body: (200, reply)) as server:
        priced = _config(server.url, provider, prices=[("test-model", 2.0, 10.0)],
                         roles={"judge": {"temperature": 0.1}})  # fmt: skip
        for config in (priced, _config(server.url, provider, prices=())):
            judge = LLMJudge(make_client(config, sink, log.append), TASK)
            for _ in range(2):
                judge.judge(_record(), nearest_similarity=0.2, population=[])
    first, _, unpriced, _ = sink.records
    assert (first.tokens_in, first.tokens_out) == (1200, 300)
    assert first.cost_usd == pytest.approx((1200 * 2.0 + 300 * 10.0) / 1e6)
    assert unpriced.cost_usd == 0.0 and unpriced.tokens_in == 1200
    assert sum("no price for 'test-model'" in line for line in log) == 1  # warned once
    assert (first.role, first.provider, first.model, first.attempt) == (
        "judge", provider, "test-model", 1)  # fmt: skip
    assert first.system.startswith("You are the judge") and "for performance" in first.prompt
    assert first.reply == _verdict(5, "ok") and first.error is None
    assert first.latency_seconds > 0 and first.structured and first.started_at > 1e9
    body = server.requests[0][1]
    temperature = body.get("temperature", body.get("generationConfig", {}).get("temperature"))
    assert temperature == pytest.approx(0.1)  # the judge's own


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_api_key_is_never_recorded_or_raised(provider):
    def echo(path, body):
        return Reply(500, {"error": {"message": f"bad request; headers: Bearer {KEY}"}})

    sink, log = MemorySink(), []
    with serve(echo) as server:
        client = make_client(_config(server.url, provider, max_retries=1), sink, log.append)
        with pytest.raises(LLMUnavailable) as error:
            LLMJudge(client, TASK).judge(_record(), nearest_similarity=0.2, population=[])
    assert len(sink.records) == 2 and log
    seen = [str(error.value), repr(error.value), *log] + [repr(r) for r in sink.records]
    assert all(KEY not in text for text in seen) and "[api key]" in str(error.value)
    assert error.value.__cause__ is None and error.value.__context__ is None  # no SDK error


def test_missing_key_is_named(monkeypatch):
    monkeypatch.delenv("TEST_LLM_KEY", raising=False)
    with pytest.raises(LLMUnavailable, match=r"\$TEST_LLM_KEY"):
        make_client(LLMConfig(provider="openai", api_key_env="TEST_LLM_KEY"))
    assert make_client(LLMConfig(provider="openai", api_key_env="")).name == "openai:gemini-2.5-pro"


def test_role_settings_override_the_llm_wide_ones_from_the_command_line():
    config = complete_config({"llm": {"timeout_seconds": 30.0}})
    config.llm.roles.judge.temperature = 0.2  # what --config.llm.roles.judge.temperature does
    llm = from_config_dict(config).llm
    judge, researcher = llm.role("judge"), llm.role("researcher")
    assert (judge.temperature, judge.timeout_seconds) == (0.2, 30.0)
    assert (researcher.temperature, researcher.timeout_seconds) == (0.7, 30.0)
    with pytest.raises(ValueError, match="structured_output"):
        LLMConfig(structured_output="xml")
    with pytest.raises(ValueError, match="prices"):
        LLMConfig(prices=(("m", -1.0, 2.0),))


def test_controller_records_bad_llm_replies_as_rejections(tmp_path):
    replies = [(200, _verdict(5, "a baseline"))]  # judges deltanet
    replies += [(200, "no usable reply")] * 9
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


# -- edit modes and the context the prompts carry ------------------------------------------------

BASELINE = TASK.baselines()["deltanet"]
# A baseline parent as the controller stores it: its registry class, and its grammar design.
BASELINE_RECORD = _record(code=BASELINE.source, design=BASELINE.design, analysis="Recall fades.",
                          metrics={"eval": {"heldout": {"loss": 0.3, "accuracy": 0.5},
                                            "mqar_kv8": {"accuracy": 0.9}}})  # fmt: skip
OLD = "        o = o * jax.lax.rsqrt(jnp.mean(o * o, axis=-1, keepdims=True) + 1e-6)\n"
NEW = OLD.replace("1e-6", "1e-5")
EDITS = f"<<<<<<< SEARCH\n{OLD}=======\n{NEW}>>>>>>> REPLACE\n"


def test_a_baseline_parent_is_shown_as_a_valid_candidate_file():
    source = TASK.candidate_source(BASELINE_RECORD)
    assert "asi_jax" not in source and check_source(source, TASK.policy) == []
    assert grammar.design_from_source(source).to_json() == BASELINE.design
    child = _record(code=GOOD)
    assert TASK.candidate_source(child) == GOOD  # a candidate's own file is shown as it is
    prompt = research_prompt(_context(parent=BASELINE_RECORD, references=[child]), TASK)
    assert source.rstrip() in prompt and GOOD.rstrip() in prompt and "asi_jax" not in prompt
    assert "Recall fades." in prompt and 'recall {"8": 0.9}' in prompt


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("free_text", [False, True], ids=["schema", "free-text"])
def test_a_diff_proposal_applies_to_the_parents_file(provider, free_text):
    if free_text:
        reply = f"```json\n{json.dumps(FIELDS)}\n```\nThe edits:\n{EDITS}"
    else:
        reply = json.dumps({**FIELDS, "edits": EDITS})
    with _replying(provider, [(200, reply)]) as server:
        client = make_client(_config(server.url, provider))
        proposal = LLMResearcher(client, TASK).propose(_context(parent=BASELINE_RECORD,
                                                                mode="diff"))  # fmt: skip
    parent = TASK.candidate_source(BASELINE_RECORD)
    assert proposal.mode == "diff" and proposal.name == "gated-delta-conv"
    assert proposal.code == parent.replace(OLD, NEW)
    assert check_source(proposal.code, MIXER) == []
    ((_, body, _),) = server.requests
    prompt = _prompt(provider, body)
    assert parent.rstrip() in prompt and "<<<<<<< SEARCH" in prompt
    assert "written as edits to the parent's file" in prompt


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_diff_that_does_not_apply_is_asked_again_saying_why(provider):
    wrong = EDITS.replace(OLD, OLD.replace("1e-6", "1e-7"))
    replies = [(200, json.dumps({**FIELDS, "edits": wrong})),
               (200, json.dumps({**FIELDS, "edits": EDITS}))]  # fmt: skip
    with _replying(provider, replies) as server:
        client = make_client(_config(server.url, provider))
        proposal = LLMResearcher(client, TASK).propose(_context(parent=BASELINE_RECORD,
                                                                mode="diff"))  # fmt: skip
    assert "1e-5" in proposal.code
    first, second = (_prompt(provider, body) for _, body, _ in server.requests)
    assert "refused" not in first
    assert ("Your previous reply was refused: the edits do not apply to the parent's file: "
            "block 1's SEARCH text") in second and "is not in the file" in second  # fmt: skip


def test_a_crossover_shows_both_parents():
    other = _record(id=2, name="other-parent", code=GOOD, motivation="A second idea.")
    context = _context(parent=BASELINE_RECORD, second_parent=other, mode="crossover")
    with _replying("openai", [(200, PROPOSAL_JSON)]) as server:
        proposal = LLMResearcher(make_client(_config(server.url)), TASK).propose(context)
    assert proposal.mode == "crossover" and proposal.code == GOOD
    prompt = _prompt("openai", server.requests[0][1])
    assert "First parent: deltanet" in prompt and "Second parent: other-parent" in prompt
    assert TASK.candidate_source(BASELINE_RECORD).rstrip() in prompt and GOOD.rstrip() in prompt
    assert "combines the strengths of the two parents" in prompt
    with pytest.raises(ValueError, match="second_parent"):
        _context(mode="crossover")
    with pytest.raises(ValueError, match="mode"):
        _context(mode="rewrite")


def test_offline_researchers_take_any_mode_and_write_whole_files():
    researcher, _, _ = TASK.offline_agents()
    proposal = researcher.propose(_context(parent=BASELINE_RECORD, mode="diff"))
    assert proposal.mode == "full" and check_source(proposal.code, MIXER) == []


def test_the_analyser_reads_the_diff_and_the_loss_curve():
    analysis = {"report": "eps", "problem_summary": "p", "lesson": "l"}
    child = _record(
        id=2,
        name="child",
        parent_id=1,
        code=TASK.candidate_source(BASELINE_RECORD).replace(OLD, NEW),
        metrics={"eval": {}, "curve": [{"step": 10 * i, "loss": 5.0 - i / 10} for i in range(40)]},
    )
    with _replying("openai", [(200, json.dumps(analysis))] * 2) as server:
        analyser = LLMAnalyser(make_client(_config(server.url)), TASK)
        analyser.analyse(child, BASELINE_RECORD, [])
        analyser.analyse(_record(metrics={"final_train": {"loss": 2.5}, "steps": 7}), None, [])
    first, second = (_prompt("openai", body) for _, body, _ in server.requests)
    assert "--- deltanet.py\n+++ child.py\n" in first
    assert "-        o = o * jax.lax.rsqrt(jnp.mean(o * o, axis=-1, keepdims=True) + 1e-6)" in first
    assert "+        o = o * jax.lax.rsqrt(jnp.mean(o * o, axis=-1, keepdims=True) + 1e-5)" in first
    assert "Training loss (step: loss):\n  0: 5.0000\n" in first and "  390: 1.1000" in first
    assert first.count("\n  ") >= 12 and "  10: " not in first  # 12 points of 40
    assert "Analysis of the parent:\nRecall fades." in first
    assert "no loss curve recorded; after 7 steps {'loss': 2.5}" in second


def test_the_judge_sees_the_baselines_figures():
    baseline = _record(id=3, name="gated_deltanet", loss=0.25, benchmark=0.91, fitness=None)
    with _replying("openai", [(200, _verdict(8, "better recall"))]) as server:
        judge = LLMJudge(make_client(_config(server.url)), TASK)
        score, rationale = judge.judge(_record(id=4, name="cand", code=GOOD),
                                       nearest_similarity=0.3, population=[],
                                       baselines=[BASELINE_RECORD, baseline])  # fmt: skip
    assert score == 8.0 and sub_scores(rationale)["complexity"] == 8.0
    prompt = _prompt("openai", server.requests[0][1])
    assert "- gated_deltanet: loss 0.2500, recall 0.910" in prompt
    assert '- deltanet: loss 0.3000, recall 0.800, fitness 1.500; recall {"8": 0.9}' in prompt
    assert GOOD.rstrip() in prompt and "innovation" in prompt and "complexity" in prompt
