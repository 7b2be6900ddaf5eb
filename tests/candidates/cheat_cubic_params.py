# expect: params: at twice the width .* exceed the budget
import jax.numpy as jnp
from flax import nnx


class Mixer(nnx.Module):
    """A third-order tensor mixing each input with the previous token: d_model^3 / 8
    parameters, within the budget at the checked width and far over it at twice the width."""

    def __init__(self, d_model, num_heads, *, rngs):
        rank = d_model // 8
        self.down = nnx.Linear(d_model, rank, use_bias=False, rngs=rngs)
        init = nnx.initializers.normal(d_model**-0.5)
        self.tensor = nnx.Param(init(rngs.params(), (rank, d_model, d_model)))

    def __call__(self, x):
        mixed = x + jnp.pad(x, ((0, 0), (1, 0), (0, 0)))[:, :-1]  # with the previous token
        return jnp.einsum("btr,rde,bte->btd", self.down(x), self.tensor[...], mixed)
