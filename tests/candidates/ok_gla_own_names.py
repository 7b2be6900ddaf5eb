"""An ordinary candidate: gated linear attention on an op imported by name, with attributes
of its own named `load` (the decay gate: how much each token loads into the state) and `save`
(the output projection), which the policy once took for numpy's file functions."""

import functools
from typing import Optional

import jax
import jax.numpy as jnp
from flax import nnx

from pallas_kernels.ops import simple_gla


def l2_normalize(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    x = x.astype(jnp.float32)
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class Mixer(nnx.Module):
    def __init__(self, d_model: int, num_heads: int, *, rngs: nnx.Rngs, conv_size: int = 4):
        self.num_heads = num_heads
        linear = functools.partial(nnx.Linear, use_bias=False, rngs=rngs)
        self.qkv = linear(d_model, 3 * d_model)
        self.conv = nnx.Conv(
            3 * d_model,
            3 * d_model,
            kernel_size=(conv_size,),
            feature_group_count=3 * d_model,
            padding="CAUSAL",
            rngs=rngs,
        )
        self.load = nnx.Linear(d_model, num_heads, rngs=rngs)
        self.save = linear(d_model, d_model)
        self.temperature = nnx.Variable(jnp.asarray(16.0))
        self._eps = 1e-6

    def __call__(self, x: jax.Array, mask: Optional[jax.Array] = None) -> jax.Array:
        b, t, d = x.shape
        h = self.num_heads
        q, k, v = jnp.split(jax.nn.silu(self.conv(self.qkv(x))), 3, axis=-1)
        q, k, v = (z.reshape(b, t, h, d // h) for z in (q, k, v))
        if mask is not None:
            v = v * mask[:, :, None, None]
        g = jax.nn.log_sigmoid(self.load(x).astype(jnp.float32)) / self.temperature.value
        o, _ = simple_gla(l2_normalize(q, self._eps), l2_normalize(k, self._eps), v, g)
        return self.save(o.reshape(b, t, d).astype(x.dtype))
