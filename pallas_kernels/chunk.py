"""Chunked linear attention in pure XLA: runs on every platform, and is the Pallas kernels' spec.

The sequence is cut into N chunks of C steps. Everything inside a chunk is computed for all
chunks at once with matmuls; only the state at chunk boundaries is passed sequentially, with a
`lax.scan` of N steps instead of the recurrence's T.

Per chunk, with S the state entering it and b the cumulative log decay inside it (b_i <= 0):

    v'  = u - w S                          (delta rules; otherwise v' = v)
    o   = (q * e^b) S + A v'               A: [C, C] causal scores, decays folded in
    S+  = e^{b_C} S + (k * e^{b_C - b})^T v'

For the delta rules, u and w come from the WY / UT form of Yang et al. 2024 ("Parallelizing
Linear Transformers with the Delta Rule over Sequence Length"): with
L = strict_tril(beta_i (k_i . k_j) e^{b_i - b_j}), one unit-lower-triangular solve per chunk
gives u = (I + L)^-1 (beta v) and w = (I + L)^-1 (beta e^b k). The state recurrence is then
affine, S+ = M S + D, and M, D are built in parallel so the scan does one small matmul a step.

Numerical stability: every exponent is a difference b_i - b_j with i after j (<= 0 when the
log decays are <= 0) and is masked *before* the exp, so no exp of a large positive cumulative
sum is ever formed and autodiff sees no inf * 0. Per-key-channel decays (GLA) would need a
[C, C, K] tensor for that; we split each chunk into sub-chunks of 16 and use each sub-chunk's
first position as the reference point for the blocks below the diagonal, as flash-linear-
attention does, so only the [16, 16, K] diagonal blocks are formed in full. Those blocks are
built with B, H and N flattened into one axis: with 7 axes, their gradient crashed XLA:CPU
(see `_scores_per_key_decay`).

Gradients: autodiff through this forward, except for the triangular solve, whose backward is
written by hand (`_solve_unit_lower`). Autodiff of the rest is already chunked (the scan's
transpose is an N-step scan, everything else batched matmuls), so a hand-written backward of
the whole op would save little time here; it is what the Pallas kernels are for. Figures in
BENCHMARKS.md.
All arithmetic is float32 whatever the input dtype.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

DEFAULT_CHUNK_SIZE = 64
_SUB_CHUNK = 16  # sub-chunk length for per-key-channel decays (see module docstring)


def _causal_mask(size: int, *, strict: bool = False) -> Array:
    return jnp.tril(jnp.ones((size, size), bool), -1 if strict else 0)


def _masked_exp(exponent: Array, mask: Array) -> Array:
    """exp(exponent) where mask holds, else 0; masked before the exp so neither pass sees inf."""
    return jnp.where(mask, jnp.exp(jnp.where(mask, exponent, 0.0)), 0.0)


def _pairwise_decay(b: Array, mask: Array) -> Array:
    """b: [..., C] cumulative log decay -> [..., C, C] with e^{b_i - b_j} where mask[i, j]."""
    return _masked_exp(b[..., :, None] - b[..., None, :], mask)


@jax.custom_vjp
def _solve_unit_lower(lower: Array, rhs: Array) -> Array:
    """Solves (I + lower) x = rhs for strictly lower-triangular `lower`: [..., C, C], [..., C, R].

    Blocked forward substitution: the [s, s] diagonal blocks (s = 16) are inverted row by row
    in parallel, then block rows are eliminated with matmuls. Numerically this is forward
    substitution (no powers of `lower`, whose entries explode for correlated keys). Its
    backward is written by hand (one transposed solve and a matmul): autodiff through the
    unrolled substitution was half the delta rules' fwd+bwd time on CPU, and
    `lax.linalg.triangular_solve`'s own gradient compiled for minutes there.
    """
    return _forward_substitution(lower, rhs)


def _solve_unit_lower_fwd(lower: Array, rhs: Array) -> tuple[Array, tuple[Array, Array]]:
    x = _forward_substitution(lower, rhs)
    return x, (lower, x)


def _solve_unit_lower_bwd(res: tuple[Array, Array], dx: Array) -> tuple[Array, Array]:
    # x = (I + L)^-1 r  =>  dr = (I + L)^-T dx and dL = -strict_tril(dr x^T). The transposed
    # system is unit upper-triangular; reversing rows and columns makes it unit lower again.
    lower, x = res
    flipped = jnp.flip(jnp.swapaxes(lower, -1, -2), axis=(-1, -2))
    drhs = jnp.flip(_forward_substitution(flipped, jnp.flip(dx, axis=-2)), axis=-2)
    dlower = -jnp.tril(jnp.einsum("...ir,...jr->...ij", drhs, x), -1)
    return dlower, drhs


_solve_unit_lower.defvjp(_solve_unit_lower_fwd, _solve_unit_lower_bwd)


def _forward_substitution(lower: Array, rhs: Array) -> Array:
    """The forward pass of `_solve_unit_lower` (see there)."""
    size = lower.shape[-1]
    sub = math.gcd(size, _SUB_CHUNK)
    n = size // sub
    blocks = jnp.stack(
        [lower[..., a * sub : (a + 1) * sub, a * sub : (a + 1) * sub] for a in range(n)], axis=-3
    )  # [..., n, s, s]
    rows = []  # rows of the diagonal blocks' inverses: r_i = e_i - sum_{j<i} D_ij r_j
    eye = jnp.eye(sub, dtype=lower.dtype)
    for i in range(sub):
        row = jnp.broadcast_to(eye[i], (*blocks.shape[:-2], sub))
        if i:
            row = row - jnp.einsum("...j,...js->...s", blocks[..., i, :i], jnp.stack(rows, -2))
        rows.append(row)
    block_inv = jnp.stack(rows, axis=-2)  # [..., n, s, s]

    solved: list[Array] = []
    for a in range(n):
        target = rhs[..., a * sub : (a + 1) * sub, :]
        if a:
            done = jnp.concatenate(solved, axis=-2)  # [..., a * s, R]
            target = target - lower[..., a * sub : (a + 1) * sub, : a * sub] @ done
        solved.append(block_inv[..., a, :, :] @ target)
    return jnp.concatenate(solved, axis=-2)


def _scores_per_key_decay(q: Array, k: Array, b: Array) -> Array:
    """Causal scores sum_c q_ic k_jc e^{b_ic - b_jc}; q, k, b: [..., C, K] -> [..., C, C].

    The leading axes are flattened into one, G, first, so no array here (or in its autodiff)
    has more than 5 axes: XLA:CPU in jaxlib 0.10.2 segfaults (or hangs) *running* f32
    multiply-reduce fusions it hands to YNNPACK when they have 7 or more axes, which the
    [B, H, N, a, b', j, K] blocks had (the gradient segfaulted on AMD AVX2 machines;
    jax-ml/jax#39257, #40412). Reproduction: tests/data/xla_cpu_gla_crash/repro.py.
    """
    *lead, size, key_dim = q.shape
    sub = math.gcd(size, _SUB_CHUNK)
    n = size // sub
    qs, ks, bs = (x.reshape(math.prod(lead), n, sub, key_dim) for x in (q, k, b))

    # Blocks below the diagonal: reference r_a = b at the first position of sub-chunk a, so
    # e^{b_i - b_j} = e^{b_i - r_a} e^{r_a - b_j} with both exponents <= 0 for j in a block < a.
    ref = bs[:, :, :1, :]  # [G, n, 1, K]
    q_off = qs * jnp.exp(bs - ref)
    below = _causal_mask(n, strict=True)  # [a, b']: b' < a
    k_off = ks[:, None, :, :, :] * _masked_exp(
        ref[:, :, None, :, :] - bs[:, None, :, :, :], below[:, :, None, None]
    )  # [G, a, b', j, K]
    off = jnp.einsum("gaic,gabjc->gaibj", q_off, k_off)
    off = off * below[:, None, :, None]

    # Diagonal blocks: the full [sub, sub, K] decay tensor, small enough at sub = 16.
    decay = _masked_exp(
        bs[:, :, :, None, :] - bs[:, :, None, :, :], _causal_mask(sub)[:, :, None]
    )  # [G, n, i, j, K]
    diag = jnp.einsum("gaic,gajc,gaijc->gaij", qs, ks, decay)
    eye = jnp.eye(n, dtype=diag.dtype)[:, None, :, None]
    scores = off + eye * diag[:, :, :, None, :]  # [G, a, i, b', j]
    return scores.reshape(*lead, size, size)


class ChunkTerms(NamedTuple):
    """Everything the sequential part of the chunk algorithm needs, per chunk.

    After these, chunk n's output and next state depend only on the state S entering it:
        v' = u - w S (u if w is None);  o = q_inter S + scores v';
        S+ = decay[:, None] * S + k_state^T v'  (decay None: 1).
    """

    q_inter: Array  # [B, H, N, C, K]  scale * q * e^{b}
    scores: Array  # [B, H, N, C, C]  causal intra-chunk scores, scale and decays folded in
    u: Array  # [B, H, N, C, V]  v, or the delta rules' (I + L)^-1 (beta v)
    w: Array | None  # [B, H, N, C, K]  the delta rules' (I + L)^-1 (beta e^b k)
    k_state: Array  # [B, H, N, C, K]  k * e^{b_C - b}
    decay: Array | None  # [B, H, N, K]  e^{b_C} per key channel (scalar decays broadcast)


def chunk_terms(
    q: Array,
    k: Array,
    v: Array,
    g: Array | None,
    gk: Array | None,
    beta: Array | None,
    *,
    scale: float,
    chunk_size: int,
) -> ChunkTerms:
    """The parallel part of the chunk algorithm: all chunks at once, float32, zero-padded T."""
    if gk is not None and beta is not None:
        raise NotImplementedError("the delta rule with per-key-channel decay is not an op here")
    batch, seq_len, heads, key_dim = q.shape
    size = chunk_size
    n_chunks = -(-seq_len // size)
    pad = n_chunks * size - seq_len

    def to_chunks(x: Array) -> Array:
        """[B, T, H, ...] -> [B, H, N, C, ...] float32, zero-padded (a no-op step) at the end."""
        x = jnp.pad(x.astype(jnp.float32), [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
        x = jnp.moveaxis(x, 2, 1)
        return x.reshape(batch, heads, n_chunks, size, *x.shape[3:])

    qc, kc, vc = to_chunks(q) * scale, to_chunks(k), to_chunks(v)
    causal = _causal_mask(size)

    # Decays: queries see e^{b_i}, keys carry e^{b_C - b_j} into the next state, and the
    # state itself is scaled by e^{b_C} across the chunk.
    if g is not None:
        b = jnp.cumsum(to_chunks(g), axis=-1)  # [B, H, N, C]
        gamma = _pairwise_decay(b, causal)
        scores = jnp.einsum("bhnik,bhnjk->bhnij", qc, kc) * gamma
        q_inter = qc * jnp.exp(b)[..., None]
        k_state = kc * jnp.exp(b[..., -1:] - b)[..., None]
        decay = jnp.broadcast_to(jnp.exp(b[..., -1:]), (*b.shape[:-1], key_dim))
    elif gk is not None:
        b = jnp.cumsum(to_chunks(gk), axis=-2)  # [B, H, N, C, K]
        gamma = None
        scores = _scores_per_key_decay(qc, kc, b)
        q_inter = qc * jnp.exp(b)
        k_state = kc * jnp.exp(b[..., -1:, :] - b)
        decay = jnp.exp(b[..., -1, :])
    else:
        b = gamma = decay = None
        scores = jnp.einsum("bhnik,bhnjk->bhnij", qc, kc) * causal
        q_inter, k_state = qc, kc

    if beta is None:
        return ChunkTerms(q_inter, scores, vc, None, k_state, decay)
    beta_c = to_chunks(beta)[..., None]  # [B, H, N, C, 1]
    gram = jnp.einsum("bhnik,bhnjk->bhnij", kc, kc) * beta_c
    strict = _causal_mask(size, strict=True)
    gram = gram * (strict if gamma is None else jnp.where(strict, gamma, 0.0))
    k_w = kc if b is None else kc * jnp.exp(b)[..., None]
    sol = _solve_unit_lower(gram, jnp.concatenate([beta_c * vc, beta_c * k_w], axis=-1))
    value_dim = v.shape[-1]
    return ChunkTerms(q_inter, scores, sol[..., :value_dim], sol[..., value_dim:], k_state, decay)


def from_chunks(o: Array, seq_len: int, dtype: jnp.dtype) -> Array:
    """[B, H, N, C, V] -> [B, T, H, V] in `dtype`, dropping the padding."""
    batch, heads, n_chunks, size, value_dim = o.shape
    o = o.reshape(batch, heads, n_chunks * size, value_dim)[:, :, :seq_len]
    return jnp.moveaxis(o, 1, 2).astype(dtype)


def initial_state_or_zeros(initial_state: Array | None, shape: tuple[int, ...]) -> Array:
    if initial_state is None:
        return jnp.zeros(shape, jnp.float32)
    return initial_state.astype(jnp.float32)


def _pass_states(terms: ChunkTerms, state: Array) -> tuple[Array, Array]:
    """The sequential part in XLA: S+ = M S + D with M, D built in parallel, then the outputs.

    Returns o [B, H, N, C, V] and the final state [B, H, K, V].
    """
    key_dim = terms.q_inter.shape[-1]
    eye = jnp.eye(key_dim, dtype=jnp.float32)
    # D = k^T u and, for the delta rules, M = diag(decay) - k^T w; otherwise M = diag(decay).
    drive = jnp.einsum("bhnck,bhncv->bhnkv", terms.k_state, terms.u)
    if terms.w is not None:
        transition = -jnp.einsum("bhnck,bhncl->bhnkl", terms.k_state, terms.w)
        transition += eye if terms.decay is None else terms.decay[..., None] * eye
        per_step = transition
    else:
        per_step = None if terms.decay is None else terms.decay[..., None]  # [B, H, N, K, 1]

    def step(s: Array, xs: tuple) -> tuple[Array, Array]:  # s: [B, H, K, V]
        m, d = xs
        if terms.w is not None:
            s_next = jnp.einsum("bhkl,bhlv->bhkv", m, s) + d
        elif m is not None:
            s_next = m * s + d
        else:
            s_next = s + d
        return s_next, s

    xs = (None if per_step is None else jnp.moveaxis(per_step, 2, 0), jnp.moveaxis(drive, 2, 0))
    final_state, starts = jax.lax.scan(step, state, xs)
    starts = jnp.moveaxis(starts, 0, 2)  # [B, H, N, K, V]: the state entering each chunk

    v_new = terms.u
    if terms.w is not None:
        v_new = v_new - jnp.einsum("bhnck,bhnkv->bhncv", terms.w, starts)
    o = jnp.einsum("bhnck,bhnkv->bhncv", terms.q_inter, starts)
    o = o + jnp.einsum("bhnij,bhnjv->bhniv", terms.scores, v_new)
    return o, final_state


@functools.partial(jax.jit, static_argnames=("scale", "output_final_state", "chunk_size"))
def chunk(
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
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> tuple[Array, Array | None]:
    """Chunked form of `recurrent.recurrent`; same arguments and results, plus `chunk_size`."""
    batch, seq_len, heads, key_dim = q.shape
    terms = chunk_terms(q, k, v, g, gk, beta, scale=scale, chunk_size=chunk_size)
    state = initial_state_or_zeros(initial_state, (batch, heads, key_dim, v.shape[-1]))
    o, final_state = _pass_states(terms, state)
    return from_chunks(o, seq_len, v.dtype), (final_state if output_final_state else None)
