"""Pallas kernels for the chunk algorithm's sequential part, forward and backward.

`chunk.chunk_terms` turns the inputs into per-chunk tiles in parallel (scores with decays, the
WY/UT solve of the delta rules: batched matmuls, which XLA already runs near peak). What
remains is sequential over chunks, and is what these kernels do: carry the [K, V] state
through the chunks of one (batch, head) on chip, writing each chunk's output as they go,

    v' = u - w S;   o = q_inter S + scores v';   S <- decay * S + k_state^T v',

and, backward, carry dS through the chunks in reverse, recomputing v' from the chunk-start
states that the forward kernel saved (N [K, V] tiles: the same size as the output at
C = K, so nothing grows faster than T). All math is in `_forward_step` / `_backward_step`,
shared by two launch shapes:

- "triton" (GPU): grid (B*H,), one program per head, a `fori_loop` over chunks. Triton grid
  programs run concurrently with no order, so the state must live in one program's registers;
  the Triton lowering is what Pallas's GPU docs recommend for portable kernels, and Mosaic GPU's
  warpgroup / TMA model would only pay off past what this loop's small matmuls need.
- "mosaic" (TPU): grid (B*H, N) with the chunk axis "arbitrary" (sequential), the state in a
  VMEM scratch buffer across grid steps, and one [C, *] tile per step in VMEM, pipelined by
  Mosaic: the TPU Pallas docs' pattern for a carried accumulator. Tiles are (8, 128)-aligned
  or span the whole dimension.

On CPU both run in interpret mode, which is how the tests check them.
Matmul operands are cast to the inputs' dtype (bf16 stays bf16 on the tensor cores / MXU);
accumulation and the carried state are float32.
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
from jax import Array
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as plgpu

from pallas_kernels.chunk import ChunkTerms, chunk_terms, from_chunks, initial_state_or_zeros
from pallas_kernels.tuning import BlockConfig, block_config

Backend = Literal["triton", "mosaic"]
BACKENDS: tuple[str, ...] = ("triton", "mosaic")


def _mm(a: Array, b: Array, dtype, *, ta: bool = False, tb: bool = False) -> Array:
    """a @ b (with a or b transposed) on `dtype` operands, accumulated in float32."""
    dims = (((0 if ta else 1,), (1 if tb else 0,)), ((), ()))
    precision = jax.lax.Precision.HIGHEST if dtype == jnp.float32 else None
    return jax.lax.dot_general(
        a.astype(dtype),
        b.astype(dtype),
        dims,
        precision=precision,
        preferred_element_type=jnp.float32,
    )


def _forward_step(s, q, a, u, w, k, d, dtype):
    """One chunk. s, result state: [K, V]; q, w, k: [C, K]; a: [C, C]; u: [C, V]; d: [K, 1]."""
    v_new = u if w is None else u - _mm(w, s, dtype)
    o = _mm(q, s, dtype) + _mm(a, v_new, dtype)
    return o, d * s + _mm(k, v_new, dtype, ta=True)


def _backward_step(s, ds_next, do, q, a, u, w, k, d, dtype):
    """Gradients of one chunk given dL/d(next state) and dL/do.

    Returns (ds, dq, da, du, dw, dk, dd); dw is None without w.
    """
    v_new = u if w is None else u - _mm(w, s, dtype)
    dv = _mm(a, do, dtype, ta=True) + _mm(k, ds_next, dtype)
    dq = _mm(do, s, dtype, tb=True)
    da = _mm(do, v_new, dtype, tb=True)
    dk = _mm(v_new, ds_next, dtype, tb=True)
    dd = jnp.sum(ds_next * s, axis=1, keepdims=True)
    ds = _mm(q, do, dtype, ta=True) + d * ds_next
    dw = None
    if w is not None:
        dw = -_mm(dv, s, dtype, tb=True)
        ds = ds - _mm(w, dv, dtype, ta=True)
    return ds, dq, da, dv, dw, dk, dd


# ---------------------------------------------------------------------------------------------
# Kernels. Refs arrive in the order of the `_FWD_IN` / `_BWD_IN` names below (w only when the
# op has it) followed by the outputs, then (mosaic) the scratch state.

_FWD_IN = ("q", "a", "u", "w", "k", "d", "h0")
_FWD_OUT = ("o", "h_final", "states")
_BWD_IN = ("q", "a", "u", "w", "k", "d", "states", "do", "dh_final")
_BWD_OUT = ("dq", "da", "du", "dw", "dk", "dd", "dh0")


def _named(refs, names: tuple[str, ...], has_w: bool) -> dict:
    names = tuple(n for n in names if has_w or n not in ("w", "dw"))
    return dict(zip(names, refs, strict=True))


def _triton_forward_kernel(*refs, n_chunks: int, size: int, has_w: bool, dtype):
    r = _named(refs, _FWD_IN + _FWD_OUT, has_w)

    def body(n, s):
        rows = pl.ds(n * size, size)
        r["states"][n] = s
        o, s = _forward_step(
            s,
            r["q"][rows, :],
            r["a"][rows, :],
            r["u"][rows, :],
            r["w"][rows, :] if has_w else None,
            r["k"][rows, :],
            r["d"][n],
            dtype,
        )
        r["o"][rows, :] = o.astype(r["o"].dtype)
        return s

    r["h_final"][...] = jax.lax.fori_loop(0, n_chunks, body, r["h0"][...].astype(jnp.float32))


def _triton_backward_kernel(*refs, n_chunks: int, size: int, has_w: bool, dtype):
    r = _named(refs, _BWD_IN + _BWD_OUT, has_w)

    def body(i, ds_next):
        n = n_chunks - 1 - i
        rows = pl.ds(n * size, size)
        ds, dq, da, du, dw, dk, dd = _backward_step(
            r["states"][n],
            ds_next,
            r["do"][rows, :],
            r["q"][rows, :],
            r["a"][rows, :],
            r["u"][rows, :],
            r["w"][rows, :] if has_w else None,
            r["k"][rows, :],
            r["d"][n],
            dtype,
        )
        for name, value in (("dq", dq), ("da", da), ("du", du), ("dw", dw), ("dk", dk)):
            if value is not None:
                r[name][rows, :] = value
        r["dd"][n] = dd
        return ds

    r["dh0"][...] = jax.lax.fori_loop(0, n_chunks, body, r["dh_final"][...])


def _mosaic_forward_kernel(*refs, has_w: bool, dtype):
    r = _named(refs, (*_FWD_IN, *_FWD_OUT, "scratch"), has_w)
    n = pl.program_id(1)

    @pl.when(n == 0)
    def _():
        r["scratch"][...] = r["h0"][...].astype(jnp.float32)

    s = r["scratch"][...]
    r["states"][...] = s
    o, s = _forward_step(
        s,
        r["q"][...],
        r["a"][...],
        r["u"][...],
        r["w"][...] if has_w else None,
        r["k"][...],
        r["d"][...],
        dtype,
    )
    r["o"][...] = o.astype(r["o"].dtype)
    r["scratch"][...] = s

    @pl.when(n == pl.num_programs(1) - 1)
    def _():
        r["h_final"][...] = s


def _mosaic_backward_kernel(*refs, has_w: bool, dtype):
    r = _named(refs, (*_BWD_IN, *_BWD_OUT, "scratch"), has_w)
    n = pl.program_id(1)  # walks the chunks in reverse through the index maps

    @pl.when(n == 0)
    def _():
        r["scratch"][...] = r["dh_final"][...]

    ds, dq, da, du, dw, dk, dd = _backward_step(
        r["states"][...],
        r["scratch"][...],
        r["do"][...],
        r["q"][...],
        r["a"][...],
        r["u"][...],
        r["w"][...] if has_w else None,
        r["k"][...],
        r["d"][...],
        dtype,
    )
    for name, value in (("dq", dq), ("da", da), ("du", du), ("dw", dw), ("dk", dk), ("dd", dd)):
        if value is not None:
            r[name][...] = value
    r["scratch"][...] = ds

    @pl.when(n == pl.num_programs(1) - 1)
    def _():
        r["dh0"][...] = ds


# ---------------------------------------------------------------------------------------------
# Launch: flattened [B*H, ...] operands, one pallas_call per direction and backend.


_PER_HEAD = frozenset({"h0", "h_final", "dh_final", "dh0"})  # [BH, K, V]
_PER_CHUNK = frozenset({"d", "dd", "states"})  # [BH, N, X, Y]; all others are [BH, N * C, X]


def _block_spec(name: str, shape: tuple[int, ...], backend: str, size: int, chunk_of):
    """Triton: the whole head per program. Mosaic: one chunk's tile per grid step."""
    if backend == "triton":
        return pl.BlockSpec((None, *shape[1:]), lambda i: (i,) + (0,) * (len(shape) - 1))
    if name in _PER_HEAD:
        return pl.BlockSpec((None, *shape[1:]), lambda i, n: (i, 0, 0))
    if name in _PER_CHUNK:
        return pl.BlockSpec((None, None, *shape[2:]), lambda i, n: (i, chunk_of(n), 0, 0))
    return pl.BlockSpec((None, size, shape[2]), lambda i, n: (i, chunk_of(n), 0))


def _launch(
    direction: str,
    operands: dict[str, Array],
    out_shapes: dict[str, jax.ShapeDtypeStruct],
    *,
    backend: str,
    config: BlockConfig,
    dtype,
    interpret: bool,
) -> dict[str, Array]:
    """One pallas_call running `direction` ("forward" / "backward") over every head."""
    has_w = "w" in operands
    heads, rows, _ = operands["q"].shape
    size = operands["a"].shape[-1]
    n_chunks = rows // size
    backward = direction == "backward"
    chunk_of = (lambda n: n_chunks - 1 - n) if backward else (lambda n: n)
    shapes = {name: x.shape for name, x in operands.items()}
    shapes |= {name: x.shape for name, x in out_shapes.items()}
    specs = {
        name: _block_spec(name, shape, backend, size, chunk_of) for name, shape in shapes.items()
    }
    if backend == "triton":
        body = _triton_backward_kernel if backward else _triton_forward_kernel
        kernel = functools.partial(body, n_chunks=n_chunks, size=size, has_w=has_w, dtype=dtype)
        grid: tuple[int, ...] = (heads,)
        extra = dict(
            compiler_params=plgpu.CompilerParams(
                num_warps=config.num_warps, num_stages=config.num_stages
            )
        )
    else:
        body = _mosaic_backward_kernel if backward else _mosaic_forward_kernel
        kernel = functools.partial(body, has_w=has_w, dtype=dtype)
        grid = (heads, n_chunks)
        state_shape = operands["dh_final" if backward else "h0"].shape[1:]
        extra = dict(
            scratch_shapes=[pltpu.VMEM(state_shape, jnp.float32)],
            compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel", "arbitrary")),
        )
    outputs = pl.pallas_call(
        kernel,
        out_shape=list(out_shapes.values()),
        grid=grid,
        in_specs=[specs[name] for name in operands],
        out_specs=[specs[name] for name in out_shapes],
        interpret=interpret,
        name=f"linear_attention_chunk_{direction}_{backend}",
        **extra,
    )(*operands.values())
    return dict(zip(out_shapes, outputs, strict=True))


# ---------------------------------------------------------------------------------------------
# The differentiable entry point.


def _flat_operands(terms: ChunkTerms, h0: Array) -> dict[str, Array]:
    """[B, H, N, C, X] tiles -> [BH, N * C, X]; decay [B, H, N, K] -> [BH, N, K, 1]."""
    batch, heads, n_chunks, size, key_dim = terms.q_inter.shape

    def rows(x: Array) -> Array:
        return x.reshape(batch * heads, n_chunks * size, x.shape[-1])

    operands = {"q": rows(terms.q_inter), "a": rows(terms.scores), "u": rows(terms.u)}
    if terms.w is not None:
        operands["w"] = rows(terms.w)
    operands |= {
        "k": rows(terms.k_state),
        "d": terms.decay.reshape(batch * heads, n_chunks, key_dim, 1),
        "h0": h0.reshape(batch * heads, *h0.shape[2:]),
    }
    return operands


def _forward(terms: ChunkTerms, h0: Array, backend: str, config: BlockConfig, dtype, interpret):
    operands = _flat_operands(terms, h0)
    bh, rows, key_dim = operands["q"].shape
    value_dim = operands["u"].shape[-1]
    n_chunks = rows // operands["a"].shape[-1]
    f32 = jnp.float32
    out_shapes = {
        "o": jax.ShapeDtypeStruct((bh, rows, value_dim), f32),
        "h_final": jax.ShapeDtypeStruct((bh, key_dim, value_dim), f32),
        "states": jax.ShapeDtypeStruct((bh, n_chunks, key_dim, value_dim), f32),
    }
    out = _launch(
        "forward", operands, out_shapes,
        backend=backend, config=config, dtype=dtype, interpret=interpret,
    )  # fmt: skip
    batch, heads, n, size, _ = terms.q_inter.shape
    o = out["o"].reshape(batch, heads, n, size, value_dim)
    h_final = out["h_final"].reshape(h0.shape)
    return (o, h_final), (operands, out["states"])


def _backward(backend, config, dtype, interpret, residuals, cotangents):
    operands, states = residuals
    do, dh_final = cotangents
    bh, rows, key_dim = operands["q"].shape
    value_dim = operands["u"].shape[-1]
    inputs = {name: operands[name] for name in _BWD_IN[:6] if name in operands}
    inputs |= {
        "states": states,
        "do": do.reshape(bh, rows, value_dim).astype(jnp.float32),
        "dh_final": dh_final.reshape(bh, key_dim, value_dim).astype(jnp.float32),
    }
    f32 = jnp.float32
    out_shapes = {
        name: jax.ShapeDtypeStruct(operands[name[1:]].shape, f32)
        for name in ("dq", "da", "du", "dw", "dk", "dd", "dh0")
        if name[1:] in operands
    }
    return _launch(
        "backward", inputs, out_shapes,
        backend=backend, config=config, dtype=dtype, interpret=interpret,
    )  # fmt: skip


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def pass_states(
    terms: ChunkTerms, h0: Array, backend: str, config: BlockConfig, dtype, interpret: bool
) -> tuple[Array, Array]:
    """The sequential part of the chunk algorithm in Pallas (compare `chunk._pass_states`).

    Args:
      terms: from `chunk.chunk_terms`, tiles [B, H, N, C, *], with `decay` filled in (ones
        for ops without decay) so that every kernel operand has a gradient slot.
      h0: [B, H, K, V] float32 state entering the first chunk.
      backend: "triton" (GPU) or "mosaic" (TPU); either runs on CPU with interpret=True.
      config: block configuration from `tuning.block_config`.
      dtype: matmul operand dtype (the op's input dtype).

    Returns:
      o: [B, H, N, C, V] float32 and the final state [B, H, K, V] float32.
    """
    return _forward(terms, h0, backend, config, dtype, interpret)[0]


def _pass_states_fwd(terms, h0, backend, config, dtype, interpret):
    return _forward(terms, h0, backend, config, dtype, interpret)


def _pass_states_bwd(backend, config, dtype, interpret, residuals, cotangents):
    do, dh_final = cotangents
    batch, heads, n_chunks, size, _ = do.shape
    grads = _backward(backend, config, dtype, interpret, residuals, cotangents)

    def tiles(x: Array) -> Array:
        return x.reshape(batch, heads, n_chunks, size, x.shape[-1])

    d_terms = ChunkTerms(
        q_inter=tiles(grads["dq"]),
        scores=tiles(grads["da"]),
        u=tiles(grads["du"]),
        w=tiles(grads["dw"]) if "dw" in grads else None,
        k_state=tiles(grads["dk"]),
        decay=grads["dd"].reshape(batch, heads, n_chunks, -1),
    )
    return d_terms, grads["dh0"].reshape(dh_final.shape)


pass_states.defvjp(_pass_states_fwd, _pass_states_bwd)


# ---------------------------------------------------------------------------------------------
# The op.

# jax.default_backend() -> the kernel launch shape that platform compiles.
_PLATFORM_BACKEND = {"gpu": "triton", "tpu": "mosaic"}


def platform_backend(platform: str) -> tuple[str, bool]:
    """(backend, interpret) for a JAX platform; CPU runs the Triton-shaped kernels interpreted.

    Raises a ValueError naming the platform where no Pallas kernel can run, rather than
    falling back to another implementation behind the caller's back.
    """
    if platform in _PLATFORM_BACKEND:
        return _PLATFORM_BACKEND[platform], False
    if platform == "cpu":
        return "triton", True
    raise ValueError(
        f"impl='pallas' has no kernels for platform {platform!r} (have gpu, tpu, and cpu in "
        "interpret mode); use impl='chunk'"
    )


def _next_tile(n: int) -> int:
    """Triton tiles: powers of two, at least 16 (the smallest tensor-core MMA)."""
    return max(16, 1 << (n - 1).bit_length())


def _pad_last(x: Array | None, to: int) -> Array | None:
    if x is None or x.shape[-1] == to:
        return x
    return jnp.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, to - x.shape[-1])])


@functools.partial(
    jax.jit,
    static_argnames=("scale", "output_final_state", "chunk_size", "block", "backend", "interpret"),
)
def pallas(
    q: Array,
    k: Array,
    v: Array,
    g: Array | None,
    gk: Array | None,
    beta: Array | None,
    initial_state: Array | None,
    *,
    scale: float,
    output_final_state: bool,
    chunk_size: int | None = None,
    block: BlockConfig | None = None,
    backend: str | None = None,
    interpret: bool | None = None,
) -> tuple[Array, Array | None]:
    """Chunk algorithm with the sequential part in Pallas; same contract as `chunk.chunk`.

    `backend` / `interpret` default to the default platform's (`platform_backend`);
    `block` defaults to the tuning table's entry (`scripts/bench_kernels.py --blocks` sweeps
    others to fill that table), and `chunk_size` overrides its chunk size. Tests pass
    backend="mosaic", interpret=True to check the TPU kernels on CPU.
    """
    platform = jax.default_backend()
    default_backend, default_interpret = platform_backend(platform)
    backend = backend or default_backend
    interpret = default_interpret if interpret is None else interpret
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    batch, seq_len, heads, key_dim = q.shape
    value_dim = v.shape[-1]
    config = block or block_config(platform, key_dim, value_dim)
    size = chunk_size or config.chunk_size
    if backend == "triton" and size != _next_tile(size):
        raise ValueError(f"the Triton kernels need a power-of-two chunk_size >= 16, got {size}")

    terms = chunk_terms(q, k, v, g, gk, beta, scale=scale, chunk_size=size)
    if terms.decay is None:
        terms = terms._replace(decay=jnp.ones((*terms.q_inter.shape[:3], key_dim), jnp.float32))
    h0 = initial_state_or_zeros(initial_state, (batch, heads, key_dim, value_dim))
    if backend == "triton":  # zero-pad K and V to tiles: zero rows/columns of S stay zero
        k_pad, v_pad = _next_tile(key_dim), _next_tile(value_dim)
        terms = ChunkTerms(
            q_inter=_pad_last(terms.q_inter, k_pad),
            scores=terms.scores,
            u=_pad_last(terms.u, v_pad),
            w=_pad_last(terms.w, k_pad),
            k_state=_pad_last(terms.k_state, k_pad),
            decay=_pad_last(terms.decay, k_pad),
        )
        h0 = jnp.pad(h0, [(0, 0), (0, 0), (0, k_pad - key_dim), (0, v_pad - value_dim)])
    o, final_state = pass_states(terms, h0, backend, config, jnp.dtype(q.dtype), interpret)
    o = from_chunks(o[..., :value_dim], seq_len, v.dtype)
    return o, (final_state[:, :, :key_dim, :value_dim] if output_final_state else None)
