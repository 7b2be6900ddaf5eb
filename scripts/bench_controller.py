"""The controller's own limits, measured, and the candidates per hour they allow on paper.

    python scripts/bench_controller.py [--candidates=400] [--llm_seconds=30,60]

Drives a real controller (the quickstart config, offline agents) without training: each
candidate is proposed (the offline researcher: the controller's share of a proposal without
a model's latency), then recorded from a synthetic result (`Controller.record`: the
evaluation's row and attempts, the judge, the score pass, the analysis, all committed; the
controller thread does this for every evaluation, whatever the backend). Prints the seconds
per proposal and per record as the population grows, then a table of candidates per hour
against nodes for the per-candidate costs given, and which limit binds: the nodes' compute,
the one proposer thread (a model's latency per proposal), or the controller's records.
"""

from __future__ import annotations

import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

from absl import app, flags

from asi_jax.candidates.engineer import Attempt, Result, code_hash
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import Controller

_CANDIDATES = flags.DEFINE_integer("candidates", 400, "Candidates proposed and recorded.")
_LLM_SECONDS = flags.DEFINE_list("llm_seconds", ["30", "60"], "A model's latency per proposal "
                                 "(an assumption, seconds).")  # fmt: skip
_NODES = flags.DEFINE_list("nodes", ["1", "8", "64", "512"], "Cluster sizes of the table.")
# (name, seconds of one slot per candidate, slots per node): the figures of BENCHMARKS.md.
_COSTS = (
    ("20M exploration run, 1 H200 each, 8 per node", 0.63 * 3600, 8),
    ("quickstart candidate on CPU, 8 per node", 60.0, 8),
    ("linear-attention check only, 8 per node", 22.0, 8),
)  # fmt: skip


def _result(code: str, rng_value: float) -> Result:
    loss, recall = 0.02 + 0.5 * rng_value, 0.99 - 0.5 * rng_value
    train = {"eval": {"heldout": {"loss": loss, "accuracy": recall},
                      "mqar_kv4": {"accuracy": recall}, "mqar_kv8": {"accuracy": recall}},
             "params": {"total": 100_000}}  # fmt: skip
    attempt = Attempt(1, code_hash(code), True, None, None, {}, train, 60.0, cpu_seconds=60.0)
    return Result(True, None, None, {}, train, (attempt,), code)


def measure(candidates: int, workdir: Path) -> list[dict]:
    """Seconds per proposal and per record, in blocks of population."""
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("quickstart", root / "configs/quickstart.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    values = module.get_config()
    values.budget.candidates = candidates
    values.max_proposal_tries = 1000
    config = from_config_dict(values)
    blocks, block, rows = max(1, candidates // 8), [], []
    with Controller(config, workdir, log=lambda _: None) as controller:
        controller.seed_baselines()
        for i, c in enumerate(controller.db.pending("explore")):
            controller.record(c, "explore", _result(c["code"], 0.1 * i))
        for n in range(candidates):
            started = time.perf_counter()
            candidate = controller.propose()
            proposed = time.perf_counter()
            if candidate is None:
                break
            controller.record(candidate, "explore", _result(candidate["code"],
                                                            (n * 0.618) % 1))  # fmt: skip
            block.append((proposed - started, time.perf_counter() - proposed))
            if len(block) == blocks:
                rows.append({"population": n + 1 + len(config.baselines),
                             "propose_s": statistics.median(p for p, _ in block),
                             "record_s": statistics.median(r for _, r in block)})  # fmt: skip
                block = []
    return rows


def capacity(record_s: float, propose_s: float, llm_seconds: list[float],
             nodes: list[int]) -> list[dict]:  # fmt: skip
    """Candidates per hour on paper: the least of the nodes' compute, the proposer thread
    (one proposal at a time: the model's latency plus the controller's share) and the
    controller thread's records (one per candidate)."""
    rows = []
    for name, seconds, slots in _COSTS:
        for latency in llm_seconds:
            proposer = 3600 / (latency + propose_s)
            recorder = 3600 / record_s
            for n in nodes:
                compute = 3600 * n * slots / seconds
                limits = {"nodes": compute, "proposer": proposer, "records": recorder}
                bound = min(limits, key=limits.get)
                rows.append({"cost": name, "llm_seconds": latency, "nodes": n,
                             "per_hour": limits[bound], "bound": bound,
                             "compute_per_hour": compute})  # fmt: skip
    return rows


def main(argv: list[str]) -> None:
    del argv
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(_CANDIDATES.value, Path(tmp) / "run")
    for r in rows:
        print(f"population {r['population']:5d}: propose {r['propose_s'] * 1e3:7.1f} ms, "
              f"record {r['record_s'] * 1e3:7.1f} ms")  # fmt: skip
    last = rows[-1]
    table = capacity(last["record_s"], last["propose_s"],
                     [float(s) for s in _LLM_SECONDS.value],
                     [int(n) for n in _NODES.value])  # fmt: skip
    print("| per-candidate cost | LLM s/proposal | nodes | compute alone /h | candidates /h "
          "| bound by |\n| --- | ---: | ---: | ---: | ---: | --- |")  # fmt: skip
    for r in table:
        print(f"| {r['cost']} | {r['llm_seconds']:g} | {r['nodes']} | "
              f"{r['compute_per_hour']:,.0f} | {r['per_hour']:,.0f} | {r['bound']} |")  # fmt: skip
    print(json.dumps({"controller": rows, "capacity": table}))


if __name__ == "__main__":
    app.run(main)
