# expect: policy: import os
import os

from flax import nnx


class Mixer(nnx.Module):
    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)
        os.makedirs("escape", exist_ok=True)

    def __call__(self, x):
        return self.proj(x)
