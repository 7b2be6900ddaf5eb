# expect: finite: not finite
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        return self.proj(x) * jnp.log(-jnp.ones_like(x))
