# expect: sandbox: timed out
from flax import nnx


class Mixer(nnx.Module):
    """Never finishes building: a Python loop of 10^12 steps (no while needed)."""

    def __init__(self, d_model, num_heads, *, rngs):
        total = 0
        for i in range(10**12):
            total += i
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        return self.proj(x)
