"""Downstream benchmarks: our scorer agrees with lm-evaluation-harness driving the same
checkpoint through the asi-jax adapter; padding does not change log-likelihoods; acc_norm is
length-normalised; bad data fails clearly; the trainer, the script and the fitness use them.

The fixtures in tests/data/downstream are a handful of made-up documents per task in the field
layout of each task's Hugging Face dataset."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_testing import tiny_dict

from asi_jax.candidates import engineer
from asi_jax.candidates.sandbox import SandboxResult
from asi_jax.data.tokenizers import ByteTokenizer
from asi_jax.evals.checkpoint import downstream_scorer, evaluate_downstream, format_downstream
from asi_jax.evals.downstream import (
    TASKS,
    DownstreamConfig,
    DownstreamDataError,
    Scorer,
    read_examples,
    score_examples,
)
from asi_jax.evals.sweep import format_table
from asi_jax.tasks import get_task
from asi_jax.train.config import ExperimentConfig, complete, from_config_dict
from asi_jax.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "data" / "downstream"
BENCHMARKS = tuple(t for t in TASKS if (FIXTURES / f"{t}.jsonl").is_file())
EVALS = {
    "benchmarks": list(BENCHMARKS),
    "data_dir": str(FIXTURES),
    "max_examples": 0,
    "batch_size": 8,
    "max_length": 64,
}  # fmt: skip  (64: BoolQ truncates, pages roll)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny byte-level model trained for a few steps, scored on every fixture task."""
    workdir = tmp_path_factory.mktemp("downstream") / "run"
    config = from_config_dict({**tiny_dict(steps=10, checkpoint_every=10), "evals": EVALS})
    train(config, workdir, log=lambda _: None)
    return workdir


def _evals(**changes) -> DownstreamConfig:
    return DownstreamConfig(**{**EVALS, "benchmarks": BENCHMARKS, **changes})


def test_a_trained_run_scores_its_benchmarks_and_the_fitness_reads_their_mean(run_dir):
    result = json.loads((run_dir / "result.json").read_text())
    downstream = result["eval"]["downstream"]
    assert set(downstream["benchmarks"]) == set(BENCHMARKS)
    arc = downstream["benchmarks"]["arc_challenge"]
    assert arc["accuracy"] == arc["acc_norm"] and arc["examples"] == 5
    assert math.isfinite(downstream["benchmarks"]["wikitext"]["bits_per_byte"])
    assert "accuracy" not in downstream["benchmarks"]["wikitext"]  # a perplexity task
    accuracies = [v["accuracy"] for v in downstream["benchmarks"].values() if "accuracy" in v]
    assert downstream["accuracy"] == pytest.approx(np.mean(accuracies))
    figures = get_task("linear_attention").figures(result)
    assert figures.benchmark == pytest.approx(downstream["accuracy"])
    assert figures.loss == result["eval"]["heldout"]["loss"]
    assert set(figures.details["downstream"]) == set(BENCHMARKS) - {"wikitext"}
    assert "downstream acc" in format_table([{**result, "mixer": "deltanet"}])


@pytest.mark.slow  # lm_eval's start-up and 9 tasks through the adapter: 1-1.5 min
def test_lm_eval_through_the_adapter_agrees_with_our_scorer(run_dir, tmp_path, monkeypatch):
    for name, value in (("HF_DATASETS_OFFLINE", "1"), ("HF_HUB_OFFLINE", "1"),
                        ("HF_HOME", str(tmp_path / "hf"))):  # fmt: skip
        monkeypatch.setenv(name, value)
    lm_eval = pytest.importorskip("lm_eval")
    from lm_eval.tasks import TaskManager

    from asi_jax.evals.lm_eval_adapter import LOCAL_SUFFIX, write_local_tasks

    # The trainer scored the benchmarks at the end of the run; lm_eval restores its checkpoint.
    ours = json.loads((run_dir / "result.json").read_text())["eval"]["downstream"]["benchmarks"]
    names = write_local_tasks(FIXTURES, tmp_path / "tasks", BENCHMARKS)
    out = lm_eval.simple_evaluate(
        model="asi-jax", model_args={"workdir": str(run_dir), "step": 10, "max_length": 64,
                                     "batch_size": 8},
        tasks=names, task_manager=TaskManager(include_path=str(tmp_path / "tasks")),
        num_fewshot=0, bootstrap_iters=0, log_samples=True,
    )  # fmt: skip
    for name in names:
        task = name.removesuffix(LOCAL_SUFFIX)
        theirs = {k.split(",")[0]: v for k, v in out["results"][name].items()
                  if k.endswith(",none") and "stderr" not in k}  # fmt: skip
        assert theirs, name
        for metric, value in theirs.items():
            assert ours[task][metric] == pytest.approx(value, rel=1e-5), (task, metric)
        # The requests themselves: our adapter's (context, continuation) pairs are the YAML's.
        examples = read_examples(FIXTURES / f"{task}.jsonl", task)
        for sample in out["samples"][name]:
            pairs = examples[sample["doc_id"]].pairs
            if TASKS[task].kind == "rolling":
                assert [a[0] for a in sample["arguments"]] == [pairs[0][1]]
            else:
                assert [tuple(a[:2]) for a in sample["arguments"]] == list(pairs), task


def test_padding_and_batching_do_not_change_loglikelihoods(run_dir):
    single, _ = downstream_scorer(run_dir, _evals(batch_size=1, max_length=128))
    batched = Scorer(single.score, single.tokenizer, batch_size=8, max_length=128)
    pairs = [p for t in ("piqa", "winogrande")
             for e in read_examples(FIXTURES / f"{t}.jsonl", t) for p in e.pairs]  # fmt: skip
    pairs.append(("x", " a much longer continuation that pads every other row of its batch"))
    one = np.array([ll for ll, _ in single.loglikelihood(pairs)])
    padded = np.array([ll for ll, _ in batched.loglikelihood(pairs)])
    np.testing.assert_allclose(padded, one, rtol=1e-5, atol=1e-4)
    assert [g for _, g in single.loglikelihood(pairs)] == [
        g for _, g in batched.loglikelihood(pairs)
    ]


def _stub_score(batch):
    """Log-likelihood -sqrt(scored tokens): longer continuations are less likely in total but
    more likely per character."""
    n = batch["mask"].sum(-1)
    return {"logprob": -np.sqrt(n), "greedy": n == 1}


def test_acc_norm_divides_by_the_choice_length_and_acc_does_not(tmp_path):
    docs = [{"goal": f"goal {i}", "sol1": "short", "sol2": "a much longer solution",
             "label": 1} for i in range(3)]  # fmt: skip
    path = tmp_path / "piqa.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    scorer = Scorer(_stub_score, ByteTokenizer(), batch_size=2, max_length=64)
    metrics = score_examples("piqa", read_examples(path, "piqa"), scorer)
    assert metrics == {"acc": 0.0, "acc_norm": 1.0}


def test_requests_are_encoded_and_windowed_as_the_harness_does():
    pytest.importorskip("lm_eval")
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    scorer = Scorer(_stub_score, ByteTokenizer(), max_length=16)
    assert scorer.encode_pair("Answer: ", "yes") == (list(b"Answer:"), list(b" yes"))
    assert scorer.encode_pair("", "yes") == ([10], list(b"yes"))  # the newline prefix
    for length in (1, 15, 16, 17, 40, 48):
        text = "abcdefghij" * 5
        text = text[:length]
        theirs = [make_disjoint_window(w) for w in get_rolling_token_windows(
            list(text.encode()), prefix_token=10, max_seq_len=16, context_len=1)]  # fmt: skip
        assert scorer.rolling_windows(text) == theirs, length

    from asi_jax.evals.lm_eval_adapter import AsiJaxLM

    with pytest.raises(NotImplementedError, match="log-likelihoods only"):
        AsiJaxLM(scorer=scorer).generate_until([])
    with pytest.raises(ValueError, match="model_args workdir="):
        AsiJaxLM()


def test_bad_benchmark_data_fails_with_a_clear_message(tmp_path):
    bad = tmp_path / "arc_easy.jsonl"
    bad.write_text('{"question": "q", "choices": {"text": ["a"], "label": ["A"]}}\n')
    with pytest.raises(
        DownstreamDataError, match=r"arc_easy\.jsonl:1: .*needs the field 'answerKey'"
    ):
        read_examples(bad, "arc_easy")
    bad.write_text(
        '{"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "B"}\n'
    )
    with pytest.raises(DownstreamDataError, match=r":1: not a arc_easy document"):
        read_examples(bad, "arc_easy")
    bad.write_text("\n[1, 2]\n")
    with pytest.raises(DownstreamDataError, match=r":2: .*expected a JSON object"):
        read_examples(bad, "arc_easy")
    bad.write_text("{not json\n")
    with pytest.raises(DownstreamDataError, match=r":1: not a arc_easy document"):
        read_examples(bad, "arc_easy")
    bad.write_text("")
    with pytest.raises(DownstreamDataError, match="no arc_easy documents"):
        read_examples(bad, "arc_easy")
    with pytest.raises(ValueError, match=r"unknown \['arc'\]"):
        DownstreamConfig(benchmarks=("arc",), data_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"needs evals\.data_dir"):
        DownstreamConfig(benchmarks=("piqa",))
    with pytest.raises(FileNotFoundError, match=r"benchmark 'piqa': no file"):
        DownstreamConfig(benchmarks=("piqa",), data_dir=str(tmp_path)).check_files()
    with pytest.raises(ValueError, match=r"need text data"):
        from_config_dict({**tiny_dict(), "data": {"kind": "mqar"}, "evals": EVALS})
    missing = {**EVALS, "data_dir": str(tmp_path)}
    with pytest.raises(FileNotFoundError, match="no file"):  # before any training
        train(from_config_dict({**tiny_dict(), "evals": missing}), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_every_evals_field_can_be_overridden_from_the_command_line():
    config = complete(ExperimentConfig, {})
    assert set(config.evals) == {"benchmarks", "data_dir", "max_examples", "batch_size",
                                 "max_length"}  # fmt: skip
    assert from_config_dict(config).evals == DownstreamConfig()


def test_the_sandbox_may_read_the_benchmark_data(tmp_path, monkeypatch):
    seen = {}

    def worker(request, folder, limits, *, read_only_paths=(), **_):
        seen["paths"] = tuple(read_only_paths)
        return SandboxResult(False, None, "stub", 0.0, "")

    monkeypatch.setattr(engineer, "run_worker", worker)
    config = engineer.EngineerConfig(train=from_config_dict({**tiny_dict(), "evals": EVALS}))
    engineer.run_candidate("", config, tmp_path, baseline="deltanet")
    assert str(FIXTURES) in seen["paths"]


@pytest.mark.slow
def test_evaluate_downstream_script(run_dir):
    script = [sys.executable, str(ROOT / "scripts" / "evaluate_downstream.py"),
              f"--workdir={run_dir}", f"--data_dir={FIXTURES}", "--max_length=64"]  # fmt: skip
    done = subprocess.run([*script, "--benchmarks=arc_easy,wikitext"], capture_output=True,
                          text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "deltanet at step 10" in done.stdout and "bits_per_byte" in done.stdout
    saved = json.loads((run_dir / "evals" / "downstream_step10.json").read_text())
    assert set(saved["downstream"]["benchmarks"]) == {"arc_easy", "wikitext"}
    assert format_downstream(saved).splitlines()[0] == "deltanet at step 10"
    bad = subprocess.run([*script, "--benchmarks=arc"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "unknown ['arc']" in bad.stderr


def test_evaluate_downstream_writes_its_result(run_dir):
    result = evaluate_downstream(run_dir, _evals(benchmarks=("piqa",)))
    saved = json.loads((run_dir / "evals" / f"downstream_step{result['step']}.json").read_text())
    assert saved["downstream"] == result["downstream"] and saved["asked"]["max_length"] == 64
    with pytest.raises(ValueError, match="no benchmarks"):
        evaluate_downstream(run_dir, DownstreamConfig())
