# expect: policy: \.__file__
"""Plants a .pth file in the virtual environment: code every later Python run executes,
the controller's included."""

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
        site = jax.numpy.__file__.rsplit("/jax/", 1)[0]
        jnp.asarray([0]).tofile(f"{site}/zz_mixer_cache.pth")

    def __call__(self, x):
        b, t, d = x.shape
        q, k, v = (z.reshape(b, t, self.num_heads, -1) for z in jnp.split(self.qkv(x), 3, -1))
        g = jax.nn.log_sigmoid(self.gate(x)) / 16.0
        o, _ = pallas_kernels.simple_gla(q, k, v, g)
        return self.out(o.reshape(b, t, d))
