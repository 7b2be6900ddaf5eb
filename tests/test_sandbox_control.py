"""Controlling a sandboxed worker from outside: cancellation kills it, running out of
time names the limit, and the engineer retries such an attempt at doubled limits."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from asi_jax.candidates.engineer import EngineerConfig, run_candidate
from asi_jax.candidates.sandbox import Cancelled, Limits, run_worker
from asi_jax.tasks.linear_attention.checker import CheckConfig

ROOT = Path(__file__).resolve().parents[1]
ENDLESS = (ROOT / "tests" / "candidates" / "endless_loop.py").read_text()
CHECK = CheckConfig(d_model=32, num_heads=2, seq_lens=(1, 19), cost_seq_len=128)


def _processes_in(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(proc / "cwd").resolve().is_relative_to(folder):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def _endless_request(folder: Path) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "candidate.py").write_text(ENDLESS)
    return {
        "job": "check",
        "task": "linear_attention",
        "check": dataclasses.asdict(CHECK),
        "train": None,
    }


def test_cancel_kills_the_worker_at_once_not_at_its_wall_limit(tmp_path):
    folder = tmp_path.resolve()
    cancel = threading.Event()
    threading.Timer(3.0, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        run_worker(_endless_request(folder), folder, Limits(wall_seconds=300), cancel=cancel)
    assert time.monotonic() - started < 60  # far below the 300 s it would otherwise run
    assert _processes_in(folder) == []  # killed, not orphaned


def test_running_out_of_wall_or_cpu_time_names_the_limit(tmp_path):
    folder = tmp_path.resolve()
    wall = run_worker(_endless_request(folder / "w"), folder / "w", Limits(wall_seconds=4))
    assert not wall.ok and wall.limit == "wall" and "timed out after 4 s" in wall.error
    cpu = run_worker(_endless_request(folder / "c"), folder / "c",
                     Limits(wall_seconds=120, cpu_seconds=6))  # fmt: skip
    assert not cpu.ok and cpu.limit == "cpu" and "SIGXCPU" in cpu.error
    assert _processes_in(folder) == []


def test_an_attempt_that_runs_out_of_time_is_retried_at_doubled_limits(tmp_path):
    config = EngineerConfig(check=CHECK, limits=Limits(wall_seconds=3, cpu_seconds=100),
                            limit_retries=1)  # fmt: skip
    result = run_candidate(ENDLESS, config, tmp_path)
    assert not result.ok and result.stage == "sandbox"
    assert [a.limit for a in result.attempts] == ["wall", "wall"]
    assert [a.limits["wall_seconds"] for a in result.attempts] == [3, 6]
    assert [a.limits["cpu_seconds"] for a in result.attempts] == [100, 200]
    assert (tmp_path / "attempt2.log").exists()


def test_limits_refuse_zero_and_negative_figures():
    for field, value in (("wall_seconds", 0), ("cpu_seconds", -1), ("file_bytes", 0),
                         ("memory_bytes", -1)):  # fmt: skip
        with pytest.raises(ValueError, match=f"limits.{field} must be"):
            Limits(**{field: value})
