# expect: gradients: the gradient is not the forward pass's
import jax
import jax.numpy as jnp
from flax import nnx


@jax.custom_vjp
def amplify(x):
    return x


def amplify_forward(x):
    return x, None


def amplify_backward(residual, grad):
    return (1e4 * grad,)


amplify.defvjp(amplify_forward, amplify_backward)


class Mixer(nnx.Module):
    """A causal token shift whose backward pass is 10^4 times its true derivative."""

    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        mixed = x + jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # with the previous token
        return amplify(self.proj(mixed))
