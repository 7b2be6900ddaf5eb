# expect: policy: import socket
import socket

from flax import nnx


class Mixer(nnx.Module):
    def __init__(self, d_model, num_heads, *, rngs):
        socket.create_connection(("127.0.0.1", 9))
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x):
        return self.proj(x)
