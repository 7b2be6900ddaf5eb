"""The token-by-token recurrence: the ground truth every faster path is tested against.

One `lax.scan` over time, in float32, covers all five ops. The state update is

    S_t = decay_t * S_{t-1} + k_t (x) v'_t,   o_t = S_t^T (scale * q_t)

with decay_t = exp(g_t) (scalar per head) or exp(gk_t) (per key channel), and for the delta
rules v'_t = beta_t (v_t - (decay_t * S_{t-1})^T k_t): the correction reads the state after
this step's decay, as in Gated DeltaNet's S_t = S_{t-1} alpha_t (I - beta_t k_t k_t^T) +
beta_t v_t k_t^T and flash-linear-attention's fused recurrent kernels.

It is slow by design (T sequential steps) and written to be read, not tuned.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import Array


@functools.partial(jax.jit, static_argnames=("scale", "output_final_state"))
def recurrent(
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
) -> tuple[Array, Array | None]:
    """Runs the recurrence step by step.

    Args:
      q, k: [B, T, H, K].  v: [B, T, H, V].
      g: [B, T, H] log decay per head, or None.  gk: [B, T, H, K] log decay per key channel,
        or None.  beta: [B, T, H] delta-rule write strength, or None (plain additive update).
      initial_state: [B, H, K, V] or None (zeros).

    Returns:
      o: [B, T, H, V] in v's dtype, and the final state [B, H, K, V] in float32 (or None).
    """
    batch, _, heads, key_dim = q.shape
    value_dim = v.shape[-1]

    def time_major(x: Array | None) -> Array | None:
        return None if x is None else jnp.moveaxis(x.astype(jnp.float32), 1, 0)

    xs = {name: time_major(x) for name, x in dict(q=q, k=k, v=v, g=g, gk=gk, beta=beta).items()}
    if initial_state is None:
        state = jnp.zeros((batch, heads, key_dim, value_dim), jnp.float32)
    else:
        state = initial_state.astype(jnp.float32)

    def step(s: Array, x: dict) -> tuple[Array, Array]:  # s: [B, H, K, V]
        if x["g"] is not None:
            s = s * jnp.exp(x["g"])[..., None, None]
        if x["gk"] is not None:
            s = s * jnp.exp(x["gk"])[..., None]
        v_t = x["v"]
        if x["beta"] is not None:
            v_t = x["beta"][..., None] * (v_t - jnp.einsum("bhkv,bhk->bhv", s, x["k"]))
        s = s + x["k"][..., :, None] * v_t[..., None, :]
        o_t = jnp.einsum("bhkv,bhk->bhv", s, x["q"] * scale)
        return s, o_t

    state, o = jax.lax.scan(step, state, xs)
    o = jnp.moveaxis(o, 0, 1).astype(v.dtype)
    return o, (state if output_final_state else None)
