"""The public linear-attention ops: argument checks, defaults, and dispatch to an implementation.

Conventions follow flash-linear-attention's chunk ops so that JAX and PyTorch variants compare
one to one: q, k [B, T, H, K]; v [B, T, H, V]; `scale` (default K**-0.5) multiplies q;
`initial_state` and the final state are [B, H, K, V]; every op returns `(o, final_state)` with
o [B, T, H, V] in v's dtype and the final state in float32 (None unless `output_final_state`).
Log decays (g, gk) are expected <= 0, i.e. decays in (0, 1].

`impl` picks the implementation:
  "recurrent"  lax.scan over time in float32: the ground truth (`recurrent.py`).
  "chunk"      chunked pure XLA: runs everywhere (`chunk.py`).
  "pallas"     Pallas kernels: Triton-lowered on GPU, Mosaic on TPU, interpreted on CPU
               (`pallas_chunk.py`); raises on any other platform.
  "auto"       the process-wide default (`default_impl`, a run's `train.kernel_impl`);
               left at "auto", "pallas" only on a device where a recorded run showed the
               kernel correct and faster than "chunk" (`tuning.PALLAS_PROVEN`), else "chunk".
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array

from pallas_kernels.chunk import DEFAULT_CHUNK_SIZE, chunk
from pallas_kernels.pallas_chunk import pallas
from pallas_kernels.recurrent import recurrent
from pallas_kernels.tuning import pallas_proven

Impl = Literal["auto", "recurrent", "chunk", "pallas"]
IMPLS: tuple[str, ...] = ("auto", "recurrent", "chunk", "pallas")


_default_impl = "auto"


@contextlib.contextmanager
def default_impl(impl: str) -> Iterator[None]:
    """Within the block, impl="auto" means `impl` in this process, for every op call traced
    there (a candidate's included): how a run's `train.kernel_impl` reaches the layers.
    "auto" keeps the device rule."""
    global _default_impl
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    previous, _default_impl = _default_impl, impl
    try:
        yield
    finally:
        _default_impl = previous


def resolve_impl(impl: str, op: str) -> str:
    """The implementation a call of `op` with `impl` runs on this process's default device."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        impl = _default_impl
    if impl == "auto":
        device = jax.devices()[0]
        return "pallas" if op in pallas_proven(device.platform, device.device_kind) else "chunk"
    return impl


def _check_float(name: str, x: Array) -> None:
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name} must be a floating-point array, got dtype {x.dtype}")


def _check_inputs(
    q: Array,
    k: Array,
    v: Array,
    *,
    g: Array | None = None,
    gk: Array | None = None,
    beta: Array | None = None,
    initial_state: Array | None = None,
) -> None:
    if q.ndim != 4:
        raise ValueError(f"q must be [B, T, H, K] (rank 4), got shape {q.shape}")
    if k.shape != q.shape:
        raise ValueError(f"k must have q's shape [B, T, H, K] = {q.shape}, got {k.shape}")
    if v.ndim != 4 or v.shape[:3] != q.shape[:3]:
        raise ValueError(f"v must be [B, T, H, V] with [B, T, H] = {q.shape[:3]}, got {v.shape}")
    if q.shape[1] == 0:
        raise ValueError("sequence length T must be at least 1")
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_float(name, x)
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    per_head = {"g": g, "beta": beta}
    for name, x in per_head.items():
        if x is not None:
            _check_float(name, x)
            if x.shape != q.shape[:3]:
                raise ValueError(f"{name} must be [B, T, H] = {q.shape[:3]}, got {x.shape}")
    if gk is not None:
        _check_float("gk", gk)
        if gk.shape != q.shape:
            raise ValueError(f"gk must be [B, T, H, K] = {q.shape}, got {gk.shape}")
    if initial_state is not None:
        batch, _, heads, key_dim = q.shape
        expected = (batch, heads, key_dim, v.shape[-1])
        _check_float("initial_state", initial_state)
        if initial_state.shape != expected:
            raise ValueError(
                f"initial_state must be [B, H, K, V] = {expected}, got {initial_state.shape}"
            )


def _run(
    op: str,
    q: Array,
    k: Array,
    v: Array,
    *,
    g: Array | None,
    gk: Array | None,
    beta: Array | None,
    scale: float | None,
    initial_state: Array | None,
    output_final_state: bool,
    impl: str,
    chunk_size: int | None,
) -> tuple[Array, Array | None]:
    _check_inputs(q, k, v, g=g, gk=gk, beta=beta, initial_state=initial_state)
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    scale = q.shape[-1] ** -0.5 if scale is None else float(scale)
    args = (q, k, v, g, gk, beta, initial_state)
    flags = dict(scale=scale, output_final_state=bool(output_final_state))
    match resolve_impl(impl, op):
        case "recurrent":
            return recurrent(*args, **flags)
        case "chunk":
            return chunk(*args, **flags, chunk_size=chunk_size or DEFAULT_CHUNK_SIZE)
        case "pallas":
            return pallas(*args, **flags, chunk_size=chunk_size)
    raise AssertionError(impl)


def linear_attention(
    q: Array,
    k: Array,
    v: Array,
    *,
    scale: float | None = None,
    initial_state: Array | None = None,
    output_final_state: bool = False,
    impl: Impl = "auto",
    chunk_size: int | None = None,
) -> tuple[Array, Array | None]:
    """Causal linear attention: S_t = S_{t-1} + k_t v_t^T, o_t = S_t^T (scale q_t)."""
    return _run(
        "linear_attention",
        q, k, v, g=None, gk=None, beta=None, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, impl=impl, chunk_size=chunk_size,
    )  # fmt: skip


def simple_gla(
    q: Array,
    k: Array,
    v: Array,
    g: Array,
    *,
    scale: float | None = None,
    initial_state: Array | None = None,
    output_final_state: bool = False,
    impl: Impl = "auto",
    chunk_size: int | None = None,
) -> tuple[Array, Array | None]:
    """Scalar-gated linear attention (RetNet, Mamba2-like): S_t = e^{g_t} S_{t-1} + k_t v_t^T.

    g: [B, T, H] log decay per head and step.
    """
    return _run(
        "simple_gla",
        q, k, v, g=g, gk=None, beta=None, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, impl=impl, chunk_size=chunk_size,
    )  # fmt: skip


def gla(
    q: Array,
    k: Array,
    v: Array,
    gk: Array,
    *,
    scale: float | None = None,
    initial_state: Array | None = None,
    output_final_state: bool = False,
    impl: Impl = "auto",
    chunk_size: int | None = None,
) -> tuple[Array, Array | None]:
    """Gated linear attention: S_t = diag(e^{gk_t}) S_{t-1} + k_t v_t^T.

    gk: [B, T, H, K] log decay per key channel and step.
    """
    return _run(
        "gla",
        q, k, v, g=None, gk=gk, beta=None, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, impl=impl, chunk_size=chunk_size,
    )  # fmt: skip


def delta_rule(
    q: Array,
    k: Array,
    v: Array,
    beta: Array,
    *,
    scale: float | None = None,
    initial_state: Array | None = None,
    output_final_state: bool = False,
    impl: Impl = "auto",
    chunk_size: int | None = None,
) -> tuple[Array, Array | None]:
    """DeltaNet: S_t = S_{t-1} + beta_t k_t (v_t - S_{t-1}^T k_t)^T.

    beta: [B, T, H] write strength, usually in (0, 1) (or (0, 2) for negative eigenvalues).
    k is used as given: normalise it (e.g. L2) in the layer, as DeltaNet does.
    """
    return _run(
        "delta_rule",
        q, k, v, g=None, gk=None, beta=beta, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, impl=impl, chunk_size=chunk_size,
    )  # fmt: skip


def gated_delta_rule(
    q: Array,
    k: Array,
    v: Array,
    g: Array,
    beta: Array,
    *,
    scale: float | None = None,
    initial_state: Array | None = None,
    output_final_state: bool = False,
    impl: Impl = "auto",
    chunk_size: int | None = None,
) -> tuple[Array, Array | None]:
    """Gated DeltaNet: S_t = e^{g_t} S_{t-1} + beta_t k_t (v_t - e^{g_t} S_{t-1}^T k_t)^T.

    g: [B, T, H] log decay per head; beta: [B, T, H] write strength.
    """
    return _run(
        "gated_delta_rule",
        q, k, v, g=g, gk=None, beta=beta, scale=scale, initial_state=initial_state,
        output_final_state=output_final_state, impl=impl, chunk_size=chunk_size,
    )  # fmt: skip
