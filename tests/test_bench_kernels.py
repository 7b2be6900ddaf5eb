"""scripts/bench_kernels.py and the benchmark library behind it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pallas_kernels import benchmark, hardware

ROOT = Path(__file__).resolve().parents[1]


def test_script_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "k.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench_kernels.py"),
            "--ops=gla,delta_rule",
            "--impls=recurrent,chunk",
            "--batch=1",
            "--seq_len=40",
            "--heads=1",
            "--key_dim=8",
            "--value_dim=8",
            "--chunk_size=16",
            "--iters=2",
            "--warmup=0",
            f"--output={out}",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert "GFLOP/s" in result.stdout
    record = json.loads(out.read_text())
    assert record["environment"]["packages"]["jax"]
    assert record["flags"]["seq_len"] == 40
    rows = {(t["op"], t["mode"], t["impl"]) for t in record["timings"]}
    assert len(rows) == 2 * 2 * 2
    assert all(t["seconds"] > 0 and t["flops_per_second"] > 0 for t in record["timings"])


def test_script_rejects_an_unknown_op(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_kernels.py"), "--ops=mamba3"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode != 0
    assert "unknown ops ['mamba3']" in result.stderr


def test_nominal_flops_scale_with_chunks_and_backward():
    shape = benchmark.Shape(1, 128, 1, 64, 64)
    fwd = benchmark.nominal_flops("linear_attention", shape, backward=False)
    # two chunks of 64: scores and scores @ v (2 * 64^3 each), q @ S and k^T v (2 * 64^3 each)
    assert fwd == 2 * (4 * 2 * 64**3)
    assert benchmark.nominal_flops("linear_attention", shape, backward=True) == 3 * fwd
    assert benchmark.nominal_flops("delta_rule", shape, backward=False) > fwd


def test_run_rejects_unknown_impl():
    with pytest.raises(ValueError, match="unknown impls"):
        benchmark.run(["gla"], ["triton"], ["fwd"], benchmark.Shape(1, 8, 1, 4, 4), "float32")


def test_table_compares_with_fla_and_the_roofline():
    shape = benchmark.Shape(1, 64, 1, 64, 64)
    rows = [
        benchmark.make_timing("delta_rule", impl, "fwd", shape, "bfloat16", seconds, seconds)
        for impl, seconds in (("chunk", 0.004), ("pallas", 0.002), ("fla", 0.001))
    ]
    table = benchmark.format_table(rows, peak=hardware.peak_flops("NVIDIA H100 80GB HBM3"))
    pallas_row = next(line for line in table.splitlines() if " pallas " in line)
    assert "vs fla" in table and "% peak" in table
    assert "2.00x" in pallas_row.split()[-2]  # pallas takes twice fla's time
    assert hardware.peak_flops("cpu") is None


def test_check_measures_each_impl_against_the_recurrence():
    timings = benchmark.run(
        ["linear_attention"], ["chunk"], ["fwd", "fwd_bwd"],
        benchmark.Shape(2, 32, 1, 8, 8), "float32", chunk_size=16, warmup=0, iters=1, check=True,
    )  # fmt: skip
    assert all(t.relative_error is not None and t.relative_error < 1e-5 for t in timings)
    assert "rel err" in benchmark.format_table(timings)


def test_relative_error_exposes_a_wrong_output_and_non_finite_values():
    ref = np.ones((1, 4, 2))
    wrong = np.concatenate([ref, ref], axis=0) * 1.1  # cut to the reference's batch of 1
    assert benchmark.relative_error([wrong], [ref]) == pytest.approx(0.1)
    assert benchmark.relative_error([ref * np.nan], [ref]) == float("inf")
