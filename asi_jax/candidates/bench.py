"""What the sandbox costs: process start-up per layer, and the checker per candidate.

    python scripts/bench_sandbox.py      # figures for BENCHMARKS.md

`startup` times a bare interpreter started directly and under bubblewrap, then the worker's
`environment` task (JAX imported, its backend started, the audit hook installed) with no OS
layer, with Landlock only, and with both. `check` runs the checker on one candidate file in a
sandboxed worker, process start included, as the engineer does.
"""

from __future__ import annotations

import dataclasses
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from asi_jax.candidates import isolation
from asi_jax.candidates.engineer import EngineerConfig, run_candidate
from asi_jax.candidates.sandbox import Limits, run_worker
from asi_jax.tasks.linear_attention.checker import CheckConfig


def _median_seconds(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def startup(repeats: int = 5) -> dict[str, Any]:
    """Median seconds to start a bare Python (directly, under bubblewrap) and a worker (no OS
    layer, Landlock only, both), with the layers this machine has."""
    full = isolation.detect()
    layers = {
        "worker, no OS layer": dataclasses.replace(full, bwrap=None, landlock_abi=0),
        "worker, Landlock only": dataclasses.replace(full, bwrap=None),
        "worker, namespaces and Landlock": full,
    }
    bare = [sys.executable, "-I", "-c", "pass"]
    with tempfile.TemporaryDirectory(prefix="asi_jax_bench_") as tmp:
        folder = Path(tmp)
        seconds = {"python, directly": _median_seconds(
            lambda: subprocess.run(bare, check=True), repeats)}  # fmt: skip
        if full.bwrap:
            wrapped = isolation.bwrap_command(full.bwrap, bare, folder, isolation.python_roots(),
                                              (), {})  # fmt: skip
            seconds["python, under bubblewrap"] = _median_seconds(
                lambda: subprocess.run(wrapped, check=True), repeats)  # fmt: skip
        for name, layer in layers.items():
            if layer.landlock_abi == 0 and name != "worker, no OS layer":
                continue  # this machine lacks the layer

            def environment(layer=layer, name=name) -> None:
                result = run_worker({"job": "environment"}, folder / name.replace(" ", "_"),
                                    Limits(wall_seconds=300), layers=layer)  # fmt: skip
                if not result.ok:
                    raise RuntimeError(f"{name}: {result.error}")

            seconds[name] = _median_seconds(environment, repeats)
    return {"layers": full.to_json(), "repeats": repeats, "seconds": seconds}


def check(candidate: str | Path, check_config: CheckConfig, repeats: int = 2) -> dict[str, Any]:
    """Median seconds of the sandboxed check of `candidate` (process start included)."""
    source = Path(candidate).read_text()
    config = EngineerConfig(check=check_config)
    results = []

    def once() -> None:
        with tempfile.TemporaryDirectory(prefix="asi_jax_bench_") as tmp:
            result = run_candidate(source, config, tmp)
        if not result.ok:
            raise RuntimeError(f"{candidate}: {result.stage}: {result.reason}")
        results.append(result)

    seconds = _median_seconds(once, repeats)
    return {"candidate": str(candidate), "check": dataclasses.asdict(check_config),
            "seconds": seconds, "figures": results[-1].check["figures"]}  # fmt: skip
