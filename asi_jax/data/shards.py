"""Token shards on disk: ArrayRecord files of documents plus a manifest.json that describes them.

`scripts/prepare_data.py` (`asi_jax.data.prepare`) writes a folder:

    manifest.json                 what is below, the tokenizer, counts, sources, flags
    train-00000.array_record      one record per document: its token ids, little-endian
    heldout-00000.array_record    `manifest["dtype"]` (the narrowest of uint8, uint16,
    ...                           uint32 for the vocabulary), in corpus order

The manifest is written last: a folder without one is incomplete. Readers go through
`load_manifest`, which checks it against the files (names, sizes) so that a truncated or
missing shard is reported by name before anything trains. `pipeline.py` reads the records
one at a time with grain's ArrayRecord source, so memory is bounded by the documents in
flight, not the corpus. This module does not import grain: prepare_data's worker processes
import it, and start faster without.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

MANIFEST = "manifest.json"
FORMAT = "asi-jax-token-shards"
VERSION = 1
SPLITS = ("train", "heldout")
DTYPES = ("uint8", "uint16", "uint32")
WRITER_OPTIONS = "group_size:1"  # one record per chunk: cheap random access for global shuffles


class ShardError(ValueError):
    """A shard folder that cannot be read as its manifest describes."""


def dtype_for(vocab_size: int) -> str:
    """The narrowest stored dtype for token ids below `vocab_size`."""
    return next(d for d in DTYPES if vocab_size <= 1 << (8 * np.dtype(d).itemsize))


def encode_record(tokens: np.ndarray, dtype: str) -> bytes:
    """One document's token ids [N] as a record's bytes."""
    return np.asarray(tokens).astype(np.dtype(dtype).newbyteorder("<"), copy=False).tobytes()


def decode_record(record: bytes, dtype: str) -> np.ndarray:
    """A record's bytes as int32 token ids [N]."""
    return np.frombuffer(record, np.dtype(dtype).newbyteorder("<")).astype(np.int32)


def _require(condition: bool, path: Path, message: str) -> None:
    if not condition:
        raise ShardError(f"{path}: {message}; prepare the folder again with "
                         f"scripts/prepare_data.py")  # fmt: skip


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """The folder's manifest, checked against its files (existence and byte sizes)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"shard folder {str(directory)!r} does not exist")
    path = directory / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"shard folder {str(directory)!r} holds no {MANIFEST}: it is not a prepared corpus "
            f"or its preparation did not finish (scripts/prepare_data.py writes it last)"
        )
    stat = path.stat()
    return _load_manifest(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _load_manifest(path_str: str, mtime_ns: int, size: int) -> dict[str, Any]:
    """Cached per (file, modification time, size): a rewritten manifest is read again."""
    path = Path(path_str)
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ShardError(f"{path}: not valid JSON, truncated or damaged ({e}); prepare the "
                         f"folder again with scripts/prepare_data.py") from None  # fmt: skip
    _require(isinstance(manifest, dict), path, "expected a JSON object")
    _require(manifest.get("format") == FORMAT and manifest.get("version") == VERSION, path,
             f"expected format {FORMAT!r} version {VERSION}, got {manifest.get('format')!r} "
             f"version {manifest.get('version')!r}")  # fmt: skip
    vocab = manifest.get("vocab_size")
    _require(isinstance(vocab, int) and vocab > 0, path, f"bad vocab_size {vocab!r}")
    _require(manifest.get("dtype") in DTYPES, path, f"dtype must be one of {DTYPES}")
    splits = manifest.get("splits")
    _require(isinstance(splits, dict) and set(SPLITS) <= set(splits), path,
             f"expected splits {SPLITS}")  # fmt: skip
    total_documents = total_tokens = 0
    for name in SPLITS:
        split = splits[name]
        shards = split.get("shards") if isinstance(split, dict) else None
        _require(isinstance(shards, list), path, f"split {name!r} lists no shards")
        documents = tokens = 0
        for shard in shards:
            keys = ("file", "documents", "tokens", "bytes")
            _require(isinstance(shard, dict) and all(k in shard for k in keys), path,
                     f"a shard of split {name!r} lacks one of {keys}: {shard!r}")  # fmt: skip
            file = path.parent / shard["file"]
            _require(Path(shard["file"]).name == shard["file"], path,
                     f"shard file {shard['file']!r} is not a plain name in the folder")  # fmt: skip
            if not file.is_file():
                raise ShardError(f"{path}: shard {str(file)!r} of split {name!r} is missing; "
                                 f"copy the whole folder, or prepare it again")  # fmt: skip
            size = file.stat().st_size
            _require(size == shard["bytes"], path,
                     f"shard {str(file)!r} has {size} bytes, the manifest says "
                     f"{shard['bytes']}: truncated or replaced")  # fmt: skip
            documents += shard["documents"]
            tokens += shard["tokens"]
        _require(documents == split.get("documents") and tokens == split.get("tokens"), path,
                 f"split {name!r} counts ({split.get('documents')} documents, "
                 f"{split.get('tokens')} tokens) differ from its shards' sums "
                 f"({documents}, {tokens})")  # fmt: skip
        total_documents, total_tokens = total_documents + documents, total_tokens + tokens
    _require(manifest.get("documents") == total_documents and
             manifest.get("tokens") == total_tokens, path,
             f"total counts ({manifest.get('documents')} documents, "
             f"{manifest.get('tokens')} tokens) differ from the splits' sums "
             f"({total_documents}, {total_tokens})")  # fmt: skip
    return manifest


def shard_paths(directory: str | Path, split: str) -> list[str]:
    """The split's shard files, in corpus order."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    manifest = load_manifest(directory)
    return [os.path.join(directory, s["file"]) for s in manifest["splits"][split]["shards"]]
