"""Detects a candidate patching the code that judges it.

The checker, the trainer and the evaluation run in the worker process beside the candidate's
code, so a candidate that rebinds `jnp.max`, a method of `jax.stages.Lowered` or the loss
function could fool the causality test, hide FLOPs or report a loss it did not reach. The
static policy refuses the ways to reach those objects; this is the check behind it:

    integrity = Integrity()              # before the candidate is imported
    Mixer = integrity.guard(Mixer)       # verifies right after each of its __init__ / __call__
    ...
    integrity.verify()                   # at each stage boundary; raises Tampering

`Integrity()` records every public global of the modules the harness relies on (jax, flax,
optax, numpy, orbax, grain, einops, asi_jax, pallas_kernels, the standard modules a mixer may
import, builtins) and every entry in the dicts of the classes they define. `verify` compares
identities: an entry rebound or removed is tampering. Entries added later are not (libraries
load lazily). A candidate that patches and restores within one call of its own code changes
only its own computation, which is its to define; one that leaves a patch in place is caught
when its call returns, before any harness code runs after it.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

# Top-level packages whose modules are watched.
WATCHED = (
    "jax", "jaxlib", "flax", "optax", "numpy", "ml_dtypes", "orbax", "grain", "einops",
    "asi_jax", "pallas_kernels", "builtins", "math", "functools", "typing", "operator",
)  # fmt: skip
# Class-dict entries that the libraries themselves rebind while running (found by running
# the checker and a training run of a baseline, and comparing).
_VOLATILE = frozenset(
    {"grain._src.python.dataset.transformations.prefetch.PrefetchDatasetIterator.__next__"}
)


_DATA = (int, float, str, bytes, bool, type(None))


def _private_data(key: str, before: Any, after: Any) -> bool:
    """A class's private counter or flag (orbax numbers its operations in a class attribute):
    the libraries' state, not code. The policy keeps candidates from private names anyway."""
    name = key.rpartition(".")[2]
    private = name.startswith("_") and not name.startswith("__")
    return private and isinstance(before, _DATA) and isinstance(after, _DATA)


class Tampering(RuntimeError):
    """The candidate changed code or data of a module the harness relies on."""


def _watched(name: str) -> bool:
    return name.partition(".")[0] in WATCHED


def _entries() -> dict[str, Any]:
    """Every watched module global (public names) and class-dict entry, by dotted name."""
    found: dict[str, Any] = {}
    for module_name, module in list(sys.modules.items()):
        if not isinstance(module, types.ModuleType) or not _watched(module_name):
            continue
        for name, value in list(vars(module).items()):
            if name.startswith("_"):
                continue  # the libraries' own state (backends, caches) changes as they run
            found[f"{module_name}.{name}"] = value
            if isinstance(value, type) and _watched(getattr(value, "__module__", "") or ""):
                for attribute, member in list(vars(value).items()):
                    found[f"{module_name}.{name}.{attribute}"] = member
    return found


class Integrity:
    """A snapshot of the watched modules; see the module docstring."""

    def __init__(self) -> None:
        self._snapshot = _entries()  # the objects themselves, compared by identity
        self.violations: list[str] = []  # sticky: what any check found

    def __len__(self) -> int:
        return len(self._snapshot)

    def changes(self) -> list[str]:
        """Watched entries rebound or removed since the snapshot (a library's private
        counters and flags, plain data under a `_name`, excepted)."""
        now, gone = _entries(), object()
        return sorted(k for k, v in self._snapshot.items()
                      if now.get(k, gone) is not v and k not in _VOLATILE
                      and not _private_data(k, v, now.get(k, gone)))  # fmt: skip

    def verify(self, when: str = "") -> None:
        """Raises `Tampering` naming what changed (and remembers it in `violations`)."""
        changed = self.changes()
        if changed:
            shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5
                                              else "")  # fmt: skip
            message = f"the candidate changed {shown}" + (f" ({when})" if when else "")
            self.violations.append(message)
            raise Tampering(message)

    def guard(self, symbol: Any) -> Any:
        """The candidate's symbol with `verify` after each use, so a patch left in place by
        its code is caught at once: for a class, a subclass whose construction and calls are
        followed by it; for a function, a wrapper."""
        integrity = self
        if not isinstance(symbol, type):

            @functools.wraps(symbol)
            def guarded(*args, **kwargs):
                out = symbol(*args, **kwargs)
                integrity.verify(f"after {symbol.__name__}")
                return out

            return guarded
        cls = symbol

        class Guarded(cls):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                integrity.verify(f"after {cls.__name__}.__init__")

            def __call__(self, *args, **kwargs):
                out = super().__call__(*args, **kwargs)
                integrity.verify(f"after {cls.__name__}.__call__")
                return out

        Guarded.__name__ = Guarded.__qualname__ = cls.__name__
        Guarded.__module__ = cls.__module__
        return Guarded
