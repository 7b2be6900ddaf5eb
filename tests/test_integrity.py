"""A candidate that patches the harness's modules is caught; honest work changes nothing.

In-process (no sandbox, no static policy): the integrity check alone. Every patch a test
candidate makes is undone afterwards, so the rest of the suite runs on the real modules."""

from __future__ import annotations

import contextlib
import sys

import jax
import jax.numpy as jnp
import optax
import pytest
from flax import nnx
from train_testing import tiny

from asi_jax.candidates.integrity import Integrity, Tampering
from asi_jax.models.mixers import get_mixer
from asi_jax.tasks.linear_attention import checker
from asi_jax.train.trainer import train

CHECK = checker.CheckConfig(d_model=32, num_heads=2, seq_lens=(1, 19), cost_seq_len=64)


@contextlib.contextmanager
def _restored(*targets: tuple[object, str]):
    """Puts back the attributes a test candidate rebinds or deletes."""
    saved = [(obj, name, vars(obj)[name]) for obj, name in targets]
    try:
        yield
    finally:
        for obj, name, value in saved:
            if isinstance(obj, type):
                type.__setattr__(obj, name, value)
            else:
                setattr(obj, name, value)


_MIXER_SOURCE = """
import jax, jax.numpy as jnp, optax
from flax import nnx

class Mixer(nnx.Module):
    def __init__(self, d_model, num_heads, *, rngs):
        self.proj = nnx.Linear(d_model, d_model, rngs=rngs)
        {init_body}

    def __call__(self, x):
        {call_body}
        return jnp.cumsum(self.proj(x), axis=1) / (1 + jnp.arange(x.shape[1]))[:, None]
"""


def _mixer(init_body: str = "pass", call_body: str = "pass"):
    """A small honest Mixer whose __init__ / __call__ also run the given lines."""
    namespace: dict = {}
    source = _MIXER_SOURCE.format(init_body=init_body, call_body=call_body)
    exec(compile(source, "candidate.py", "exec"), namespace)
    return namespace["Mixer"]


@pytest.mark.slow  # checks and trains several mixers: 1-1.5 min
def test_checking_and_training_honest_mixers_changes_nothing(tmp_path):
    integrity = Integrity()
    assert len(integrity) > 10_000  # jax, flax, optax, numpy, ... are all watched
    for name in ("deltanet",):
        mixer = integrity.guard(get_mixer(name))
        assert checker.check_mixer(mixer, CHECK)["ok"]
        result = train(
            tiny(steps=4, checkpoint_every=4), tmp_path / name, mixer=mixer, log=lambda line: None
        )  # orbax counts its saves in a class attribute
        assert result["status"] == "completed"
    integrity.verify()
    assert integrity.violations == []


@pytest.mark.parametrize(
    ("where", "patch", "restore", "named"),
    [
        ("init", "_np = jnp; _np.max = lambda *a, **k: 0.0", (jnp, "max"), "jax.numpy.max"),
        ("call", "L = jax.stages.Lowered; L.cost_analysis = lambda self: {}",
         (jax.stages.Lowered, "cost_analysis"), "jax.stages.Lowered.cost_analysis"),
        ("call", "optax.softmax_cross_entropy_with_integer_labels = lambda l, t: 0 * l[..., 0]",
         (optax, "softmax_cross_entropy_with_integer_labels"),
         "optax.softmax_cross_entropy_with_integer_labels"),
        ("init", "del nnx.Linear.__call__", (nnx.Linear, "__call__"), "Linear.__call__"),
    ],
)  # fmt: skip
def test_a_patch_left_in_place_is_caught_when_the_candidates_code_returns(
    where, patch, restore, named
):
    integrity = Integrity()
    mixer = integrity.guard(_mixer(**{f"{where}_body": patch}))
    with _restored(restore):
        with pytest.raises(Tampering, match=rf"changed .*{named}.* \(after Mixer.__{where}__\)"):
            module = mixer(32, 2, rngs=nnx.Rngs(0))
            jax.jit(lambda x: module(x))(jnp.ones((1, 8, 32)))
        report = checker.check_mixer(mixer, CHECK)  # the checker's verdict is a failure too
        assert any(named in changed for changed in integrity.changes())
    assert not report["ok"]
    assert integrity.violations and named in integrity.violations[0]


def test_a_patch_undone_within_the_call_is_the_candidates_own_business():
    integrity = Integrity()
    swap = "original = jnp.tanh; jnp.tanh = jnp.sin; y = jnp.tanh(x); jnp.tanh = original"
    mixer = integrity.guard(_mixer(call_body=swap))
    assert checker.check_mixer(mixer, CHECK)["ok"]
    integrity.verify()


def test_a_module_swapped_in_sys_modules_is_caught():
    integrity = Integrity()
    mixer = integrity.guard(_mixer(init_body="import sys; sys.modules['optax'].adamw = None"))
    with _restored((optax, "adamw")), pytest.raises(Tampering, match=r"optax\.adamw"):
        mixer(32, 2, rngs=nnx.Rngs(0))
    assert sys.modules["optax"].adamw is not None


def test_the_worker_rejects_a_candidate_that_patches_the_loss_as_tampering(tmp_path):
    """Sent straight to the worker (no static policy): a mixer whose call replaces the loss
    function with one that reports 0 gets a 'tampering' verdict, not a trained result."""
    import dataclasses

    from asi_jax.candidates.sandbox import Limits, run_worker
    from asi_jax.train.config import to_dict

    source = _MIXER_SOURCE.format(
        init_body="pass",
        call_body="optax.softmax_cross_entropy_with_integer_labels = lambda l, t: 0 * l[..., 0]",
    )
    (tmp_path / "candidate.py").write_text(source)
    request = {"job": "evaluate", "task": "linear_attention", "check": dataclasses.asdict(CHECK),
               "train": to_dict(tiny(steps=4)), "baseline": None, "pinned": None}  # fmt: skip
    outcome = run_worker(request, tmp_path, Limits(wall_seconds=300))
    assert outcome.ok, outcome.error
    response = outcome.response
    assert response["ok"] is False and response["stage"] == "tampering", response
    assert "optax.softmax_cross_entropy_with_integer_labels" in response["reason"]
    assert "train" not in response  # no figures reported from the patched run
