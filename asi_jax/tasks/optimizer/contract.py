"""What an optimizer candidate may import and reach, and what it defines (the policy's contract).

A candidate is one file defining `make_optimizer(learning_rate)`, which returns an
`optax.GradientTransformation`. Its numeric vocabulary is jax's arrays, trees and lax, and
optax's building blocks: the top-level transformations and combinators, and the `tree_utils`,
`tree`, `schedules` and `transforms` modules.

Left out on purpose (optax 0.2.8): `optax.contrib` (whole optimizers to copy, and Sophia
prints through `jax.debug`), `optax.experimental`, `optax.second_order`, `optax.perturbations`,
`optax.losses`, `optax.projections`, `optax.assignment` and `optax.microbatching` (nothing an
update rule needs), and optax's private `_src`. On the jax side as for mixers: no
`jax.debug`, `jax.experimental`, `jax.profiler`, `jax.extend`, `jax.stages` and the rest.
Two optax entry points can print from compiled code (the line searches' `verbose=True`, by
`jax.debug.print`); the policy cannot refuse an argument, so the behavioural check refuses
any callback or side effect in the traced `init` and `update` (stage "pure").
"""

from __future__ import annotations

from asi_jax.candidates.policy import Contract

ALLOWED_IMPORTS = frozenset(
    {
        "jax", "jax.numpy", "jax.lax", "jax.tree", "jax.tree_util", "optax", "optax.tree_utils",
        "optax.tree", "optax.schedules", "optax.transforms", "math", "functools", "typing",
    }
)  # fmt: skip
ALLOWED_MODULES = ALLOWED_IMPORTS | frozenset(
    {"jax.numpy.linalg", "jax.lax.linalg", "jax.nn", "jax.random", "jax.dtypes", "jax.typing"}
)

OPTIMIZER = Contract(
    imports=ALLOWED_IMPORTS,
    modules=ALLOWED_MODULES,
    symbol="make_optimizer",
    symbol_kind="function",
    described="`def make_optimizer(learning_rate) -> optax.GradientTransformation`",
)

CONTRACT_TEXT = """\
A candidate is one Python file that defines, at the top level,

    def make_optimizer(learning_rate) -> optax.GradientTransformation

`learning_rate` is an optax schedule (a callable from the step count to a scalar): the
stage's warmup-cosine schedule, the same for every candidate and the reference. The factory
returns a transformation whose `init(params)` builds the state and whose
`update(grads, state, params)` returns (updates, new_state); the trainer applies
`optax.apply_updates(params, updates)` after global-norm clipping of the gradients, which it
does itself. Scale the schedule inside (e.g. `optax.scale_by_learning_rate(learning_rate)`);
multiplying it by a constant is allowed.

Allowed imports: jax, jax.numpy, jax.lax, jax.tree, jax.tree_util (and jax.nn, jax.random,
jax.numpy.linalg, jax.lax.linalg), optax with optax.tree_utils, optax.tree, optax.schedules
and optax.transforms, math, functools and typing. Not optax.contrib, jax.debug or
jax.experimental, no callbacks, no files, no Python `while` loops, no `global`, no dunders
or private attributes. State classes derive from typing.NamedTuple; Python-side state
(counters, lists kept between calls) is not allowed: every result must depend only on the
gradients, the parameters, the state and the step.

The sandboxed check, before training, on a small tree of float32 and bfloat16 parameters:
init and several updates with random gradients run; the traced init and update hold no
callback or side effect; updates are finite and have the parameters' tree structure,
shapes and dtypes; the state holds at most `max_state_ratio` times the parameters' elements
(AdamW holds 2); repeating an update on the same inputs, after other calls and with a fresh
factory, gives bit-identical results; jitted and eager updates agree; updates are not all
zero; and a few steps descend on a simple quadratic.

Fitness: the candidate trains a fixed small language model (the stage's config: its mixer,
data, steps, schedule and gradient clipping) and is scored on the final held-out loss and
held-out next-token accuracy, relative to AdamW trained in the same run, config and seed.
"""
