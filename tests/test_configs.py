"""Every configs/*.py builds a valid experiment, with every documented variant."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from flax import nnx

from asi_jax.evolution.config import from_config_dict as evolution_config
from asi_jax.models.lm import build_model, count_params
from asi_jax.models.mixers import get_mixer
from asi_jax.tasks import get_task
from asi_jax.train.config import from_config_dict

ALL_CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.py"))
EVOLUTION = ("quickstart", "quickstart_optimizer", "evolve_text")
# Configs that need data prepared first; each has its own test (tests/test_plan.py dry-runs
# evolve_asi_arch on shards made by prepare_data).
NEEDS_DATA = ("evolve_asi_arch",)
EVOLUTION_CONFIGS = [p for p in ALL_CONFIGS if p.stem in EVOLUTION]
CONFIGS = [p for p in ALL_CONFIGS if p not in EVOLUTION_CONFIGS and p.stem not in NEEDS_DATA]
VARIANTS = {
    "tiny_cpu": ["mqar", "bytes"],
    "explore_20m": ["bytes", "mqar"],
    "verify_340m": [None],
    "mqar_zoology": [None],
}


def _get_config(path: Path, variant):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "python scripts/" in module.__doc__, "the docstring gives the command to run"
    return module.get_config() if variant is None else module.get_config(variant)


@pytest.mark.parametrize(
    ("path", "variant"),
    [(p, v) for p in CONFIGS for v in VARIANTS[p.stem]],
    ids=lambda x: getattr(x, "stem", str(x)),
)
def test_config_converts(path, variant):
    experiment = from_config_dict(_get_config(path, variant))
    assert experiment.model.vocab_size == experiment.data.vocab_size


def test_every_config_file_is_covered():
    assert {p.stem for p in CONFIGS} == set(VARIANTS)
    assert {p.stem for p in ALL_CONFIGS} == {*VARIANTS, *EVOLUTION, *NEEDS_DATA}
    assert [p.stem for p in EVOLUTION_CONFIGS] == [
        "evolve_text", "quickstart", "quickstart_optimizer"]  # fmt: skip


@pytest.mark.parametrize("path", EVOLUTION_CONFIGS, ids=lambda p: p.stem)
def test_evolution_config_converts(path):
    config = evolution_config(_get_config(path, None))
    assert config.reference_baseline in config.baselines
    assert isinstance(config.check, get_task(config.task).check_config)
    for stage in (config.explore, config.verify.experiment):
        assert stage.model.vocab_size == stage.data.vocab_size


@pytest.mark.parametrize(("name", "low", "high"), [("explore_20m", 15e6, 25e6),
                                                    ("verify_340m", 300e6, 380e6)])  # fmt: skip
def test_scales_are_as_named(name, low, high):
    path = next(p for p in CONFIGS if p.stem == name)
    experiment = from_config_dict(_get_config(path, VARIANTS[name][0]))
    mixer = get_mixer(experiment.mixer)
    abstract = nnx.eval_shape(lambda: build_model(experiment.model, mixer, seed=0))
    total = count_params(abstract)["total"]
    assert low <= total <= high, total
