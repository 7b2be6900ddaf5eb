"""Benchmarks the linear-attention ops: time per call, tokens/s and FLOP/s per impl.

    python scripts/bench_kernels.py --ops=delta_rule,gated_delta_rule --impls=recurrent,chunk \
        --batch=4 --seq_len=2048 --heads=4 --key_dim=64 --value_dim=64 --dtype=float32

Prints a table and writes the timings with the run's environment record as JSON (--output).
On a GPU with PyTorch and flash-linear-attention installed, fla's Triton kernels are timed on
the same inputs too (--fla=auto) and the table gains a "vs fla" column; on a device with a
known bf16 peak it gains the fraction of that roofline.

    python scripts/bench_kernels.py --impls=chunk,pallas --batch=8 --seq_len=4096 --heads=16 \
        --key_dim=128 --value_dim=128 --dtype=bfloat16
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from absl import flags

from asi_jax import command_line
from asi_jax.provenance import environment_record
from pallas_kernels import benchmark, hardware

_OPS = flags.DEFINE_list("ops", ["delta_rule", "gated_delta_rule"], "Ops to time.")
_IMPLS = flags.DEFINE_list("impls", ["recurrent", "chunk"], "Implementations to time.")
_MODES = flags.DEFINE_list("modes", ["fwd", "fwd_bwd"], "fwd and/or fwd_bwd.")
_BATCH = flags.DEFINE_integer("batch", 4, "B.")
_SEQ_LEN = flags.DEFINE_integer("seq_len", 2048, "T.")
_HEADS = flags.DEFINE_integer("heads", 4, "H.")
_KEY_DIM = flags.DEFINE_integer("key_dim", 64, "K.")
_VALUE_DIM = flags.DEFINE_integer("value_dim", 64, "V.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16", "float16"], "q/k/v dtype.")
_CHUNK_SIZE = flags.DEFINE_integer(
    "chunk_size", None, "Chunk size of the chunk / pallas impls (default: each impl's own)."
)
_BLOCKS = flags.DEFINE_list(
    "blocks",
    [],
    "Pallas block configs to sweep, each CHUNK:WARPS:STAGES (e.g. 64:8:1,32:4:2); "
    "default: the tuning table's entry for this platform and head size.",
)
_FLA = flags.DEFINE_enum(
    "fla", "auto", ["auto", "yes", "no"], "Also time flash-linear-attention (auto: if it can run)."
)
_CHECK = flags.DEFINE_bool(
    "check", False, "Also compare every impl with the float32 recurrence on the same inputs."
)
_WARMUP = flags.DEFINE_integer("warmup", 2, "Untimed calls after the compiling one.")
_ITERS = flags.DEFINE_integer("iters", 10, "Timed calls; the median is reported.")
_OUTPUT = flags.DEFINE_string("output", "bench_results/kernels.json", "JSON file to write.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    shape = benchmark.Shape(
        _BATCH.value, _SEQ_LEN.value, _HEADS.value, _KEY_DIM.value, _VALUE_DIM.value
    )
    impls = list(_IMPLS.value)
    want_fla = _FLA.value == "yes" or (_FLA.value == "auto" and benchmark.fla_available())
    if want_fla and benchmark.FLA not in impls:
        impls.append(benchmark.FLA)
    try:
        blocks = [benchmark.parse_block(text) for text in _BLOCKS.value]
        timings = benchmark.run(
            _OPS.value,
            impls,
            _MODES.value,
            shape,
            _DTYPE.value,
            chunk_size=_CHUNK_SIZE.value,
            blocks=blocks,
            warmup=_WARMUP.value,
            iters=_ITERS.value,
            check=_CHECK.value,
        )
    except ValueError as e:
        raise command_line.UsageError(str(e)) from e
    environment = environment_record()
    peak = hardware.peak_flops(environment["devices"][0])
    print(benchmark.format_table(timings, peak=peak))
    output = Path(_OUTPUT.value)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "environment": environment,
        "peak_flops": peak,
        "flags": {f.name: f.value for f in flags.FLAGS.get_key_flags_for_module(__name__)},
        "timings": [dataclasses.asdict(t) for t in timings],
    }
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    command_line.run(main)
