"""The dry run: every stage's model and data pipeline built, priced, and nothing trained."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from asi_jax.evolution import plan
from asi_jax.evolution.config import from_config_dict

ROOT = Path(__file__).resolve().parents[1]


def _quickstart():
    sys.path.insert(0, str(ROOT / "configs"))
    import quickstart

    return from_config_dict(quickstart.get_config())


def test_plan_counts_parameters_tokens_and_evaluations_per_stage():
    config = _quickstart()
    explore, verify = plan.plan(config)
    assert explore.params == {"total": 106_848, "non_embedding": 102_752}
    assert explore.batch_shape == (32, 32) and explore.vocab_size == 64
    assert explore.tokens == 32 * 32 * 200 and verify.tokens == 32 * 32 * 400
    assert explore.evaluations == config.budget.candidates + 3
    assert verify.evaluations == (config.verify.promote + 3) * config.verify.seeds == 15
    assert verify.estimated_hours_per_evaluation == 2 * explore.estimated_hours_per_evaluation
    text = plan.describe([explore, verify])
    assert "106.85k parameters" in text and "H200-hours" in text and "5.6% MFU" in text


def test_verification_has_its_own_limits_when_set():
    config = from_config_dict({"baselines": ["deltanet"], "limits": {"wall_seconds": 60.0},
                               "verify": {"limits": {"wall_seconds": 7200.0}}})  # fmt: skip
    assert config.limits_of("explore").wall_seconds == 60.0
    assert config.limits_of("verify").wall_seconds == 7200.0
    assert from_config_dict({"baselines": ["deltanet"]}).limits_of("verify").wall_seconds == 600


def test_dry_run_prints_the_plan_and_touches_no_workdir(tmp_path):
    workdir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "scripts/evolve.py", "--config=configs/quickstart.py", "--dry_run",
         f"--workdir={workdir}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "[explore] model with deltanet" in result.stdout
    (stages,) = [json.loads(line)["dry_run"] for line in result.stdout.splitlines()
                 if line.startswith('{"dry_run"')]  # fmt: skip
    assert [s["stage"] for s in stages] == ["explore", "verify"]
    assert not workdir.exists()


def test_the_asi_arch_config_dry_runs_on_prepared_shards(tmp_path):
    """configs/evolve_asi_arch.py at full size: each stage's model built abstractly, one real
    batch read from shards made by prepare_data, the benchmarks found, the cost printed."""
    from asi_jax.data.prepare import PrepareConfig, prepare

    corpus = tmp_path / "corpus.jsonl"
    lines = [json.dumps({"text": f"document {i}: " + "linear attention keeps a state. " * 40})
             for i in range(200)]  # fmt: skip
    corpus.write_text("\n".join(lines) + "\n")
    prepare(PrepareConfig(inputs=(str(corpus),), output=str(tmp_path / "shards")),
            log=lambda _: None)  # fmt: skip
    benchmarks = ROOT / "tests" / "data" / "downstream"
    for variant in ("gpu", "pod"):
        result = subprocess.run(
            [sys.executable, "scripts/evolve.py", "--dry_run",
             f"--config=configs/evolve_asi_arch.py:{variant},{tmp_path / 'shards'},{benchmarks}"],
            capture_output=True, text=True, cwd=ROOT, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        (stages,) = [json.loads(line)["dry_run"] for line in result.stdout.splitlines()
                     if line.startswith('{"dry_run"')]  # fmt: skip
        explore, verify = stages
        assert explore["batch_shape"] == [64, 2048] and verify["batch_shape"] == [256, 2048]
        assert explore["tokens"] == 64 * 2048 * 7_630  # ~1.0B
        assert verify["tokens"] == 256 * 2048 * 28_610  # ~15.0B
        assert verify["params"]["total"] > 300e6 > 30e6 > explore["params"]["total"]
        assert explore["evaluations"] == 200 + 4 and verify["evaluations"] == (5 + 4) * 3
        assert "H200-hours" in result.stdout
    bad = subprocess.run(
        [sys.executable, "scripts/evolve.py", "--dry_run",
         f"--config=configs/evolve_asi_arch.py:gpu,{tmp_path / 'missing'}"],
        capture_output=True, text=True, cwd=ROOT, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "missing" in bad.stderr
