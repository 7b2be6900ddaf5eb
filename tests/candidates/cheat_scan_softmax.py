# expect: cost: not sub-quadratic
import math

import jax
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """Exact causal softmax attention, one query per step of a lax.scan: T steps of O(T)
    work. XLA's cost analysis counts the scan body once, so it looked linear."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)

    def __call__(self, x):
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        positions = jnp.arange(x.shape[1])

        def attend(carry, t):
            scores = jnp.einsum("bd,bsd->bs", q[:, t], k) / math.sqrt(x.shape[-1])
            weights = jax.nn.softmax(jnp.where(positions <= t, scores, -1e9), axis=-1)
            return carry, jnp.einsum("bs,bsd->bd", weights, v)

        _, outputs = jax.lax.scan(attend, None, positions)
        return self.out(jnp.swapaxes(outputs, 0, 1))
