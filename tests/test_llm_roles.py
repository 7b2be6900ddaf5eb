"""Roles on models of their own: the endpoints each role asks (Gemini's judge on the other
tier by default), the summariser, and an evolution against two models on 127.0.0.1 whose
researcher model a bandit picks per proposal, rewarded in the database and replayed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers import serve
from test_evolution_control import StubWorker
from test_llm_evolution import KEY, Model

from asi_jax.agents.base import Analysis, Record
from asi_jax.agents.factory import make_agents
from asi_jax.agents.llm import LLMConfig, MemorySink, RoleConfig, RolesConfig
from asi_jax.candidates import engineer
from asi_jax.evolution import bandit
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import DATABASE, Controller
from asi_jax.evolution.db import Database
from asi_jax.evolution.replay import replay_run
from asi_jax.tasks.linear_attention import LinearAttentionTask

TASK = LinearAttentionTask()


def _models(config: LLMConfig) -> dict[str, list[str]]:
    roles = ("researcher", "reviser", "analyser", "judge", "summariser")
    return {role: [e.model for e in config.endpoints(role)] for role in roles}


def test_on_gemini_the_judge_analyser_and_summariser_default_to_the_other_tier():
    assert _models(LLMConfig()) == {
        "researcher": ["gemini-2.5-pro"], "reviser": ["gemini-2.5-pro"],
        "analyser": ["gemini-2.5-flash"], "judge": ["gemini-2.5-flash"],
        "summariser": ["gemini-2.5-flash"],
    }  # fmt: skip
    assert _models(LLMConfig(model="gemini-2.5-flash"))["judge"] == ["gemini-2.5-pro"]
    assert {m for ms in _models(LLMConfig(review_model="")).values() for m in ms} == {
        "gemini-2.5-pro"}  # fmt: skip
    # A server of one's own (vLLM) serves one model: every role asks it.
    local = LLMConfig(provider="openai", model="qwen", base_url="http://127.0.0.1:1/v1")
    assert {m for ms in _models(local).values() for m in ms} == {"qwen"}


def test_roles_name_endpoints_from_the_command_line():
    config = from_config_dict({"llm": {
        "models": [["local", "openai", "qwen", "http://127.0.0.1:8000/v1", ""]],
        "roles": {"researcher": {"models": ["local", "main"]}, "judge": {"models": ["main"]}},
        "bandit": "thompson"}}).llm  # fmt: skip
    assert [e.name for e in config.endpoints("researcher")] == ["local", "main"]
    assert config.endpoints("judge")[0].model == "gemini-2.5-pro"
    local = config.at(config.endpoint("local"))
    assert (local.provider, local.model, local.base_url, local.api_key_env) == (
        "openai", "qwen", "http://127.0.0.1:8000/v1", "")  # fmt: skip


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"roles": RolesConfig(judge=RoleConfig(models=("nope",)))}, "no endpoint 'nope'"),
        ({"roles": RolesConfig(judge=RoleConfig(models=("main", "review")))}, "only the "),
        ({"models": (("main", "openai", "m", "", ""),)}, "a name other than"),
        ({"models": (("a", "openai", "m", "", ""), ("a", "openai", "n", "", ""))}, "differ"),
        ({"models": (("a", "claude", "m", "", ""),)}, "'gemini' or 'openai'"),
        ({"models": (("a", "openai", "m"),)}, "entries are"),
        ({"bandit": "greedy"}, "llm.bandit"),
        ({"bandit_epsilon_usd": 0.0}, "bandit_epsilon_usd"),
    ],
)
def test_bad_endpoints_and_bandits_are_refused(values, words):
    with pytest.raises(ValueError, match=words):
        LLMConfig(**values)


def _record() -> Record:
    return Record(id=3, name="c", parent_id=None, motivation="m", code="x = 1\n", design=None,
                  status="evaluated", loss=1.0, benchmark=0.5, fitness=0.5)  # fmt: skip


def test_the_summariser_condenses_the_analysis_or_keeps_the_analysers_summary(monkeypatch):
    monkeypatch.setenv("TEST_ROLES_KEY", KEY)
    replies = iter([{"problem_summary": "recall fades with many pairs"}, {"nothing": 1}])

    def respond(path, body):
        text = json.dumps(next(replies, {}))
        return 200, {"choices": [{"message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}]}  # fmt: skip

    with serve(respond) as server:
        llm = LLMConfig(provider="openai", model="m", base_url=server.url,
                        api_key_env="TEST_ROLES_KEY", reply_retries=0)  # fmt: skip
        sink = MemorySink()
        agents = make_agents("llm", llm, TASK, log=lambda line: None, calls=sink)
        analysis = Analysis("the report", "the analyser's summary", None)
        first = agents.summariser.call("summarise", _record(), analysis)
        second = agents.summariser.call("summarise", _record(), analysis)
    assert first == ("recall fades with many pairs", "llm-summariser:openai:m")
    assert second == ("the analyser's summary", "analyser-summary")
    assert [r.role for r in sink.records] == ["summariser", "summariser"]
    assert "the report" in server.requests[0][1]["messages"][1]["content"]
    offline = make_agents("offline", llm, TASK, log=lambda line: None)
    assert offline.summariser.call("summarise", _record(), analysis)[0] == analysis.problem_summary
    assert offline.researchers == ()


def _two_models():
    """One fake model's replies, told apart by the model asked: model-b names its proposals
    its own way and counts its tokens like model-a (at its own prices)."""
    model = Model()

    def reply(path, body):
        answer = model.reply(path, body)
        if body["model"] == "model-b":
            message = answer[1]["choices"][0]["message"]
            if body["messages"][0]["content"].startswith("You are the researcher"):
                message["content"] = json.dumps({**json.loads(message["content"]),
                                                 "name": f"b-eps-{model.proposals}"})  # fmt: skip
            answer[1]["usage"] = {"prompt_tokens": 1000, "completion_tokens": 200}
        return answer

    return reply


def _config(a_url: str, b_url: str, candidates: int):
    """The researcher on "main" (model-a at a_url) and "beta" (model-b at b_url); the judge
    and analyser on "critic" (judge-model at b_url); the summariser on "main"."""
    llm = {"provider": "openai", "model": "model-a", "base_url": a_url,
           "api_key_env": "TEST_EVOLUTION_KEY", "retry_seconds": 0.01,
           "prices": [["model-a", 1.0, 4.0], ["model-b", 0.1, 0.4]],
           "models": [["beta", "openai", "model-b", b_url, "TEST_EVOLUTION_KEY"],
                      ["critic", "openai", "judge-model", b_url, "TEST_EVOLUTION_KEY"]],
           "roles": {"researcher": {"models": ["main", "beta"]},
                     "judge": {"models": ["critic"]}, "analyser": {"models": ["critic"]}},
           "bandit": "ucb"}  # fmt: skip
    return from_config_dict({
        "agents": "llm", "seed": 2, "workers": 1, "baselines": ["deltanet", "gated_deltanet"],
        "budget": {"candidates": candidates}, "verify": {"promote": 0},
        "limits": {"wall_seconds": 60.0, "cpu_seconds": 60, "reference_multiple": 4.0},
        "edit_modes": [["full", 1.0]], "allow_llm_code_without_os_sandbox": True, "llm": llm,
    })  # fmt: skip


def test_an_evolution_on_two_models_pulls_both_stores_rewards_routes_roles_and_replays(
    tmp_path, monkeypatch
):
    """The researcher asks "main" (server A) or "beta" (server B, another model answering
    with other epsilons), as UCB1 picks; the judge and analyser ask "critic" on server B;
    every pull is stored with its reward, the leaderboard shows the arms, and a replay
    makes the same choices."""
    monkeypatch.setenv("TEST_EVOLUTION_KEY", KEY)
    monkeypatch.setattr(engineer, "run_worker", StubWorker())
    reply = _two_models()
    lines: list[str] = []
    with serve(reply) as a, serve(reply) as b:
        config = _config(a.url, b.url, candidates=5)
        recorded = tmp_path / "recorded"
        with Controller(config, recorded, log=lines.append) as controller:
            board = controller.run()
            pulls = controller.db.pulls()
            candidates = {c["id"]: c for c in controller.db.candidates()}
            calls = controller.db.calls()
        to_a = [body for _, body, _ in a.requests]
        to_b = [body for _, body, _ in b.requests]

    def role(body):
        return body["messages"][0]["content"].removeprefix("You are the ").split()[0]

    # Routing: the judge and analyser ask "critic" (server B); the summariser, "main".
    assert {(role(x), x["model"]) for x in to_a} == {("researcher", "model-a"),
                                                    ("summariser", "model-a")}  # fmt: skip
    assert {(role(x), x["model"]) for x in to_b} == {
        ("researcher", "model-b"),
        ("judge", "judge-model"),
        ("analyser", "judge-model"),
    }
    assert {c["model"] for c in calls if c["role"] == "judge"} == {"judge-model"}
    # Both arms pulled (each untried arm first), every pull stored and rewarded once scored.
    assert [p["arm"] for p in pulls[:2]] == ["main", "beta"]
    assert len(pulls) == 5 and all(p["outcome"] == "scored" for p in pulls)
    for p in pulls:
        c = candidates[p["candidate_id"]]
        assert (
            c["researcher"]
            == p["researcher"]
            == {"main": "llm-researcher:openai:model-a", "beta": "llm-researcher:openai:model-b"}[
                p["arm"]
            ]
        )
        assert c["name"].startswith("b-") == (p["arm"] == "beta")
        # its researcher calls' dollars: 1000 tokens in and 200 out at the arm's prices
        usd = (1000 * 1.0 + 200 * 4.0 if p["arm"] == "main" else 1000 * 0.1 + 200 * 0.4) / 1e6
        assert p["cost_usd"] == pytest.approx(usd)
        assert p["reward"] >= 0.0
    scored = {r["name"]: r for r in board["explore"]["ranking"]}
    for p in pulls:
        c = candidates[p["candidate_id"]]
        gain = scored[c["name"]]["fitness"] - scored[candidates[c["parent_id"]]["name"]]["fitness"]
        assert p["reward"] == pytest.approx(max(0.0, gain) / (p["cost_usd"] + 0.01))
    arms = {x["arm"]: x for x in board["llm"]["bandit"]["arms"]}
    assert arms.keys() == {"main", "beta"} and board["llm"]["bandit"]["kind"] == "ucb"
    assert sum(x["pulls"] for x in arms.values()) == 5
    assert arms == {x["arm"]: x for x in bandit.board(["main", "beta"], pulls, "ucb")["arms"]}
    assert board["agents"]["researchers"] == {
        "main": "llm-researcher:openai:model-a",
        "beta": "llm-researcher:openai:model-b",
    }
    assert board["agents"]["judge"] == "llm-judge:openai:judge-model"

    # Replayed with no server: the bandit makes the same choices and earns the same rewards.
    monkeypatch.setattr(engineer, "run_worker", StubWorker())
    report = replay_run(recorded, tmp_path / "replayed", log=lambda line: None)
    assert report.differences == [] and report.replies_unused == 0
    assert [p[1] for p in report.decisions["bandit"]] == [p["arm"] for p in pulls]


def _pulls(workdir: Path) -> list[tuple]:
    db = Database(workdir / DATABASE)
    try:
        return [(p["proposal"], p["arm"], p["outcome"], p["cost_usd"], p["reward"])
                for p in db.pulls()]  # fmt: skip
    finally:
        db.close()


def test_a_resumed_run_rebuilds_the_bandit_from_its_rows(tmp_path, monkeypatch):
    """Three proposals, then a resume to five, choose as one run of five does."""
    monkeypatch.setenv("TEST_EVOLUTION_KEY", KEY)
    monkeypatch.setattr(engineer, "run_worker", StubWorker())
    reply = _two_models()
    with serve(reply) as a, serve(reply) as b:
        for candidates in (3, 5):
            with Controller(_config(a.url, b.url, candidates), tmp_path / "resumed",
                            log=lambda line: None) as controller:  # fmt: skip
                controller.run()
    reply = _two_models()
    with (
        serve(reply) as a,
        serve(reply) as b,
        Controller(_config(a.url, b.url, 5), tmp_path / "whole", log=lambda line: None) as c,
    ):
        c.run()
    resumed, whole = _pulls(tmp_path / "resumed"), _pulls(tmp_path / "whole")
    assert len(whole) == 5 and {p[1] for p in whole} == {"main", "beta"}
    assert resumed == whole
