"""Language-modelling corpora: text files on disk, tokenised as UTF-8 bytes by default.

The default corpus needs no download: the source files of a fixed list of pure-Python
standard-library modules, which every CPython installation ships (`STDLIB_MODULES`; the
exact bytes depend on the Python version, which every run records). Users pass their own
text or JSONL files instead, optionally with a local tokenizer file (`tokenizers.py`).
The last `heldout_fraction` of the tokens is the held-out split.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from asi_jax.data.tokenizers import ByteTokenizer, Tokenizer

# Large, stable, prose-and-code-rich modules present in every CPython 3.11+ installation.
STDLIB_MODULES = (
    "argparse", "ast", "asyncio.base_events", "calendar", "collections", "configparser",
    "csv", "dataclasses", "datetime", "decimal", "difflib", "email.message", "enum",
    "fractions", "functools", "http.client", "inspect", "ipaddress", "json.decoder",
    "logging", "pathlib", "pickle", "pprint", "random", "shutil", "statistics", "string",
    "subprocess", "tarfile", "textwrap", "threading", "typing", "unittest.case",
    "urllib.parse", "uuid", "zipfile",
)  # fmt: skip


def stdlib_files(modules: Sequence[str] = STDLIB_MODULES) -> list[Path]:
    """The source files of `modules` in this interpreter's standard library."""
    paths = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise FileNotFoundError(f"standard-library module {name!r} has no .py source here")
        paths.append(Path(spec.origin))
    return paths


def read_tokens(
    paths: Sequence[str | Path],
    tokenizer: Tokenizer | None = None,
    *,
    jsonl_field: str = "text",
) -> np.ndarray:
    """The files' text, one newline between files, as int32 tokens (UTF-8 bytes by default).

    .jsonl files contribute the `jsonl_field` string of each line; other files their text.
    """
    tokenizer = tokenizer or ByteTokenizer()
    chunks: list[bytes] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"corpus file {str(path)!r} does not exist")
        if path.suffix == ".jsonl":
            for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    text = record[jsonl_field]
                except (json.JSONDecodeError, KeyError, TypeError) as e:
                    raise ValueError(
                        f"{path}:{line_no}: expected a JSON object with a string field "
                        f"{jsonl_field!r} ({e.__class__.__name__}: {e})"
                    ) from None
                chunks.append(str(text).encode("utf-8"))
        else:
            chunks.append(path.read_bytes())
    data = tokenizer.encode(b"\n".join(chunks).decode("utf-8", errors="replace"))
    if data.size == 0:
        raise ValueError(f"the corpus {list(map(str, paths))} is empty")
    return data


@dataclasses.dataclass(frozen=True)
class Split:
    train: np.ndarray  # int32 [N_train]
    heldout: np.ndarray  # int32 [N_heldout]


def split(data: np.ndarray, heldout_fraction: float, seq_len: int) -> Split:
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    cut = int(len(data) * (1.0 - heldout_fraction))
    parts = Split(train=data[:cut], heldout=data[cut:])
    for name in ("train", "heldout"):
        if len(getattr(parts, name)) <= seq_len + 1:
            raise ValueError(
                f"the corpus' {name} split has {len(getattr(parts, name))} tokens, fewer than "
                f"seq_len + 2 = {seq_len + 2}: use more text or a shorter sequence"
            )
    return parts


class WindowSource:
    """Random-access windows of seq_len + 1 tokens: inputs, targets int32 [T], mask ones [T].

    random=True (training): window i starts at a position drawn from (seed, i), so the stream
    never repeats in order. random=False (evaluation): consecutive non-overlapping windows.
    """

    def __init__(self, data: np.ndarray, seq_len: int, *, seed: int, random: bool, size=None):
        self.data, self.seq_len, self.seed, self.random = data, seq_len, seed, random
        self.max_start = len(data) - seq_len - 1
        self.size = size if size is not None else (self.max_start // seq_len + 1)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        if self.random:
            start = int(np.random.default_rng([self.seed, int(index)]).integers(self.max_start + 1))
        else:
            start = int(index) * self.seq_len
        window = self.data[start : start + self.seq_len + 1]
        return {
            "inputs": window[:-1],
            "targets": window[1:],
            "mask": np.ones(self.seq_len, np.float32),
        }
