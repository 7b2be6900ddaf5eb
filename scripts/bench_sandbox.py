"""Benchmarks the sandbox: start-up per OS layer, and the checker's cost per candidate.

    python scripts/bench_sandbox.py
    python scripts/bench_sandbox.py --repeats=10 --candidate=tests/candidates/good_gated_delta.py

Prints a table and writes the figures, with the machine's environment, as JSON. The check
runs at the default CheckConfig and at the quickstart's (configs/quickstart.py), each with
the training shapes of its experiment.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from asi_jax import command_line
from asi_jax.candidates import bench
from asi_jax.provenance import environment_record
from asi_jax.tasks.linear_attention.checker import CheckConfig

_REPEATS = flags.DEFINE_integer("repeats", 5, "Runs per start-up figure (the median is shown).")
_CHECK_REPEATS = flags.DEFINE_integer("check_repeats", 2, "Runs per check figure.")
_CANDIDATE = flags.DEFINE_string(
    "candidate",
    "tests/candidates/good_gated_delta.py",
    "The candidate file the checker's cost is measured on.",
)
_OUTPUT = flags.DEFINE_string("output", "bench_results/sandbox.json", "JSON file to write.")

# The checks the README's runs make: the default, and the quickstart's with its training shape.
CHECKS = {
    "default": CheckConfig(),
    "quickstart": CheckConfig(batch_sizes=(2,), seq_lens=(1, 37), cost_seq_len=128,
                              train_batch_sizes=(32, 0), train_seq_len=32),
}  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    if not Path(_CANDIDATE.value).is_file():
        raise command_line.UsageError(f"--candidate: no such file {_CANDIDATE.value!r}")
    startup = bench.startup(_REPEATS.value)
    checks = {name: bench.check(_CANDIDATE.value, config, _CHECK_REPEATS.value)
              for name, config in CHECKS.items()}  # fmt: skip
    print(
        f"start-up, median of {_REPEATS.value} ({startup['layers']['bwrap_version']}, "
        f"Landlock ABI {startup['layers']['landlock_abi']}):"
    )
    for name, seconds in startup["seconds"].items():
        print(f"  {name:<34} {seconds * 1000:8.0f} ms")
    print(f"check of {_CANDIDATE.value} in the sandbox, median of {_CHECK_REPEATS.value}:")
    for name, result in checks.items():
        print(f"  {name:<34} {result['seconds']:8.1f} s")
    out = Path(_OUTPUT.value)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"environment": environment_record(), "startup": startup,
                               "checks": checks}, indent=2, default=str) + "\n")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    command_line.run(main)
