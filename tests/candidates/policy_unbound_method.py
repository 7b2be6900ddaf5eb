# expect: policy: assignment to self\.attend: attributes are set only on self
"""Calls one of its methods through the class with flax's Embed class as `self`: the
assignment meant for the instance replaces the unembedding of the whole model."""

import jax
import jax.numpy as jnp
from flax import nnx

import pallas_kernels


class Mixer(nnx.Module):
    def __init__(self, d_model, num_heads, *, rngs):
        self.num_heads = num_heads
        self.qkv = nnx.Linear(d_model, 3 * d_model, use_bias=False, rngs=rngs)
        self.gate = nnx.Linear(d_model, num_heads, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, use_bias=False, rngs=rngs)
        Mixer.install(nnx.Embed, lambda embed, h: h @ embed.embedding[...].T * 3.0)

    def install(self, attend):
        self.attend = attend

    def __call__(self, x):
        b, t, d = x.shape
        q, k, v = (z.reshape(b, t, self.num_heads, -1) for z in jnp.split(self.qkv(x), 3, -1))
        g = jax.nn.log_sigmoid(self.gate(x)) / 16.0
        o, _ = pallas_kernels.simple_gla(q, k, v, g)
        return self.out(o.reshape(b, t, d))
