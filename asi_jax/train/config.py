"""Typed experiment configuration, converted once from the ml_collections ConfigDict.

Library code sees only these frozen dataclasses. `from_config_dict` rejects unknown and
misspelt keys and wrong types with the dotted path of the offending field. Config files
build their ConfigDict with `complete`, so it holds every field with its default and any
field can be overridden on the command line (`--config.a.b=value`; ml_collections refuses a
field the ConfigDict lacks).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from ml_collections import ConfigDict

from asi_jax.data.pipeline import DataConfig
from asi_jax.evals.downstream import DownstreamConfig
from asi_jax.models.lm import ModelConfig
from pallas_kernels import IMPLS


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 3e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1  # cosine decays to learning_rate * min_lr_ratio
    weight_decay: float = 0.1
    b1: float = 0.9
    b2: float = 0.95
    clip_norm: float = 1.0


@dataclasses.dataclass(frozen=True)
class MonitorConfig:
    """When to stop a run early; see `asi_jax.train.monitor`."""

    min_loss: float = 0.0  # a training loss below this is abnormal for the task (a leak)
    max_step_seconds: float = float("inf")  # a step slower than this (after compile) is too slow
    patience: int = 3  # consecutive slow logged steps before stopping


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = 200
    log_every: int = 10
    eval_every: int = 0  # 0: only at the end
    checkpoint_every: int = 50  # 0: no checkpoints
    keep_checkpoints: int = 2
    compute_dtype: str = "float32"  # or "bfloat16" (parameters stay float32)
    mesh_data: int = -1  # devices on the data axis; -1: all that fsdp leaves
    mesh_fsdp: int = 1  # devices on the fsdp axis; -1: all that data leaves
    # What the linear-attention ops' impl="auto" runs (candidates' calls too): "auto" (Pallas
    # where a device run proved it, else chunk), "pallas", "chunk" or "recurrent".
    kernel_impl: str = "auto"

    def __post_init__(self):
        if self.kernel_impl not in IMPLS:
            raise ValueError(f"train.kernel_impl must be one of {IMPLS}, got {self.kernel_impl!r}")
        if self.compute_dtype not in ("float32", "bfloat16"):
            raise ValueError(
                f"train.compute_dtype must be 'float32' or 'bfloat16', got {self.compute_dtype!r}"
            )
        if self.steps < 1 or self.log_every < 1:
            raise ValueError("train.steps and train.log_every must be >= 1")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    seed: int = 0
    mixer: str = "deltanet"  # a baseline name from asi_jax.models.mixers, or a candidate file
    model: ModelConfig = ModelConfig(vocab_size=256, d_model=64, num_layers=2, num_heads=4)
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    monitor: MonitorConfig = MonitorConfig()
    evals: DownstreamConfig = DownstreamConfig()  # benchmarks scored at the end of a run

    def __post_init__(self):
        if self.model.vocab_size == 0:  # the data's: a tokenizer file's size, 256 for bytes
            object.__setattr__(
                self, "model", dataclasses.replace(self.model, vocab_size=self.data.vocab_size)
            )
        if self.model.vocab_size != self.data.vocab_size:
            raise ValueError(
                f"model.vocab_size ({self.model.vocab_size}) must equal the data's vocabulary "
                f"({self.data.vocab_size} for data.kind={self.data.kind!r})"
            )
        if self.evals.benchmarks and self.data.kind == "mqar":
            raise ValueError(
                "evals.benchmarks are text benchmarks: they need text data (data.kind "
                "'bytes' or 'shards')"
            )


def convert(cls: type, values: Mapping[str, Any], path: str = ""):
    """An instance of the dataclass `cls` from a nested mapping, checked field by field;
    errors name the dotted path (`path` prefixes it)."""
    if not isinstance(values, Mapping):
        raise TypeError(f"{path or 'config'} must be a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(
            f"unknown config keys {[f'{path}{k}' for k in unknown]}; "
            f"{path or 'the top level'} has {sorted(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}{name}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{path or 'config'}: {e}") from None


def _dataclass_arm(hint) -> type | None:
    """The dataclass a field holds (also through `Config | None`), else None."""
    if dataclasses.is_dataclass(hint):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        arms = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        return arms[0] if len(arms) == 1 else None
    return None


def _filled(cls: type, base: Any, values: Mapping[str, Any], path: str) -> dict[str, Any]:
    """`base` (an instance of `cls`) as a nested dict, with `values` merged over it."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown config keys {[f'{path}{k}' for k in unknown]}")
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        current, given = getattr(base, f.name), values.get(f.name, dataclasses.MISSING)
        arm = _dataclass_arm(hints[f.name])
        if arm is not None and isinstance(given, Mapping):
            start = current if current is not None else arm()
            out[f.name] = _filled(arm, start, given, f"{path}{f.name}.")
        elif arm is not None and given is dataclasses.MISSING and current is not None:
            out[f.name] = _filled(arm, current, {}, f"{path}{f.name}.")
        else:
            out[f.name] = current if given is dataclasses.MISSING else given
    return out


def complete(cls: type, values: Mapping[str, Any]) -> ConfigDict:
    """A ConfigDict with every field of the config dataclass `cls` at its default, and
    `values` (nested mappings, as a config file writes them) merged over them."""
    return ConfigDict(_filled(cls, cls(), values, ""))


def _coerce(hint, value, path: str):
    if hint is Any:  # checked by the owner (an evolution config's task-specific `check`)
        return value
    if dataclasses.is_dataclass(hint):
        return convert(hint, value, path + ".")
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):  # `Config | None`: a mapping is the config
        if value is None:
            return None
        arms = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(arms) == 1:
            return _coerce(arms[0], value, path)
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise TypeError(f"{path} must be a list, got {value!r}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and value in ("inf", "-inf"):  # how to_dict writes infinities
        return float(value)
    if isinstance(hint, type) and not isinstance(value, hint):
        raise TypeError(f"{path} must be {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_config_dict(config: Mapping[str, Any], cls: type = ExperimentConfig):
    """A config dataclass (`ExperimentConfig` unless `cls` says otherwise) from a ConfigDict
    or any nested mapping, validated field by field."""
    to_dict = getattr(config, "to_dict", None)
    return convert(cls, to_dict() if to_dict else config)


def to_dict(config) -> dict[str, Any]:
    """A JSON-serialisable dict of a config dataclass (inf becomes a string)."""

    def clean(x):
        if isinstance(x, float) and x == float("inf"):
            return "inf"
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [clean(v) for v in x]
        return x

    return clean(dataclasses.asdict(config))
