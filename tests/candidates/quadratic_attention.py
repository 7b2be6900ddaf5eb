# expect: cost: not sub-quadratic
import jax
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """Causal softmax attention written out: [T, T] scores, quadratic in T."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.qkv = nnx.Linear(d_model, 3 * d_model, rngs=rngs)

    def __call__(self, x):
        q, k, v = jnp.split(self.qkv(x), 3, axis=-1)
        scores = jnp.einsum("btd,bsd->bts", q, k) / jnp.sqrt(x.shape[-1])
        mask = jnp.tril(jnp.ones((x.shape[1], x.shape[1]), bool))
        weights = jax.nn.softmax(jnp.where(mask, scores, -1e9), axis=-1)
        return jnp.einsum("bts,bsd->btd", weights, v)
