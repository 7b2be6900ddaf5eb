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


def test_a_block_sweep_runs_pallas_once_per_block_and_checks_each():
    blocks = [benchmark.parse_block("16:4:1"), benchmark.parse_block("32:8:2")]
    timings = benchmark.run(
        ["delta_rule"], ["chunk", "pallas"], ["fwd_bwd"], benchmark.Shape(1, 64, 1, 8, 8),
        "float32", blocks=blocks, warmup=0, iters=1, check=True,
    )  # fmt: skip
    assert [t.impl for t in timings] == ["chunk", "pallas 16/4/1", "pallas 32/8/2"]
    assert all(t.failure is None and t.relative_error < 1e-4 for t in timings)


@pytest.mark.parametrize("text", ["64:8", "64:8:x", "0:4:1"])
def test_a_malformed_block_is_refused(text):
    with pytest.raises(ValueError, match="block"):
        benchmark.parse_block(text)


def test_an_impl_that_fails_is_recorded_and_the_others_still_run(monkeypatch):
    real = benchmark.bench_jax

    def bench_jax(op, impl, *args, **kwargs):
        if impl == "pallas":
            raise RuntimeError("Shared memory size limit exceeded: requested 294912\ntraceback")
        return real(op, impl, *args, **kwargs)

    monkeypatch.setattr(benchmark, "bench_jax", bench_jax)
    timings = benchmark.run(
        ["linear_attention"], ["pallas", "chunk"], ["fwd"], benchmark.Shape(1, 32, 1, 8, 8),
        "float32", chunk_size=16, warmup=0, iters=1,
    )  # fmt: skip
    failed, ran = timings
    assert failed.failure == "RuntimeError: Shared memory size limit exceeded: requested 294912"
    assert np.isnan(failed.seconds) and ran.failure is None and ran.seconds > 0
    table = benchmark.format_table(timings)
    assert "fails: RuntimeError: Shared memory" in table and "1.00x" in table


def test_script_sweeps_blocks_and_refuses_a_bad_one(tmp_path):
    base = [sys.executable, str(ROOT / "scripts" / "bench_kernels.py"), "--ops=linear_attention"]
    base += ["--impls=pallas", "--modes=fwd", "--batch=1", "--seq_len=32", "--heads=1"]
    base += ["--key_dim=8", "--value_dim=8", "--iters=1", "--warmup=0", "--fla=no"]
    out = tmp_path / "k.json"
    run = subprocess.run(
        [*base, "--blocks=16:4:1", f"--output={out}"], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 0, run.stderr
    assert [t["impl"] for t in json.loads(out.read_text())["timings"]] == ["pallas 16/4/1"]
    bad = subprocess.run([*base, "--blocks=16:4"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode != 0 and "CHUNK:WARPS:STAGES" in bad.stderr
