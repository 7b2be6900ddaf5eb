"""The TPU worker table: every worker on a host gets its own chips, in a box the bounds
describe, and a port of its own; the sandbox uses it where it pins workers."""

from __future__ import annotations

import math

import pytest

from asi_jax.candidates import devices, sandbox
from asi_jax.candidates.devices import CHIP_BOUNDS, TPU_HOST_CHIPS, pinned_environment, tpu_workers


@pytest.mark.parametrize("host", sorted(TPU_HOST_CHIPS))
def test_each_worker_gets_its_own_chips_bounds_and_port(host):
    chips = TPU_HOST_CHIPS[host]
    counts = [n for n in range(1, chips + 1) if chips % n == 0 and chips // n in CHIP_BOUNDS]
    assert counts == [n for n in (1, 2, 4, 8) if n <= chips]  # every split of the host works
    for n in counts:
        envs = tpu_workers(host, n)
        assert len(envs) == n
        given = [[int(c) for c in e["TPU_VISIBLE_CHIPS"].split(",")] for e in envs]
        assert sorted(c for g in given for c in g) == list(range(chips))  # disjoint, all used
        for env, own in zip(envs, given, strict=True):
            bounds = [int(b) for b in env["TPU_CHIPS_PER_PROCESS_BOUNDS"].split(",")]
            assert len(bounds) == 3 and math.prod(bounds) == len(own) == chips // n
            assert env["TPU_PROCESS_BOUNDS"] == "1,1,1" and env["CLOUD_TPU_TASK_ID"] == "0"
            assert env["TPU_PROCESS_ADDRESSES"] == f"localhost:{env['TPU_PROCESS_PORT']}"
            assert env["CUDA_VISIBLE_DEVICES"] == env["TPU_VISIBLE_CHIPS"]
        assert len({e["TPU_PROCESS_PORT"] for e in envs}) == n


def test_the_bounds_are_jax_s_own():
    """As jax/_src/test_multiprocess.py sets them: 2 chips 1x2, 4 chips 2x2, 8 chips 2x4."""
    assert tpu_workers("v4-8", 2)[1]["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,2,1"
    assert tpu_workers("v6e-8", 2)[0]["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "2,2,1"
    assert tpu_workers("v5e-8", 1)[0]["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "2,4,1"
    assert tpu_workers("v5e-4", 4)[3]["TPU_VISIBLE_CHIPS"] == "3"


def test_impossible_shares_are_refused():
    for host, workers in (("v4-8", 3), ("v5e-8", 16), ("v6e-8", 0), ("v7-9", 1)):
        with pytest.raises(ValueError):
            tpu_workers(host, workers)
    for chips in ("1,2", "0,2", "0,1,2", "x", "2,3,4,5"):  # misaligned, gaps, 3 chips
        with pytest.raises(ValueError, match="not a block"):
            pinned_environment(chips, tpu=True)
    assert pinned_environment("0,1,2", tpu=False) == {"CUDA_VISIBLE_DEVICES": "0,1,2"}


def test_the_sandbox_pins_tpu_workers_with_the_table(tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "tpu_host", lambda: True)
    env = sandbox.scrubbed_environment(tmp_path, visible_devices="4,5")
    assert env.items() >= pinned_environment("4,5", tpu=True).items()
    assert env["TPU_CHIPS_PER_PROCESS_BOUNDS"] == "1,2,1"
    monkeypatch.setattr(devices, "tpu_host", lambda: False)
    env = sandbox.scrubbed_environment(tmp_path, visible_devices="4,5")
    assert env["CUDA_VISIBLE_DEVICES"] == "4,5" and "TPU_CHIPS_PER_PROCESS_BOUNDS" not in env
