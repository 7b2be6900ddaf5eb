"""Every baseline, shown to a model as a parent, is a valid candidate file that computes what
the registry class computes (what an LLM sees of a baseline is what it can build on)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from asi_jax.agents.base import Record
from asi_jax.candidates.policy import check_source
from asi_jax.models.mixers import MIXERS
from asi_jax.tasks.linear_attention.contract import MIXER
from asi_jax.tasks.linear_attention.task import LinearAttentionTask, standalone_source

TASK = LinearAttentionTask()


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_each_baseline_is_a_valid_candidate_file_computing_the_same(name):
    baseline = TASK.baselines()[name]
    record = Record(id=1, name=name, parent_id=None, motivation="", code=baseline.source,
                    design=baseline.design, status="evaluated")  # fmt: skip
    shown = TASK.candidate_source(record)
    assert check_source(shown, MIXER) == [], name
    source = standalone_source(name)
    assert check_source(source, MIXER) == [], name
    namespace: dict = {}
    exec(compile(source, f"<{name}>", "exec"), namespace)  # our own code, not a candidate's
    x = jax.random.normal(jax.random.key(0), (2, 12, 32))
    ours = namespace["Mixer"](32, 2, rngs=nnx.Rngs(0))(x)
    registry = MIXERS[name](32, 2, rngs=nnx.Rngs(0))(x)
    np.testing.assert_allclose(np.asarray(ours), np.asarray(registry), rtol=1e-6, atol=1e-6)
