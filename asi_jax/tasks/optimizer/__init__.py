"""Optimizer discovery: candidates are `make_optimizer(learning_rate)` factories of optax
gradient transformations, scored by training a fixed small language model against AdamW.

    task = asi_jax.tasks.get_task("optimizer")

Modules: `contract` (the policy's contract and the prompt text), `checker` (the sandboxed
behavioural check), `baselines` (optax's AdamW, Lion, Adafactor), `grammar` (designs and
their rendering), `agents` (offline researcher, analyser, judge), `task` (the `Task`), and
`cognition.jsonl` (research entries on optimizers).
"""

from asi_jax.tasks import register
from asi_jax.tasks.optimizer.task import OptimizerTask

register(OptimizerTask)

__all__ = ["OptimizerTask"]
