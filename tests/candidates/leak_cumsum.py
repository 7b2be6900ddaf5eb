# expect: causality: reads the future
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """A reversed cumulative sum: position t sums positions t..T-1."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        summed = jnp.cumsum(x[:, ::-1], axis=1)[:, ::-1]
        return self.proj(summed / x.shape[1])
