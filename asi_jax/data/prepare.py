"""Tokenise a corpus into token shards (`shards.py`), in parallel over chunks of the input.

    manifest = prepare(PrepareConfig(inputs=("a.jsonl", "b.parquet"), output="data/shards"))

Inputs: .txt files (each file one document), .jsonl files (each line a JSON object whose
`text_field` string is one document) and .parquet files (each row's `text_field` column one
document), or a Hugging Face `datasets` dataset (a hub name or a local path, `hf_*` fields).
Chunks (a file, a byte range of a JSONL file, a Parquet row group, a range of a dataset's
rows) are tokenised by `workers` processes; the parent writes their documents in input order,
so the shards are the same for any number of workers. Document i (in that order, empty ones
skipped) is held out when floor((i + 1) f) > floor(i f), f = heldout_fraction: an exact,
evenly spread fraction of the documents.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from asi_jax.data import shards
from asi_jax.data.tokenizers import ByteTokenizer, SentencePieceTokenizer, load_tokenizer

SUFFIXES = (".txt", ".jsonl", ".parquet")


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    inputs: tuple[str, ...] = ()  # .txt, .jsonl and .parquet files, in corpus order
    output: str = ""  # a new (or empty) folder for the shards and manifest.json
    tokenizer: str = ""  # a SentencePiece .model or tokenizers .json file; "" = UTF-8 bytes
    text_field: str = "text"  # the JSONL field / Parquet or dataset column holding the text
    heldout_fraction: float = 0.05  # of the documents, evenly spread
    shard_tokens: int = 50_000_000  # a shard is closed once it holds this many tokens
    workers: int = 1  # tokenising processes
    chunk_bytes: int = 4 << 20  # JSONL files are tokenised in chunks of about this size
    eos_id: int = -1  # appended to every document when >= 0 (e.g. SentencePiece's </s>)
    hf_dataset: str = ""  # a `datasets` name or local path, read instead of `inputs`
    hf_name: str = ""  # the dataset's configuration name, if it has several
    hf_data_files: tuple[str, ...] = ()  # e.g. hf_dataset="parquet" with local files
    hf_split: str = "train"
    hf_cache_dir: str = ""  # "" = the datasets library's default cache
    hf_rows: int = 10_000  # rows per chunk of a dataset

    def __post_init__(self):
        if not self.output:
            raise ValueError("an output folder is required")
        if bool(self.inputs) == bool(self.hf_dataset):
            raise ValueError("give either input files or a Hugging Face dataset (not both)")
        if not 0.0 < self.heldout_fraction < 1.0:
            raise ValueError(f"heldout_fraction must be in (0, 1), got {self.heldout_fraction}")
        for name in ("shard_tokens", "workers", "chunk_bytes", "hf_rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for path in self.inputs:
            if Path(path).suffix not in SUFFIXES:
                raise ValueError(f"input {path!r}: expected one of {', '.join(SUFFIXES)} files")
            if not Path(path).is_file():
                raise FileNotFoundError(f"input file {path!r} does not exist")


# A chunk of work: ("txt", file), ("jsonl", file, start, stop), ("parquet", file, row_group)
# or ("hf", start, stop); the source index (into the inputs) comes first.
Chunk = tuple


def _jsonl_chunks(path: str, chunk_bytes: int) -> list[tuple[int, int]]:
    size = os.path.getsize(path)
    return [(start, min(start + chunk_bytes, size)) for start in range(0, size, chunk_bytes)]


def _parquet_row_groups(path: str, field: str) -> int:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid and OSError for damaged files
        raise ValueError(f"{path}: not a readable Parquet file ({e})") from None
    if field not in file.schema_arrow.names:
        raise ValueError(f"{path}: no column {field!r}; its columns are "
                         f"{file.schema_arrow.names} (choose one with --text_field)")  # fmt: skip
    return file.num_row_groups


def _chunks(config: PrepareConfig, rows: int | None) -> list[Chunk]:
    if rows is not None:
        return [(0, "hf", s, min(s + config.hf_rows, rows)) for s in range(0, rows, config.hf_rows)]
    chunks: list[Chunk] = []
    for i, path in enumerate(config.inputs):
        suffix = Path(path).suffix
        if suffix == ".txt":
            chunks.append((i, "txt", path))
        elif suffix == ".jsonl":
            chunks += [(i, "jsonl", path, a, b) for a, b in _jsonl_chunks(path, config.chunk_bytes)]
        else:
            groups = _parquet_row_groups(path, config.text_field)
            chunks += [(i, "parquet", path, g) for g in range(groups)]
    return chunks


def _jsonl_texts(path: str, start: int, stop: int, field: str) -> Iterator[str]:
    """The texts of the lines that start in bytes [start, stop) of a JSONL file."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            f.readline()  # the line holding byte start - 1 belongs to the previous chunk
        while (offset := f.tell()) < stop:
            line = f.readline()
            if not line:
                break
            if not line.strip():
                continue
            try:
                text = json.loads(line)[field]
                if not isinstance(text, str):
                    raise TypeError(f"{field!r} is {type(text).__name__}, not a string")
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise ValueError(
                    f"{path} (line at byte {offset}): expected a JSON object with a string "
                    f"field {field!r} ({e.__class__.__name__}: {e})"
                ) from None
            yield text


_DATASET = None  # a worker's Hugging Face dataset (set by `_init_worker`)


def _init_worker(dataset) -> None:
    global _DATASET
    _DATASET = dataset


def _texts(chunk: Chunk, field: str) -> Iterator[str | None]:
    kind = chunk[1]
    if kind == "txt":
        yield Path(chunk[2]).read_bytes().decode("utf-8", errors="replace")
    elif kind == "jsonl":
        yield from _jsonl_texts(chunk[2], chunk[3], chunk[4], field)
    elif kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.ParquetFile(chunk[2]).read_row_group(chunk[3], columns=[field])
        yield from table.column(field).to_pylist()
    else:
        yield from _DATASET[chunk[2] : chunk[3]][field]


def _tokenise(args: tuple[Chunk, str, str, int, str]) -> tuple[int, np.ndarray, np.ndarray, int]:
    """(source index, the chunk's non-empty documents' tokens concatenated [N] in the stored
    dtype, their lengths [D], the number of empty documents): two arrays pass between
    processes faster than D small ones."""
    chunk, field, tokenizer_path, eos_id, dtype = args
    tokenizer = load_tokenizer(tokenizer_path)
    docs, empty = [], 0
    for text in _texts(chunk, field):
        tokens = tokenizer.encode(text) if text else np.zeros(0, np.int32)
        if tokens.size == 0:
            empty += 1
            continue
        if eos_id >= 0:
            tokens = np.append(tokens, np.int32(eos_id))
        docs.append(tokens.astype(dtype))
    lengths = np.array([len(d) for d in docs], np.int64)
    tokens = np.concatenate(docs) if docs else np.zeros(0, dtype)
    return chunk[0], tokens, lengths, empty


def _ordered(fn: Callable, items: list, workers: int, initargs: tuple) -> Iterator:
    """fn over items in order; with workers > 1 in that many processes, at most 2 x workers
    chunks in flight (memory stays bounded however fast the workers are)."""
    if workers == 1:
        _init_worker(*initargs)
        yield from map(fn, items)
        return
    context = multiprocessing.get_context("spawn")  # no fork of the parent's threads
    with context.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.apply_async(fn, (item,)))
            if len(pending) >= 2 * workers:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


class _SplitWriter:
    """Writes one split's documents into shards of about `shard_tokens` tokens each."""

    def __init__(self, output: Path, split: str, dtype: str, shard_tokens: int):
        self.output, self.split, self.dtype, self.shard_tokens = output, split, dtype, shard_tokens
        self.shards: list[dict[str, Any]] = []
        self._writer = None

    def write(self, tokens: np.ndarray) -> None:
        from array_record.python.array_record_module import ArrayRecordWriter

        if self._writer is None:
            name = f"{self.split}-{len(self.shards):05d}.array_record"
            self._writer = ArrayRecordWriter(str(self.output / name), shards.WRITER_OPTIONS)
            self.shards.append({"file": name, "documents": 0, "tokens": 0})
        self._writer.write(shards.encode_record(tokens, self.dtype))
        shard = self.shards[-1]
        shard["documents"] += 1
        shard["tokens"] += int(tokens.size)
        if shard["tokens"] >= self.shard_tokens:
            self.close()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
            shard = self.shards[-1]
            path = self.output / shard["file"]
            shard |= {"bytes": path.stat().st_size, "sha256": _sha256(path)}

    def summary(self) -> dict[str, Any]:
        return {"documents": sum(s["documents"] for s in self.shards),
                "tokens": sum(s["tokens"] for s in self.shards), "shards": self.shards}  # fmt: skip


def _tokenizer_record(path: str) -> dict[str, Any]:
    tokenizer = load_tokenizer(path)
    if isinstance(tokenizer, ByteTokenizer):
        kind = "bytes"
    else:
        kind = "sentencepiece" if isinstance(tokenizer, SentencePieceTokenizer) else "tokenizers"
    return {"kind": kind, "path": os.path.abspath(path) if path else "",
            "sha256": _sha256(path) if path else None,
            "vocab_size": tokenizer.vocab_size}  # fmt: skip


def load_hf_dataset(config: PrepareConfig):
    """The `datasets` split named by the config's hf_* fields (only its text column)."""
    import datasets

    try:
        dataset = datasets.load_dataset(
            config.hf_dataset, config.hf_name or None, split=config.hf_split,
            data_files=list(config.hf_data_files) or None,
            cache_dir=config.hf_cache_dir or None,
        )  # fmt: skip
    except Exception as e:  # datasets raises many kinds (not found, offline, bad files)
        raise ValueError(f"--hf_dataset={config.hf_dataset!r} (split {config.hf_split!r}) "
                         f"could not be loaded: {type(e).__name__}: {e}") from None  # fmt: skip
    if config.text_field not in dataset.column_names:
        raise ValueError(f"--hf_dataset={config.hf_dataset!r}: no column {config.text_field!r}; "
                         f"its columns are {dataset.column_names} (choose one with "
                         f"--text_field)")  # fmt: skip
    return dataset.select_columns([config.text_field])


def prepare(
    config: PrepareConfig,
    *,
    command: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Writes the shards and manifest.json into `config.output`; returns the manifest.
    `command` (the script's argv) is recorded in the manifest."""
    output = Path(config.output).absolute()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"output {str(output)!r} exists and is not an empty folder: choose a "
                         f"new one (shards are never overwritten)")  # fmt: skip
    tokenizer = _tokenizer_record(config.tokenizer)
    vocab = tokenizer["vocab_size"]
    if config.eos_id >= vocab:
        raise ValueError(f"eos_id {config.eos_id} is outside the vocabulary of {vocab}")
    dtype = shards.dtype_for(vocab)
    dataset = load_hf_dataset(config) if config.hf_dataset else None
    chunks = _chunks(config, None if dataset is None else len(dataset))
    output.mkdir(parents=True, exist_ok=True)

    writers = {s: _SplitWriter(output, s, dtype, config.shard_tokens) for s in shards.SPLITS}
    if config.hf_dataset:
        names = [config.hf_dataset]
    else:
        names = [os.path.abspath(p) for p in config.inputs]
    sources = [{"path": n, "documents": 0, "empty_documents": 0} for n in names]
    index, tokens_total, start = 0, 0, time.perf_counter()
    f = config.heldout_fraction
    work = [(c, config.text_field, config.tokenizer, config.eos_id, dtype) for c in chunks]
    for done, (source, tokens_of_chunk, lengths, empty) in enumerate(
        _ordered(_tokenise, work, config.workers, (dataset,)), 1
    ):
        docs = np.split(tokens_of_chunk, np.cumsum(lengths)[:-1]) if len(lengths) else []
        for tokens in docs:
            heldout = math.floor((index + 1) * f) > math.floor(index * f)
            writers["heldout" if heldout else "train"].write(tokens)
            index += 1
            tokens_total += int(tokens.size)
        sources[source]["documents"] += len(docs)
        sources[source]["empty_documents"] += empty
        seconds = time.perf_counter() - start
        log(f"prepare_data: {done}/{len(chunks)} chunks, {index} documents, {tokens_total} "
            f"tokens, {tokens_total / max(seconds, 1e-9):,.0f} tokens/s")  # fmt: skip
    for writer in writers.values():
        writer.close()
    splits = {name: writer.summary() for name, writer in writers.items()}
    for name, split in splits.items():
        if split["documents"] == 0:
            raise ValueError(
                f"the corpus has {index} non-empty documents and none went to the {name!r} "
                f"split (heldout_fraction {f}): give more documents"
            )
    seconds = time.perf_counter() - start
    manifest = {
        "format": shards.FORMAT,
        "version": shards.VERSION,
        "record": "one document's token ids, little-endian `dtype`, in corpus order",
        "tokenizer": tokenizer,
        "vocab_size": vocab,
        "dtype": dtype,
        "eos_id": config.eos_id,
        "documents": index,
        "tokens": tokens_total,
        "split_rule": "document i (0-based, corpus order) is heldout when "
        "floor((i + 1) * heldout_fraction) > floor(i * heldout_fraction)",
        "heldout_fraction": f,
        "splits": splits,
        "sources": sources,
        "config": dataclasses.asdict(config),
        "command": command,
        "seconds": seconds,
        "tokens_per_second": tokens_total / max(seconds, 1e-9),
    }
    (output / shards.MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
