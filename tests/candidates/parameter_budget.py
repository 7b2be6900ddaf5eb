# expect: params: exceed the budget
import jax
from flax import nnx


class Mixer(nnx.Module):
    """About 100x the baseline's parameters."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.up = nnx.Linear(d_model, 300 * d_model, rngs=rngs)
        self.down = nnx.Linear(300 * d_model, d_model, rngs=rngs)

    def __call__(self, x):
        return self.down(jax.nn.gelu(self.up(x)))
