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
        (128, BlockConfig(chunk_size=64, num_warps=8, num_stages=2)),
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
