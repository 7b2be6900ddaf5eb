"""The baseline optimizers: optax's AdamW, Lion and Adafactor, as candidate factories.

Each function here is both the trusted symbol the worker runs for the baseline and, renamed
`make_optimizer` under this module's imports, the source the agents read (`source_of`), so
the two cannot drift apart. The file imports only what a candidate may, and its functions
pass the policy (a test checks it). Hyperparameters are fixed, as a candidate's are: the
stage's schedule is the only input.
"""

from __future__ import annotations

import inspect

import jax
import optax

_HEADER = "import jax\nimport optax\n"


def matrices(params):
    """Weight decay applies to tensors of rank >= 2 (not to biases, norms and scalars)."""
    return jax.tree.map(lambda p: p.ndim >= 2, params)


def adamw(learning_rate):
    """AdamW (Loshchilov and Hutter): Adam's bias-corrected moments (beta1 0.9, beta2 0.95,
    eps 1e-8) with decoupled weight decay 0.1 on matrices, as the trainer's default."""
    return optax.adamw(learning_rate, b1=0.9, b2=0.95, eps=1e-8, weight_decay=0.1,
                       mask=matrices)  # fmt: skip


def lion(learning_rate):
    """Lion (Chen et al.): the sign of an interpolation of momentum and gradient (beta1 0.9),
    momentum tracked with beta2 0.99; one state tensor per parameter. The paper's advice:
    a 3-10x smaller learning rate and larger weight decay than AdamW (here 0.3x and 0.3)."""
    return optax.lion(lambda step: 0.3 * learning_rate(step), b1=0.9, b2=0.99,
                      weight_decay=0.3, mask=matrices)  # fmt: skip


def adafactor(learning_rate):
    """Adafactor (Shazeer and Stern): factored second moments (row and column EMAs, decay
    1 - t^-0.8) for matrices of both sides >= 32, update clipping at RMS 1, no momentum.
    Absolute step sizes (not scaled by the parameters' RMS), on the stage's schedule."""
    return optax.adafactor(learning_rate, min_dim_size_to_factor=32,
                           multiply_by_parameter_scale=False, clipping_threshold=1.0)  # fmt: skip


FACTORIES = {"adamw": adamw, "lion": lion, "adafactor": adafactor}
_HELPERS = {"adamw": (matrices,), "lion": (matrices,), "adafactor": ()}


def source_of(name: str) -> str:
    """The candidate-format source of the baseline `name`: the same function, renamed."""
    function = FACTORIES[name]
    parts = [f'"""The {name} baseline, from optax."""\n\n{_HEADER}']
    parts += [inspect.getsource(helper) for helper in _HELPERS[name]]
    parts.append(inspect.getsource(function).replace(f"def {name}(", "def make_optimizer(", 1))
    return "\n\n".join(parts)


def description_of(name: str) -> str:
    """The baseline's docstring as one paragraph."""
    return " ".join(inspect.getdoc(FACTORIES[name]).split())
