# expect: causality: reads the future
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """Causal at lengths that are multiples of 16 (the old checker's one causality length,
    48, is); at any other length each position also sees the next one."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        length = x.shape[1]
        mixed = x + jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # with the previous token
        if length % 16:
            mixed = mixed + jnp.roll(x, -1, axis=1)
        return self.proj(mixed)
