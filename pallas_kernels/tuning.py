"""Block sizes and launch parameters of the Pallas kernels, per platform and head dimension.

One table, so no kernel carries magic numbers. Entries are starting points chosen from each
platform's matmul unit (TPU MXU tiles are 128 x 128; Hopper tensor-core MMAs want multiples of
16 and, at K = V = 128, 8 warps to keep a 64 x 128 fp32 state in registers) and must be
confirmed with `scripts/bench_kernels.py` on the device: see BENCHMARKS.md for what has been.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class BlockConfig:
    chunk_size: int  # C: steps per chunk (rows of every per-chunk tile)
    num_warps: int = 4  # GPU (Triton) only
    num_stages: int = 2  # GPU (Triton) only


# (platform, largest head dim it applies to) -> config; the first row whose bound holds wins.
_TABLE: dict[str, tuple[tuple[int, BlockConfig], ...]] = {
    "gpu": (
        (64, BlockConfig(chunk_size=64, num_warps=4, num_stages=2)),
        # One pipeline stage: at 2 stages the backward asks for 288 KiB of shared memory, more
        # than an H200 has (227 KiB), and does not launch. Swept on an H200 (BENCHMARKS.md):
        # 64/8/1 runs both delta rules forward and backward, correct, faster than "chunk".
        (128, BlockConfig(chunk_size=64, num_warps=8, num_stages=1)),
        (1 << 30, BlockConfig(chunk_size=32, num_warps=8, num_stages=1)),
    ),
    "tpu": (
        (64, BlockConfig(chunk_size=64)),
        (1 << 30, BlockConfig(chunk_size=128)),
    ),
    # Interpret mode on CPU: correctness only; small chunks keep the emulation quick.
    "cpu": ((1 << 30, BlockConfig(chunk_size=32)),),
}


def block_config(platform: str, key_dim: int, value_dim: int) -> BlockConfig:
    """The table's entry for `platform` ("gpu", "tpu" or "cpu") at this head size."""
    if platform not in _TABLE:
        raise ValueError(f"no Pallas block table for platform {platform!r}; have {list(_TABLE)}")
    head_dim = max(key_dim, value_dim)
    for bound, config in _TABLE[platform]:
        if head_dim <= bound:
            return config
    raise AssertionError("the last row of every platform's table is unbounded")


# Where impl="auto" runs the Pallas kernels: (platform, device-kind substring) -> ops that a
# recorded run of `scripts/bench_kernels.py --check` on that device showed correct (relative
# error within the dtype's bound against the float32 recurrence) and faster than "chunk",
# forward and backward. BENCHMARKS.md holds the run each row comes from; a device not listed
# runs the chunked XLA path.
PALLAS_PROVEN: dict[tuple[str, str], frozenset[str]] = {
    # H200, bf16, K = V = 64: 0.36 vs 1.02 ms forward, 0.63 vs 1.33 ms forward + backward.
    # The other four ops' kernels also beat "chunk" there, alone (gated delta rule 1.46 vs
    # 2.17 ms forward + backward), yet configs/explore_20m.py (gated_deltanet) trains 4x slower
    # with them (593 vs 146 ms a step, twice): until a training step is faster, not listed.
    ("gpu", "H200"): frozenset({"linear_attention"}),
}


def pallas_proven(platform: str, device_kind: str) -> frozenset[str]:
    """The ops proven on this device (see PALLAS_PROVEN); empty when none are."""
    for (proven_platform, kind), ops in PALLAS_PROVEN.items():
        if platform == proven_platform and kind.lower() in device_kind.lower():
            return ops
    return frozenset()
