"""Held-out evaluation: the figures' arithmetic, and a saved checkpoint re-evaluated after
the run gives the trainer's own final figures, at any numbers of MQAR pairs."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from train_testing import tiny_dict, write_config_file

from asi_jax.evals.checkpoint import evaluate_run, format_result
from asi_jax.models.mixers import MIXERS
from asi_jax.train.config import from_config_dict
from asi_jax.train.heldout import evaluate_set
from asi_jax.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def _batch(b: int = 2, t: int = 4) -> dict[str, np.ndarray]:
    zeros = np.zeros((b, t), np.int32)
    return {"inputs": zeros, "targets": zeros, "mask": np.ones((b, t), np.float32)}


def test_evaluate_set_sums_over_batches_before_dividing():
    sums = iter([{"loss": 6.0, "correct": 1.0, "count": 3.0},
                 {"loss": 2.0, "correct": 3.0, "count": 1.0}])  # fmt: skip
    result = evaluate_set(lambda batch: next(sums), [_batch(), _batch()], byte_level=True)
    assert result["loss"] == pytest.approx(2.0) and result["accuracy"] == pytest.approx(1.0)
    assert result["bits_per_token"] == pytest.approx(2.0 / math.log(2))
    assert result["bits_per_byte"] == result["bits_per_token"]
    assert result["tokens_per_second"] > 0  # the second batch, timed


def test_evaluate_set_reports_only_exact_figures():
    one = {"loss": jnp.float32(1.0), "correct": jnp.float32(0.0), "count": jnp.float32(2.0)}
    result = evaluate_set(lambda batch: one, [_batch()], byte_level=False)
    assert "bits_per_byte" not in result  # a tokenizer's tokens are not bytes
    assert "tokens_per_second" not in result  # one batch: only its compile would be timed


def _mqar_run(tmp_path: Path) -> Path:
    config = tiny_dict("gated_deltanet", steps=20, checkpoint_every=10)
    config["model"]["vocab_size"] = 32
    config["data"] = {"kind": "mqar", "batch_size": 8, "seq_len": 24, "eval_examples": 16,
                      "eval_kv_pairs": [2],
                      "mqar": {"vocab_size": 32, "seq_len": 24, "num_kv_pairs": 2}}  # fmt: skip
    run_dir = tmp_path / "run"
    train(from_config_dict(config), run_dir, log=lambda _: None)
    return run_dir


@pytest.mark.slow  # trains MQAR and byte runs, then re-evaluates both: 2-4 min
def test_a_checkpoint_reevaluated_gives_the_runs_own_figures(tmp_path):
    run_dir = _mqar_run(tmp_path)
    final = json.loads((run_dir / "result.json").read_text())["eval"]
    result = evaluate_run(run_dir, kv_pairs=[2, 5])
    assert result["step"] == 20 and result["mixer"] == "gated_deltanet"
    for name in ("heldout", "mqar_kv2"):
        for key in ("loss", "accuracy"):
            assert result["eval"][name][key] == pytest.approx(final[name][key], rel=1e-5)
    assert set(result["eval"]) == {"heldout", "mqar_kv2", "mqar_kv5"}  # asked for, not trained
    saved = json.loads((run_dir / "evals" / "step20.json").read_text())
    assert saved["eval"] == result["eval"] and saved["asked"]["kv_pairs"] == [2, 5]
    assert saved["environment"]["packages"]["jax"]

    earlier = evaluate_run(run_dir, step=10, kv_pairs=[])
    assert set(earlier["eval"]) == {"heldout"}
    assert earlier["eval"]["heldout"]["loss"] != result["eval"]["heldout"]["loss"]
    assert "gated_deltanet at step 10" in format_result(earlier)


@pytest.mark.slow
def test_bad_requests_fail_with_a_clear_message(tmp_path):
    run_dir = _mqar_run(tmp_path)
    with pytest.raises(ValueError, match=r"no checkpoint at step 7; it has \[10, 20\]"):
        evaluate_run(run_dir, step=7)
    with pytest.raises(ValueError, match=r"seq_len \(24\) must be at least 4 \* num_kv_pairs"):
        evaluate_run(run_dir, kv_pairs=[9])
    with pytest.raises(ValueError, match=r"data\.eval_examples must be >= 1, got 0"):
        evaluate_run(run_dir, eval_examples=0)
    with pytest.raises(FileNotFoundError, match=r"has no run\.json"):
        evaluate_run(tmp_path)
    bare = tmp_path / "no_checkpoints"  # a run with checkpoint_every = 0
    bare.mkdir()
    (bare / "run.json").write_text((run_dir / "run.json").read_text())
    with pytest.raises(FileNotFoundError, match="has no checkpoint"):
        evaluate_run(bare)
    assert not (bare / "checkpoints").exists()
    record = json.loads((run_dir / "run.json").read_text())
    record["config"]["mixer"] = str(tmp_path / "planted.py")  # a run folder is not trusted code
    (run_dir / "run.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"not executed on run\.json"):
        evaluate_run(run_dir)
    result = evaluate_run(run_dir, mixer=MIXERS["gated_deltanet"], kv_pairs=[])
    assert result["eval"]["heldout"]["loss"] > 0


@pytest.mark.slow
def test_evaluate_script_on_a_trained_run(tmp_path):
    config = write_config_file(tmp_path / "config.py", tiny_dict(steps=5, checkpoint_every=5))
    run_dir = tmp_path / "run"
    script = [sys.executable, str(ROOT / "scripts" / "train.py"), f"--config={config}",
              f"--workdir={run_dir}"]  # fmt: skip
    subprocess.run(script, check=True, capture_output=True, cwd=ROOT)
    evaluate = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), f"--workdir={run_dir}"]
    done = subprocess.run([*evaluate, "--eval_examples=24"], capture_output=True, text=True,
                          cwd=ROOT)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "deltanet at step 5" in done.stdout and "bits/token" in done.stdout
    assert (
        json.loads((run_dir / "evals" / "step5.json").read_text())["asked"]["eval_examples"] == 24
    )
    bad = subprocess.run([*evaluate, "--step=3"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "no checkpoint at step 3" in bad.stderr
