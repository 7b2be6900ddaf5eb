"""The tasks the loop can evolve, by name.

    task = get_task("linear_attention")

A task registers itself when its package is imported; `get_task` imports every package in
this folder on first use, so a new task is one new folder. A task defined elsewhere (a test's
or a user's file) registers when its module is imported, with `register`.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys

from asi_jax.tasks.base import Baseline, Figure, Figures, Task

__all__ = ["Baseline", "Figure", "Figures", "Task", "get_task", "import_task_file", "names",
           "register"]  # fmt: skip

_REGISTRY: dict[str, type[Task]] = {}


def register(task: type[Task]) -> type[Task]:
    """Adds `task` under `task.name` (usable as a class decorator); a name taken by another
    class is refused."""
    existing = _REGISTRY.get(task.name)
    if existing is not None and existing is not task:
        raise ValueError(f"a task named {task.name!r} is registered already ({existing})")
    _REGISTRY[task.name] = task
    return task


def _load_built_in() -> None:
    """Imports the task packages in this folder (each registers its task)."""
    for module in pkgutil.iter_modules(__path__):
        if module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}")


def names() -> list[str]:
    _load_built_in()
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    """The registered task `name`; a clear error listing the known ones otherwise."""
    if name not in _REGISTRY:
        _load_built_in()
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(_REGISTRY)}")
    return _REGISTRY[name]()


def import_task_file(module: str, path: str) -> None:
    """Imports the file of a task defined outside asi_jax as `module` (once per process), so
    the task registers and its classes unpickle: in a sandboxed worker or on a Ray node."""
    if module in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(module, path)
    loaded = importlib.util.module_from_spec(spec)
    sys.modules[module] = loaded  # dataclasses look their module up there
    spec.loader.exec_module(loaded)
