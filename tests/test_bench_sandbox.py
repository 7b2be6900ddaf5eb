"""The sandbox benchmark measures what it names (figures go to BENCHMARKS.md, not asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asi_jax.candidates import bench
from asi_jax.tasks.linear_attention.checker import CheckConfig

ROOT = Path(__file__).resolve().parents[1]


def test_startup_times_every_layer_this_machine_has():
    result = bench.startup(repeats=1)
    assert result["layers"]["complete"]  # CI's machine has both layers (see test_sandbox_wall)
    assert set(result["seconds"]) == {
        "python, directly", "python, under bubblewrap", "worker, no OS layer",
        "worker, Landlock only", "worker, namespaces and Landlock",
    }  # fmt: skip
    assert all(seconds > 0 for seconds in result["seconds"].values())


@pytest.mark.slow  # the checker on a real candidate, timed: 40-80 s
def test_check_cost_is_measured_on_an_accepted_candidate(tmp_path):
    small = CheckConfig(d_model=32, num_heads=2, batch_sizes=(2,), seq_lens=(1, 19),
                        cost_seq_len=64)  # fmt: skip
    result = bench.check(ROOT / "tests" / "candidates" / "good_gated_delta.py", small, repeats=1)
    assert result["seconds"] > 0 and result["figures"]["params"] > 0


def test_script_refuses_a_missing_candidate(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_sandbox.py"),
                           "--candidate=no_such.py"], capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "bench_sandbox.py: error: --candidate: no such file 'no_such.py'"
    ]
