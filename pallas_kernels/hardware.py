"""Facts about accelerators that figures are relative to (kept apart from the benchmarks, so
the trainer can read them without importing benchmark code)."""

from __future__ import annotations

# Dense bf16 peak FLOP/s per device, from the vendors' data sheets.
PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "TPU v5e": 197e12}


def peak_flops(device_kind: str) -> float | None:
    """The peak of a device named like `jax.Device.device_kind` ("NVIDIA H100 80GB HBM3");
    None when unknown (a CPU)."""
    for name, peak in PEAK_BF16_FLOPS.items():
        if name.lower() in device_kind.lower():
            return peak
    return None
