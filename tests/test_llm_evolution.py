"""The evolution loop with LLM agents against a model of our own on 127.0.0.1: every edit
mode, every request recorded (and no API key anywhere), outages that stop the run with the
right words, and a replay that reaches the same decisions with no server."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers import Reply, serve
from test_evolution_control import StubWorker

from asi_jax.candidates import engineer
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import Controller, EvolutionError
from asi_jax.evolution.replay import replay_run

KEY = "sk-evolution-test-key-9876543210"
_EPS = re.compile(r"(keepdims=True\) \+ )([0-9.e-]+)(\))")
MOTIVATIONS = [
    "Widen the normaliser's epsilon so that small keys stop exploding the delta update.",
    "A softer key normalisation floor keeps the state's eigenvalues bounded under noise.",
    "Borrow the second parent's stability trick: a larger floor under the rsqrt of the keys.",
    "Regularise the write strength indirectly by damping tiny key norms with more epsilon.",
    "Key statistics drift during training; a bigger epsilon stabilises the associative recall.",
    "Trade a little sharpness of retrieval for robustness by flattening small-norm keys.",
    "Mix both parents' normalisation choices into one mixer with a compromise epsilon.",
    "Numerical headroom in bfloat16 needs a larger epsilon in the l2 normalisation.",
]


class Model:
    """Answers like a model in the OpenAI wire format: researcher proposals in the mode the
    prompt asks for (each a new epsilon in the parent's key normalisation), analyses and
    judgements as JSON."""

    def __init__(self):
        self.proposals = 0
        self.lock = threading.Lock()
        self.hang = threading.Event()

    def reply(self, path: str, body: dict):
        if self.hang.is_set():
            return Reply(hang=True)
        system, prompt = body["messages"][0]["content"], body["messages"][1]["content"]
        if system.startswith("You are the analyser"):
            text = json.dumps(
                {
                    "report": "The epsilon moved the loss a little.",
                    "problem_summary": "recall fades as key-value pairs grow",
                    "lesson": "The key normaliser's floor matters at small norms.",
                }
            )
        elif system.startswith("You are the summariser"):
            text = json.dumps({"problem_summary": "recall fades as key-value pairs grow"})
        elif system.startswith("You are the judge"):
            text = json.dumps({"performance": 6, "innovation": 4, "complexity": 8, "score": 6,
                               "rationale": "a small, sound change"})  # fmt: skip
        else:
            text = self._proposal(prompt)
        return 200, {"choices": [{"message": {"role": "assistant", "content": text},
                                  "finish_reason": "stop"}],
                     "usage": {"prompt_tokens": 1000, "completion_tokens": 200,
                               "total_tokens": 1200}}  # fmt: skip

    def _proposal(self, prompt: str) -> str:
        with self.lock:
            self.proposals += 1
            n = self.proposals
        parent = prompt.split("```python\n", 1)[1].split("```", 1)[0]
        line = next(x for x in parent.splitlines() if _EPS.search(x))
        changed = _EPS.sub(lambda m: f"{m.group(1)}{1e-6 * (n + 2):.3g}{m.group(3)}", line)
        fields = {
            "name": f"eps-{n}",
            "motivation": MOTIVATIONS[(n - 1) % len(MOTIVATIONS)],
            "idea_origins": [{"idea": "epsilon", "origin": "original", "evidence": ""}],
        }
        if "written as edits to the parent's file" in prompt:
            fields["edits"] = (f"<<<<<<< SEARCH\n{line}\n=======\n{changed}\n"
                               ">>>>>>> REPLACE\n")  # fmt: skip
        else:
            fields["code"] = parent.replace(line, changed)
        return json.dumps(fields)


def _config(url: str, **overrides):
    values = {
        "agents": "llm", "seed": 2, "workers": 1, "baselines": ["deltanet", "gated_deltanet"],
        "budget": {"candidates": 6}, "verify": {"promote": 1, "seeds": 1},
        "limits": {"wall_seconds": 60.0, "cpu_seconds": 60, "reference_multiple": 4.0},
        "edit_modes": [["full", 1.0], ["diff", 1.0], ["crossover", 1.0]],
        "allow_llm_code_without_os_sandbox": True,
        "llm": {"provider": "openai", "model": "test-model", "base_url": url,
                "api_key_env": "TEST_EVOLUTION_KEY", "retry_seconds": 0.01,
                "prices": [["test-model", 1.0, 4.0]]},
    }  # fmt: skip
    return from_config_dict({**values, **overrides})


@pytest.fixture
def key(monkeypatch):
    monkeypatch.setenv("TEST_EVOLUTION_KEY", KEY)


def test_llm_evolution_uses_every_edit_mode_records_every_call_and_replays(
    tmp_path, monkeypatch, key
):
    monkeypatch.setattr(engineer, "run_worker", StubWorker())
    model, lines = Model(), []
    recorded = tmp_path / "recorded"
    with (
        serve(model.reply) as server,
        Controller(_config(server.url), recorded, log=lines.append) as controller,
    ):
        board = controller.run()
        requests = len(server.requests)
        candidates = [c for c in controller.db.candidates() if c["kind"] == "candidate"]
        calls = controller.db.calls()
    assert board["run"]["state"] == "finished"
    assert {c["edit_mode"] for c in candidates} == {"full", "diff", "crossover"}
    assert all(c["second_parent_id"] for c in candidates if c["edit_mode"] == "crossover")
    assert len(candidates) == 6 and len(calls) == requests
    assert {c["role"] for c in calls} == {"researcher", "analyser", "judge", "summariser"}
    by_role = {row["role"]: row for row in board["llm"]["calls"]}
    assert by_role["researcher"]["requests"] == sum(c["role"] == "researcher" for c in calls)
    assert board["llm"]["cost_usd"] == pytest.approx(len(calls) * (1000 * 1 + 200 * 4) / 1e6)
    # The key is nowhere: not in the database, the leaderboard, the logs or any file written.
    assert KEY not in "\n".join(lines)
    for path in recorded.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path

    # Replayed with no server (and no key): the same decisions.
    monkeypatch.delenv("TEST_EVOLUTION_KEY")
    monkeypatch.setattr(engineer, "run_worker", StubWorker())
    report = replay_run(recorded, tmp_path / "replayed", log=lambda line: None)
    assert report.differences == []
    assert report.replies_served == len(calls) and report.replies_unused == 0


def test_replay_of_a_run_that_was_not_recorded_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no recorded run"):
        replay_run(tmp_path / "nothing", tmp_path / "new")


def test_an_outage_pauses_then_stops_with_llm_unavailable_and_records_what_finished(
    tmp_path, monkeypatch, key
):
    """The model goes silent after the first proposal: evaluations still get recorded while
    the proposer waits, proposing pauses, and the run stops saying the model is unavailable
    (not 'not novel', not 'finished')."""
    monkeypatch.setattr(engineer, "run_worker", StubWorker())
    model, lines = Model(), []

    def reply(path, body):
        if model.proposals >= 1 and "You are the researcher" in body["messages"][0]["content"]:
            return 503, {"error": {"message": "overloaded"}}
        return model.reply(path, body)

    config = _config("", budget={"candidates": 20},
                     llm={"provider": "openai", "model": "test-model",
                          "api_key_env": "TEST_EVOLUTION_KEY", "retry_seconds": 0.01,
                          "max_retries": 1, "pause_after_failures": 2, "pause_seconds": 0.5,
                          "stop_after_failures": 3})  # fmt: skip
    with serve(reply) as server:
        config = from_config_dict(
            {
                **json.loads(json.dumps(_to_dict(config))),
                "llm": {**_to_dict(config)["llm"], "base_url": server.url},
            }
        )
        started = time.monotonic()
        with (
            pytest.raises(EvolutionError, match=r"LLM unavailable: .*503"),
            Controller(config, tmp_path, log=lines.append) as controller,
        ):
            controller.run()
    assert time.monotonic() - started < 60
    text = "\n".join(lines)
    assert "proposing paused for 0.5 s" in text and "not novel" not in text
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert board["run"]["state"] == "failed" and "LLM unavailable" in board["run"]["reason"]
    with sqlite3.connect(tmp_path / "evolution.sqlite") as db:
        finished = db.execute("SELECT COUNT(*) FROM evaluations WHERE stage = 'explore' AND "
                              "status = 'evaluated'").fetchone()[0]  # fmt: skip
        rejected = db.execute("SELECT COUNT(*) FROM rejections").fetchone()[0]
    assert finished == 3  # both baselines and the one proposal, all recorded
    assert rejected == 0  # an outage is not a rejection


def _to_dict(config):
    from asi_jax.train.config import to_dict

    return to_dict(config)
