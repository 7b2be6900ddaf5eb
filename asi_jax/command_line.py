"""What every script shares: mistakes in a command line become one line, not a traceback.

    if __name__ == "__main__":
        command_line.run(main)

`run` is `absl.app.run` with a flags parser that turns a missing or broken config file, an
override of a field the config lacks (naming the nearest fields it has) and a malformed flag
value into one line on stderr. In `main`, raise `UsageError` for any other mistake in what
the user asked for, and `RunError` when the run itself fails. Exit status: 2 when nothing
ran (a usage error, a workdir that cannot be used), 1 when the run failed, 130 when it was
interrupted (the script says how to resume).
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from absl import app, flags

from asi_jax.workdir import WorkdirError

USAGE_STATUS, RUN_STATUS, INTERRUPTED_STATUS = 2, 1, 130


class UsageError(Exception):
    """The command line or the config asks for something invalid; nothing ran."""


class RunError(Exception):
    """The run started and failed; the message says why, in one line."""


def fail(message: str, status: int) -> NoReturn:
    """Prints `<script>: error: <message>` (one line) and exits at once with `status`. It does
    not wait for other threads: a stopping run has already cancelled its work."""
    script = Path(sys.argv[0]).name
    print(f"{script}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os._exit(status)


def _config_overrides(argv: Sequence[str], flag: str) -> tuple[str | None, list[str]]:
    """(the config file's argument, the dotted fields overridden) for `--<flag>=...`."""
    path, fields = None, []
    for i, arg in enumerate(argv):
        name, _, value = arg.lstrip("-").partition("=")
        if not arg.startswith("-"):
            continue
        if name == flag:
            path = value if value or i + 1 >= len(argv) else argv[i + 1]
        elif name.startswith(flag + "."):
            fields.append(name[len(flag) + 1 :])
    return path, fields


def _load_config_file(argument: str) -> Any:
    """The ConfigDict of `path[:arg]` as config_flags builds it (big_vision's `:arg` form)."""
    path, _, arg = argument.partition(":")
    spec = importlib.util.spec_from_file_location("_asi_jax_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def _dotted_fields(config: Any, prefix: str = "") -> Iterator[str]:
    items = config.items() if hasattr(config, "items") else ()
    for key, value in items:
        yield prefix + key
        yield from _dotted_fields(value, f"{prefix}{key}.")


def _unknown_field_message(argv: Sequence[str], flag: str) -> str | None:
    """Names the first overridden field the config lacks, with the nearest fields it has."""
    argument, overridden = _config_overrides(argv, flag)
    if not argument:
        return None
    try:
        known = set(_dotted_fields(_load_config_file(argument)))
    except Exception:
        return None
    for field in overridden:
        if field in known:
            continue
        # The first name along the path that the config lacks, against its siblings'.
        parts = field.split(".")
        i = next(i for i in range(len(parts)) if ".".join(parts[: i + 1]) not in known)
        prefix = ".".join(parts[:i])
        siblings = sorted(k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == prefix)
        close = difflib.get_close_matches(parts[i], siblings, n=3, cutoff=0.6)
        paths = [".".join([*parts[:i], name, *parts[i + 1 :]]) for name in close]
        nearest = [p for p in paths if p in known] or [".".join([*parts[:i], n]) for n in close]
        if nearest:
            hint = f"did you mean {' or '.join(f'--{flag}.{n}' for n in nearest)}?"
        else:
            hint = f"{prefix or 'the config'} has {', '.join(siblings) or 'no fields'}"
        return f"--{flag}.{field}: the config {argument} has no field {field!r}; {hint}"
    return None


def _config_flags(argv: Sequence[str]) -> list[str]:
    """The config-file flags (ml_collections') that `argv` sets; not their `.field` overrides,
    which config_flags registers as flags of their own."""
    return [name for name, f in flags.FLAGS._flags().items()
            if type(f).__module__.startswith("ml_collections") and "." not in name
            and any(a.lstrip("-").startswith(name) for a in argv[1:])]  # fmt: skip


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, with every failure reported in one line (exit status 2)."""
    try:
        rest = flags.FLAGS(argv)
        for name in _config_flags(argv):  # a config file loads lazily: fail here, not in main
            if (value := flags.FLAGS[name].value) is not None:
                value.keys()
        return rest
    except flags.Error as e:
        fail(str(e), USAGE_STATUS)
    except Exception as e:  # raised while loading a config file or applying an override
        for flag in _config_flags(argv):
            if message := _unknown_field_message(argv, flag):
                fail(message, USAGE_STATUS)
            argument, _ = _config_overrides(argv, flag)
            if argument and not Path(argument.partition(":")[0]).is_file():
                fail(f"--{flag}={argument}: no such config file", USAGE_STATUS)
            fail(f"--{flag}={argument}: the config could not be loaded: "
                 f"{type(e).__name__}: {e}", USAGE_STATUS)  # fmt: skip
        raise


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a scheduler or `kill`) stops a run the way Ctrl-C does, cleanly."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def run(main: Callable[[list[str]], None]) -> None:
    """`absl.app.run(main)` with one-line errors (see the module docstring)."""

    def wrapped(argv: list[str]) -> None:
        _interrupt_on_sigterm()
        try:
            main(argv)
        except (UsageError, WorkdirError) as e:
            fail(str(e), USAGE_STATUS)
        except RunError as e:
            fail(str(e), RUN_STATUS)

    app.run(wrapped, flags_parser=parse_flags)
