# expect: policy: while
from flax import nnx


class Mixer(nnx.Module):
    def __init__(self, d_model, num_heads, *, rngs):
        while True:
            pass

    def __call__(self, x):
        return x
