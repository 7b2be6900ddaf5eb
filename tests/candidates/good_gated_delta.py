"""A good candidate: gated delta rule with a short causal conv and an output gate."""

import jax
import jax.numpy as jnp
from flax import nnx

import pallas_kernels


class Mixer(nnx.Module):
    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, conv_size: int = 4):
        self.num_heads = num_heads
        self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs)
        self.conv = nnx.Conv(
            3 * d_model,
            3 * d_model,
            kernel_size=(conv_size,),
            feature_group_count=3 * d_model,
            padding="CAUSAL",
            rngs=rngs,
        )
        self.gates = nnx.Linear(d_model, 2 * num_heads, rngs=rngs)
        self.out_gate = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)

    def __call__(self, x):
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = jnp.split(jax.nn.silu(self.conv(self.qkv(x))), 3, axis=-1)
        q, k, v = (z.reshape(b, t, h, d // h) for z in (q, k, v))
        q = q / jnp.sqrt(jnp.sum(q * q, -1, keepdims=True) + 1e-6)
        k = k / jnp.sqrt(jnp.sum(k * k, -1, keepdims=True) + 1e-6)
        decay, beta = jnp.split(self.gates(x), 2, axis=-1)
        g = jax.nn.log_sigmoid(decay + 4.0)
        o, _ = pallas_kernels.gated_delta_rule(q, k, v, g, jax.nn.sigmoid(beta))
        return self.out(o.reshape(b, t, d) * jax.nn.silu(self.out_gate(x)))
