# expect: causality|train: reads the future|abnormally low
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """Causal at small batch sizes, but with 8 or more sequences in a batch it adds the next
    position's input: the next token leaks. The checker tries the training batch size, so it
    is caught there; the training monitor's abnormally low loss is the guard behind it."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        if x.shape[0] >= 8:
            x = x + 4.0 * jnp.roll(x, -1, axis=1)
        return self.proj(x)
