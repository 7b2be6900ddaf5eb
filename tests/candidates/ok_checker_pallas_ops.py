"""An ordinary candidate: gated linear attention (the chunked op) and a delta rule over the
same heads, mixed channel by channel by a learned gate."""

import jax
import jax.numpy as jnp
from flax import nnx

import pallas_kernels


class Mixer(nnx.Module):
    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs):
        self.num_heads = num_heads
        self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs)
        self.decay = nnx.Linear(d_model, d_model, rngs=rngs)
        self.beta = nnx.Linear(d_model, num_heads, rngs=rngs)
        self.mix = nnx.Linear(d_model, d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, d = x.shape
        h = self.num_heads

        def heads(z):
            return z.reshape(b, t, h, d // h)

        q, k, v = (heads(z) for z in jnp.split(self.qkv(x), 3, axis=-1))
        k = k * jax.lax.rsqrt(jnp.sum(k * k, axis=-1, keepdims=True) + 1e-6)
        gk = heads(jax.nn.log_sigmoid(self.decay(x)) / 16.0)
        o_gla, _ = pallas_kernels.gla(q, k, v, gk, impl="chunk")
        o_delta, _ = pallas_kernels.delta_rule(q, k, v, jax.nn.sigmoid(self.beta(x)))
        gate = jax.nn.sigmoid(self.mix(x))
        o = gate * o_gla.reshape(b, t, d) + (1.0 - gate) * o_delta.reshape(b, t, d)
        return self.out(o)
