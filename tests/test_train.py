"""Training: every baseline learns, configs fail clearly, the monitor stops bad runs, and a
killed run resumes to exactly the uninterrupted run's losses."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import pytest
from flax import nnx
from train_testing import losses, tiny, tiny_dict, write_config_file

import pallas_kernels as pk
from asi_jax.models.mixers import MIXERS
from asi_jax.train.config import MonitorConfig, from_config_dict
from asi_jax.train.monitor import QualityMonitor
from asi_jax.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("mixer", sorted(MIXERS))
def test_each_baseline_trains_and_its_loss_falls(mixer, tmp_path):
    result = train(tiny(mixer), tmp_path, log=lambda _: None)
    assert result["status"] == "completed" and result["steps"] == 25
    logged = losses(tmp_path)
    assert logged[25] < logged[5] - 0.5, logged
    assert result["eval"]["heldout"]["loss"] < math.log(256) - 1.0
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["config"]["mixer"] == mixer and record["environment"]["packages"]["jax"]
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved["params"] == result["params"]


def test_kernel_impl_reaches_every_layer_for_the_run_only(tmp_path):
    result = train(tiny("deltanet", kernel_impl="recurrent"), tmp_path, log=lambda _: None)
    assert result["status"] == "completed"
    record = json.loads((tmp_path / "run.json").read_text())
    assert set(record["kernels"].values()) == {"recurrent"}
    assert record["config"]["train"]["kernel_impl"] == "recurrent"
    assert pk.resolve_impl("auto", "delta_rule") == "chunk"  # restored after the run
    with pytest.raises(ValueError, match=r"train\.kernel_impl must be one of"):
        tiny(kernel_impl="triton")


def test_bf16_compute_trains(tmp_path):
    result = train(tiny("gated_deltanet", compute_dtype="bfloat16"), tmp_path, log=lambda _: None)
    logged = losses(tmp_path)
    assert result["status"] == "completed" and logged[25] < logged[5] - 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"trian": {}}, r"unknown config keys \['trian'\]"),
        ({"train": {"stpes": 3}}, r"unknown config keys \['train.stpes'\]"),
        ({"train": {"steps": "ten"}}, "train.steps must be int, got str 'ten'"),
        ({"model": {"vocab_size": 64}}, r"model.vocab_size \(64\) must equal the data's"),
        ({"train": {"compute_dtype": "fp8"}}, "train.compute_dtype must be"),
        ({"mixer": "mamba9"}, "neither a baseline"),
    ],
)
def test_malformed_configs_fail_with_a_clear_message(change, message, tmp_path):
    config = tiny_dict()
    for key, value in change.items():
        config[key] = {**config[key], **value} if isinstance(value, dict) and value else value
    with pytest.raises((ValueError, TypeError), match=message):
        train(from_config_dict(config), tmp_path, log=lambda _: None)


def test_script_reports_a_bad_config_as_a_usage_error(tmp_path):
    config = write_config_file(tmp_path / "bad.py", {**tiny_dict(), "trian": {}})
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train.py"), f"--config={config}",
         f"--workdir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode != 0
    assert "unknown config keys ['trian']" in result.stderr


def test_monitor_reasons():
    monitor = QualityMonitor(MonitorConfig(min_loss=0.5, max_step_seconds=1.0, patience=2))
    assert monitor.check(1, float("nan"), 0.1).startswith("non-finite loss nan at step 1")
    assert "abnormally low" in monitor.check(2, 0.1, 0.1)
    assert monitor.check(3, 2.0, 5.0) is None  # one slow step is tolerated
    assert "over the 1 s budget for 2 logged steps" in monitor.check(4, 2.0, 5.0)


def test_monitor_stops_a_run_whose_loss_is_too_low(tmp_path):
    config = from_config_dict({**tiny_dict(), "monitor": {"min_loss": 100.0}})
    result = train(config, tmp_path, log=lambda _: None)
    assert result["status"] == "stopped" and result["steps"] == 5
    assert "abnormally low" in result["stop_reason"]


class _PeeksAhead(nnx.Module):
    """Adds the next position's input: a model trained with it reads the token it predicts."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        return self.proj(x + jnp.roll(x, -1, axis=1))


def test_a_trained_model_that_reads_the_future_is_stopped_not_scored(tmp_path):
    result = train(tiny(steps=5), tmp_path, mixer=_PeeksAhead, log=lambda _: None)
    assert result["status"] == "stopped"
    assert result["stop_reason"].startswith(
        "the trained model reads the future: the summed held-out loss over positions 0..0 went from"
    )
    honest = train(tiny(steps=5), tmp_path / "honest", log=lambda _: None)  # deltanet
    assert honest["status"] == "completed" and honest["stop_reason"] is None


def test_kill_and_resume_reproduces_the_uninterrupted_run(tmp_path):
    config = tiny_dict(steps=300, log_every=5, checkpoint_every=10)
    config_file = write_config_file(tmp_path / "config.py", config)

    def command(workdir: Path) -> list[str]:
        script = str(ROOT / "scripts" / "train.py")
        return [sys.executable, script, f"--config={config_file}", f"--workdir={workdir}"]

    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    subprocess.run(command(reference), check=True, capture_output=True, cwd=ROOT)

    process = subprocess.Popen(command(resumed), cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        done = resumed / "metrics.jsonl"
        if done.exists() and max(losses(resumed), default=0) >= 25:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted_at = max(losses(resumed))
    assert interrupted_at < 300

    second = subprocess.run(command(resumed), check=True, capture_output=True, text=True,
                            cwd=ROOT)  # fmt: skip
    assert "resumed from step" in second.stdout
    assert losses(resumed) == losses(reference)

    def figures(run: Path) -> dict:  # what the model computes; throughput is the machine's
        evals = json.loads((run / "result.json").read_text())["eval"]
        return {name: {k: v for k, v in values.items() if k != "tokens_per_second"}
                for name, values in evals.items()}  # fmt: skip

    assert figures(resumed) == figures(reference)
