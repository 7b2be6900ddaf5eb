# expect: instantiate|sandbox: memory|RESOURCE_EXHAUSTED|SIGKILL|Unable to allocate|bad_alloc
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """Allocates 50 GB at construction."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.buffer = nnx.Variable(jnp.zeros((50 * 2**30 // 4,), jnp.float32))
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        return self.proj(x)
