"""Human steering (scripts/steer.py, asi_jax/evolution/steering.py), each command's effect
measured on tiny runs of the real controller with the sandbox stubbed (test_evolution_control):
bans and requirements reject proposals before compute, ideas reach the researchers, pause
holds new evaluations, approval gates verification, malformed files are set aside, and
commands given while no run is going apply when it resumes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_evolution_control import StubWorker, _config

from asi_jax.agents.base import Note, Record, ResearchContext, Rule
from asi_jax.agents.llm import research_prompt
from asi_jax.candidates import engineer
from asi_jax.evolution import steering
from asi_jax.evolution.controller import Controller
from asi_jax.report import page, source
from asi_jax.tasks import get_task
from asi_jax.tasks.linear_attention.researcher import OfflineResearcher

ROOT = Path(__file__).resolve().parents[1]
TASK = get_task("linear_attention")
OPTIONS = steering.options_of(TASK)


def _steered(**overrides):
    return _config(**{"verify": {"promote": 0}, "budget": {"candidates": 3}, **overrides})


def _run(workdir, monkeypatch, config, stub=None, log=None):
    monkeypatch.setattr(engineer, "run_worker", stub or StubWorker())
    with Controller(config, workdir, log=log or (lambda line: None)) as c:
        board = c.run()
        return board, c.db.candidates(), c.db.query("SELECT * FROM rejections"), {
            r["id"]: r for r in c.db.steering()}  # fmt: skip


def _proposed(candidates):
    return [c for c in candidates if c["kind"] == "candidate"]


def test_commands_given_while_stopped_apply_on_resume_and_bans_keep_proposals_out(
        tmp_path, monkeypatch):  # fmt: skip
    board, before, _, _ = _run(tmp_path, monkeypatch, _steered(budget={"candidates": 2}))
    assert board["run"]["state"] == "finished"
    # Given while no run is going: the linear-attention rule, and the delta kernel's call.
    component = steering.submit(tmp_path, "ban", {"component": "rule", "value": "additive"},
                                "ana", OPTIONS)  # fmt: skip
    pattern = steering.submit(tmp_path, "ban", {"pattern": r"pallas_kernels\.delta_rule\("},
                              "bo")  # fmt: skip
    lines = []
    board, after, rejections, rows = _run(tmp_path, monkeypatch,
                                          _steered(budget={"candidates": 5}),
                                          log=lines.append)  # fmt: skip
    assert board["run"]["state"] == "finished"
    assert rows[component["id"]]["status"] == rows[pattern["id"]]["status"] == "active"
    assert rows[component["id"]]["author"] == "ana"
    assert rows[component["id"]]["applied_at"] > max(c["created_at"] for c in before)
    assert not list((tmp_path / steering.INBOX).glob("*.json"))
    assert len(list((tmp_path / steering.DONE).glob("*.json"))) == 2
    later = _proposed(after)[len(_proposed(before)) :]
    assert len(later) == 3
    for c in later:  # neither ban is broken by any later candidate
        assert c["design"]["rule"] != "additive"
        assert "pallas_kernels.delta_rule(" not in c["code"]
    # The grammar researcher does not draw a banned option; the pattern (which it cannot
    # read) rejected proposals before any compute, the reason naming the command.
    named = [r for r in rejections if f"#{pattern['id']}" in r["reason"]]
    assert named and all("by bo" in r["reason"] for r in named)
    assert sorted(rows[pattern["id"]]["effect"]["rejected"]) == sorted(r["name"] for r in named)
    assert not {r["name"] for r in named} & {c["name"] for c in after}
    assert any(f"rejected {r['name']}: steering ban #{pattern['id']}" in line
               for r in named for line in lines)  # fmt: skip


def test_a_required_pattern_rejects_the_proposals_missing_it(tmp_path, monkeypatch):
    # An output gate, which the grammar researcher (reading no patterns) draws now and then.
    required = steering.submit(tmp_path, "require", {"pattern": r"self\.gate\("}, "ana")
    config = _steered(workers=1, max_proposal_tries=30)  # one worker: a reproducible run
    _, candidates, rejections, rows = _run(tmp_path, monkeypatch, config)
    assert len(_proposed(candidates)) == 3
    assert all(re.search(r"self\.gate\(", c["code"])
               for c in _proposed(candidates))  # fmt: skip
    missing = [r for r in rejections if f"require #{required['id']}" in r["reason"]]
    assert missing and all("(missing)" in r["reason"] for r in missing)
    assert rows[required["id"]]["effect"]["rejected"] == [r["name"] for r in missing]


def test_an_idea_reaches_the_researchers_until_enough_candidates_had_it(tmp_path, monkeypatch):
    idea = steering.submit(tmp_path, "idea", {"text": "add an output gate with a sigmoid"}, "ana")
    seen = []
    monkeypatch.setattr(
        OfflineResearcher,
        "propose",
        lambda self, context, propose=(OfflineResearcher.propose): (
            seen.append(context.notes) or propose(self, context)
        ),
    )
    _, candidates, _, rows = _run(tmp_path, monkeypatch,
                                  _steered(steering={"idea_proposals": 2}))  # fmt: skip
    note = Note(idea["id"], "ana", "add an output gate with a sigmoid")
    assert seen[:2] == [[note], [note]] and seen[-1] == []  # expired after 2 candidates
    row = rows[idea["id"]]
    assert row["status"] == "expired"
    proposed = [s["name"] for s in row["effect"]["seen"] if s["outcome"] == "proposed"]
    assert proposed == [c["name"] for c in _proposed(candidates)[:2]]
    # The grammar researcher weighs the option the note names, and says where it came from.
    assert any(c["design"]["output_gate"] == "sigmoid" and any(
        o["origin"] == "steering" and f"#{idea['id']}" in o["evidence"]
        for o in c["idea_origins"]) for c in _proposed(candidates)[:2])  # fmt: skip


def test_the_language_models_prompt_leads_with_the_steering():
    parent = Record(1, "deltanet", None, "Baseline.", "class Mixer: ...", None, "evaluated",
                    0.3, 0.8, 1.5)  # fmt: skip
    context = ResearchContext(
        parent=parent, references=[], cognition=[], problem_summary="weak recall",
        lessons=[], component_effects={}, known_designs=frozenset(), seed=0,
        notes=[Note("ab12", "ana", "try a sliding window")],
        rules=[Rule("cd34", "bo", "ban", "conv", "qkv"), Rule("ef56", "bo", "require",
                                                              pattern="jax.nn.silu")],
    )  # fmt: skip
    prompt = research_prompt(context, TASK)
    head = prompt.split("## Parent")[0]
    assert "Idea from ana (#ab12)" in head and "try a sliding window" in head
    assert "Banned: conv=qkv (#cd34, by bo)" in head
    assert "Required: code matching /jax.nn.silu/ (#ef56, by bo)" in head
    assert "Steering" not in research_prompt(ResearchContext(
        parent=parent, references=[], cognition=[], problem_summary="", lessons=[],
        component_effects={}, known_designs=frozenset(), seed=0), TASK)  # fmt: skip


def _wait_for(condition, lines, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, lines[-10:]
        time.sleep(0.05)


def _in_thread(tmp_path, config, stub, lines):
    outcome = {}

    def run():
        try:
            with Controller(config, tmp_path, log=lines.append) as c:
                outcome["board"] = c.run()
        except BaseException as e:
            outcome["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_pause_holds_new_evaluations_and_resume_continues(tmp_path, monkeypatch):
    def pause_at_the_first_candidate(name, stage, call):
        if name not in ("deltanet", "linear_attention") and not paused:
            paused.append(steering.submit(tmp_path, "pause", {}, "ana"))
        return "ok"

    paused, lines = [], []
    stub = StubWorker(pause_at_the_first_candidate)
    monkeypatch.setattr(engineer, "run_worker", stub)
    config = _steered(budget={"candidates": 4}, steering={"poll_seconds": 0.05})
    thread, outcome = _in_thread(tmp_path, config, stub, lines)
    _wait_for(lambda: any("[explore] paused by ana" in line for line in lines), lines)
    started = len(stub.calls)
    time.sleep(1.0)  # the loop polls every 0.05 s: nothing starts
    assert len(stub.calls) == started and thread.is_alive()
    assert 3 <= started < 6  # the baselines and the candidates in flight finished
    steering.submit(tmp_path, "resume", {}, "bo")
    thread.join(60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert outcome["board"]["run"]["state"] == "finished"
    assert len(stub.calls) == 6  # 2 baselines, 4 candidates
    assert any(f"steering: #{paused[0]['id']} pause (by ana)" in line for line in lines)


def test_approval_gates_verification_and_a_veto_keeps_a_candidate_out(tmp_path, monkeypatch):
    lines, stub = [], StubWorker()
    monkeypatch.setattr(engineer, "run_worker", stub)
    config = _steered(verify={"promote": 2}, steering={"require_approval": True,
                                                       "poll_seconds": 0.05})  # fmt: skip
    thread, outcome = _in_thread(tmp_path, config, stub, lines)
    _wait_for(lambda: any("waiting for approval" in line for line in lines), lines)
    promoted = json.loads(re.search(r"\[verify\] promoted (\[.*\])", "\n".join(lines))[1]
                          .replace("'", '"'))  # fmt: skip
    approved, vetoed = promoted
    time.sleep(0.5)
    verified = lambda: {c["name"] for c in stub.calls if c["stage"] == "verify"}
    assert not verified() & set(promoted)  # the baselines verify, the candidates wait
    assert thread.is_alive()
    steering.submit(tmp_path, "approve", {"name": approved}, "ana")
    steering.submit(tmp_path, "veto", {"name": vetoed}, "bo")
    thread.join(60)
    assert "error" not in outcome, outcome
    assert approved in verified() and vetoed not in verified()
    board = outcome["board"]
    assert vetoed not in {r["name"] for r in board["verify"]["ranking"]}
    db = source.open_run(tmp_path)
    rows = {r["command"]: r for r in db.steering()}
    db.close()
    assert rows["veto"]["effect"]["did"] == "removed from verification before it started"
    assert rows["approve"]["effect"]["did"] == "approved: its verification may start"


def test_a_veto_before_promotion_keeps_the_candidate_out_without_approval(tmp_path, monkeypatch):
    monkeypatch.setattr(engineer, "run_worker", StubWorker())
    with Controller(_steered(verify={"promote": 1}), tmp_path, log=lambda line: None) as c:
        c.seed_baselines()
        c.run_stage("explore", proposing=True)
        ranked = [r.name for r in c.ranked("explore") if r.name not in c.config.baselines]
        veto = steering.submit(tmp_path, "veto", {"name": ranked[0]}, "ana")
        c.steering.ingest()
        c.promote()
        assert c.db.get_meta("verify_promoted") == [ranked[1]]  # the next best instead
        assert c.db.status(c.db.candidate_by_name(ranked[0])["id"], "verify") is None
        assert c.steering.rows[veto["id"]]["effect"]["did"] == "kept out of promotion"


def test_malformed_commands_are_set_aside_with_a_reason_and_the_run_goes_on(tmp_path,
                                                                          monkeypatch):  # fmt: skip
    inbox = tmp_path / steering.INBOX
    inbox.mkdir(parents=True)
    (inbox / "1-garbage.json").write_text("{not json")
    (inbox / "2-unknown.json").write_text(json.dumps(
        {"id": "u1", "author": "ana", "created_at": 1.0, "command": "explode",
         "arguments": {}}))  # fmt: skip
    (inbox / "3-component.json").write_text(json.dumps(
        {"id": "c1", "author": "ana", "created_at": 2.0, "command": "ban",
         "arguments": {"component": "colour", "value": "red"}}))  # fmt: skip
    (inbox / "4-withdraw.json").write_text(json.dumps(
        {"id": "w1", "author": "ana", "created_at": 3.0, "command": "withdraw",
         "arguments": {"id": "nothing"}}))  # fmt: skip
    lines = []
    board, candidates, _, rows = _run(tmp_path, monkeypatch, _steered(), log=lines.append)
    assert board["run"]["state"] == "finished" and len(_proposed(candidates)) == 3
    rejected = tmp_path / steering.REJECTED
    reasons = {p.name: p.read_text() for p in rejected.glob("*.reason")}
    assert "not a JSON command" in reasons["1-garbage.json.reason"]
    assert "unknown command 'explode'" in reasons["2-unknown.json.reason"]
    assert "'colour' is not a component of the task's grammar" in reasons["3-component.json.reason"]
    assert "no active idea, ban or requirement #nothing" in reasons["4-withdraw.json.reason"]
    assert {p.name for p in rejected.glob("*.json")} == {
        "1-garbage.json",
        "2-unknown.json",
        "3-component.json",
        "4-withdraw.json",
    }
    assert {r["status"] for r in rows.values()} == {"rejected"}  # each recorded, with why
    assert rows["1-garbage"]["command"] == "malformed" and rows["c1"]["author"] == "ana"
    assert sum("steering: rejected" in line for line in lines) == 4


def test_the_script_queues_lists_and_refuses_and_the_report_shows_it(tmp_path, monkeypatch):
    _run(tmp_path, monkeypatch, _steered(budget={"candidates": 1}))

    def steer(*args):
        return subprocess.run([sys.executable, str(ROOT / "scripts" / "steer.py"),
                               f"--workdir={tmp_path}", *args], capture_output=True,
                              text=True, timeout=120, cwd=ROOT)  # fmt: skip

    done = steer("ban", "conv=qkv", "--author=ana")
    assert done.returncode == 0, done.stderr
    assert "ban conv=qkv (by ana): queued" in done.stdout
    refused = steer("ban", "conv=sideways")
    assert refused.returncode == 2 and "'sideways' is not an option of conv" in refused.stderr
    assert len(list((tmp_path / steering.INBOX).glob("*.json"))) == 1  # nothing written
    _, _, _, rows = _run(tmp_path, monkeypatch, _steered(budget={"candidates": 2}))
    (ban,) = rows.values()
    listed = steer("list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(rf"{ban['id']}  active  ana  \S+  ban conv=qkv", listed.stdout)
    db = source.open_run(tmp_path)
    try:
        html = page.render(db, tmp_path)
    finally:
        db.close()
    section = html.split('<h2 id="steering">')[1].split("<h2")[0]
    assert ban["id"] in section and "ana" in section and "ban conv=qkv" in section
    assert "rejected 0 proposal(s)" in section and '<a href="#steering">' in html


@pytest.mark.parametrize(("command", "arguments", "message"), [
    ("ban", {"component": "conv"}, "takes component=value or --pattern=REGEX"),
    ("require", {"pattern": "("}, "is not a regular expression"),
    ("idea", {"text": "  "}, "text must be a non-empty string"),
    ("pause", {"now": "yes"}, "pause takes no ['now']"),
    ("approve", {}, "approve needs ['name']"),
    ("ban", {"component": "head_mix", "value": "true"}, "options are ['False', 'True']"),
])  # fmt: skip
def test_invalid_commands_are_refused_before_anything_is_written(tmp_path, command, arguments,
                                                                 message):  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        steering.submit(tmp_path, command, arguments, "ana", OPTIONS)
    assert not (tmp_path / steering.INBOX).exists()
