# expect: causality|train: reads the future
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """Causal at the lengths a checker is likely to pick, but at the power-of-two lengths
    that training uses (32 and up) each position also sees the next one. Caught only where
    the checker is told the training shape (this file's expectation names the train stage
    so that the test passes a training config; the leak must be caught before training)."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        length = x.shape[1]
        mixed = x + jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # with the previous token
        if length >= 32 and length & (length - 1) == 0:
            mixed = mixed + jnp.roll(x, -1, axis=1)
        return self.proj(mixed)
