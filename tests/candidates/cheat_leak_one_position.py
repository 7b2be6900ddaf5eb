# expect: causality: reads the future
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """A causal token shift, except that position 20 also sees position 21: a leak where
    the old checker, which cut the sequence at positions 0, 13 and 30 only, never looked."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        length = x.shape[1]
        mixed = x + jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # with the previous token
        if length > 21:
            mixed = mixed.at[:, 20].add(x[:, 21])
        return self.proj(mixed)
