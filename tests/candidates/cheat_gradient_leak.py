# expect: causality: with respect to later inputs
import jax
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """A causal token shift whose outputs carry a term that is zero in the forward pass but
    whose gradient reaches the next position: added to channel 0 and subtracted from channel
    1, so the gradient of the channel sum (what the old checker differentiated) cancels."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        d_model = x.shape[-1]
        mixed = x + jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # with the previous token
        ahead = jnp.roll(x[..., :1], -1, axis=1)
        ghost = ahead - jax.lax.stop_gradient(ahead)
        sign = jnp.concatenate([jnp.ones(1), -jnp.ones(1), jnp.zeros(d_model - 2)])
        return self.proj(mixed) + ghost * sign
