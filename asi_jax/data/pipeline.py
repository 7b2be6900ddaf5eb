"""grain pipelines for training and evaluation from a `DataConfig`."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import os
from pathlib import Path

import grain
import jax
import numpy as np

from asi_jax.data import corpus, shards
from asi_jax.data.mqar import MQARConfig, MQARSource
from asi_jax.data.tokenizers import load_tokenizer

_STREAM = 1 << 40  # length of the procedurally generated training streams


@dataclasses.dataclass(frozen=True)
class DataConfig:
    # "mqar", "bytes" (text; bytes unless a tokenizer file is given) or "shards" (a folder
    # that scripts/prepare_data.py wrote: token shards and their manifest)
    kind: str = "mqar"
    batch_size: int = 16  # global, across all hosts
    seq_len: int = 128
    seed: int = 0
    mqar: MQARConfig = MQARConfig()
    # bytes: text / .jsonl files; empty means the standard-library corpus (see corpus.py)
    files: tuple[str, ...] = ()
    tokenizer: str = ""  # a SentencePiece .model or tokenizers .json file; "" = UTF-8 bytes
    heldout_fraction: float = 0.05  # bytes; prepared shards carry their own split
    shards: str = ""  # shards: the folder holding manifest.json
    # shards: threads reading records ahead of the packer (0: in the calling thread); more
    # help on slow (network) storage, and cost CPU on a local disk
    read_threads: int = 2
    eval_examples: int = 256
    # MQAR accuracy is also reported at these numbers of key-value pairs (0: only the trained)
    eval_kv_pairs: tuple[int, ...] = ()

    def __post_init__(self):
        # Absolute from where the config is built (the user's working directory): the files
        # are read by sandboxed workers, whose working directory is a candidate's folder.
        object.__setattr__(self, "files", tuple(os.path.abspath(f) for f in self.files))
        for name in ("tokenizer", "shards"):
            if getattr(self, name):
                object.__setattr__(self, name, os.path.abspath(getattr(self, name)))
        if self.kind not in ("mqar", "bytes", "shards"):
            raise ValueError(f"data.kind must be 'mqar', 'bytes' or 'shards', got {self.kind!r}")
        if self.batch_size < 1 or self.seq_len < 2:
            raise ValueError(
                f"data.batch_size must be >= 1 and data.seq_len >= 2, got "
                f"{self.batch_size} and {self.seq_len}"
            )
        if self.eval_examples < 1:
            raise ValueError(f"data.eval_examples must be >= 1, got {self.eval_examples}")
        if self.read_threads < 0:
            raise ValueError(f"data.read_threads must be >= 0, got {self.read_threads}")
        if self.kind == "shards":
            if not self.shards:
                raise ValueError("data.kind='shards' needs data.shards, the prepared folder")
            if self.files or self.tokenizer:
                raise ValueError(
                    "data.files and data.tokenizer are for data.kind='bytes': prepared shards "
                    "are already tokenised (their manifest names the tokenizer)"
                )
            manifest = shards.load_manifest(self.shards)  # a bad folder fails here, early
            for split in shards.SPLITS:
                tokens = manifest["splits"][split]["tokens"]
                if tokens <= self.seq_len + 1:
                    raise ValueError(
                        f"the shards' {split} split has {tokens} tokens, fewer than seq_len + 2 "
                        f"= {self.seq_len + 2}: use more text or a shorter sequence"
                    )
        if self.tokenizer:
            load_tokenizer(self.tokenizer)  # a missing or unreadable file fails here, early
        if self.kind == "mqar" and self.mqar.seq_len != self.seq_len:
            raise ValueError(
                f"data.mqar.seq_len ({self.mqar.seq_len}) must equal data.seq_len ({self.seq_len})"
            )

    @property
    def declared_paths(self) -> tuple[str, ...]:
        """The files this data is read from, beyond the interpreter's own (the default corpus):
        what a sandboxed worker may read besides its folder."""
        if self.kind == "shards":
            tokenizer = self.tokenizer_file
            return (self.shards, tokenizer) if tokenizer else (self.shards,)
        return (*self.files, self.tokenizer) if self.tokenizer else self.files

    @property
    def tokenizer_file(self) -> str:
        """The tokenizer the token ids came from ("" for UTF-8 bytes): the config's, or for
        shards their manifest's (downstream benchmarks tokenise their text with it)."""
        if self.kind == "shards":
            return shards.load_manifest(self.shards)["tokenizer"].get("path") or ""
        return self.tokenizer

    @property
    def vocab_size(self) -> int:
        if self.kind == "mqar":
            return self.mqar.vocab_size
        if self.kind == "shards":
            return shards.load_manifest(self.shards)["vocab_size"]
        return load_tokenizer(self.tokenizer).vocab_size

    @property
    def byte_level(self) -> bool:
        """Whether one token is one UTF-8 byte (bits per byte are then exact)."""
        if self.kind == "shards":
            return shards.load_manifest(self.shards)["tokenizer"]["kind"] == "bytes"
        return self.kind == "bytes" and not self.tokenizer


def _text_split(config: DataConfig) -> corpus.Split:
    return _read_split(config.files, config.tokenizer, config.heldout_fraction, config.seq_len)


@functools.cache
def _read_split(
    files: tuple[str, ...], tokenizer: str, heldout_fraction: float, seq_len: int
) -> corpus.Split:
    """Read and tokenised once per process: training and evaluation both use the split."""
    paths = files or corpus.stdlib_files()
    tokens = corpus.read_tokens(paths, load_tokenizer(tokenizer))
    return corpus.split(tokens, heldout_fraction, seq_len)


def shard_documents(directory: str | Path, split: str) -> grain.MapDataset:
    """The split's documents in corpus order, each {"tokens": int32 [N]}, read on access."""
    manifest = shards.load_manifest(directory)
    paths = shards.shard_paths(directory, split)
    expected = manifest["splits"][split]["documents"]
    if not paths or expected == 0:
        raise shards.ShardError(
            f"{directory}: the {split!r} split holds no documents; prepare the corpus with more "
            f"documents or another heldout fraction"
        )
    source = grain.sources.ArrayRecordDataSource(paths)
    if len(source) != expected:
        raise shards.ShardError(
            f"{directory}: the {split!r} shards hold {len(source)} records, the manifest says "
            f"{expected}: damaged or replaced shards"
        )
    dtype = manifest["dtype"]
    return grain.MapDataset.source(source).map(lambda r: {"tokens": shards.decode_record(r, dtype)})


def shard_windows(docs: grain.IterDataset, seq_len: int) -> grain.IterDataset:
    """Documents concatenated and cut into windows of seq_len + 1 tokens (a document may span
    windows): inputs, targets int32 [T]; mask float32 [T], zero only on the padding of a last,
    partial window (a finite stream's end)."""
    packed = grain.experimental.ConcatThenSplitIterDataset(
        docs, length_struct={"tokens": seq_len + 1}
    )

    def example(element: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tokens = element["tokens"].astype(np.int32)
        filled = element["tokens_segment_ids"][1:] > 0
        return {"inputs": tokens[:-1], "targets": tokens[1:], "mask": filled.astype(np.float32)}

    return packed.map(example)


def train_source(config: DataConfig):
    if config.kind == "mqar":
        return MQARSource(config.mqar, seed=config.seed, size=_STREAM)
    return corpus.WindowSource(
        _text_split(config).train, config.seq_len, seed=config.seed, random=True, size=_STREAM
    )


def train_iterator(
    config: DataConfig, *, process_index: int | None = None, process_count: int | None = None
) -> grain.DatasetIterator:
    """This host's share of the training batches, as a checkpointable grain iterator.

    mqar, bytes: batch i holds examples [i * B, (i + 1) * B) of the stream, split across
    hosts. shards: host h reads documents h, h + H, ... of the train split, shuffled globally
    (a new order each epoch, from `config.seed`) and packed into windows. `process_index` and
    `process_count` default to JAX's (tests simulate other hosts with them).
    """
    host = jax.process_index() if process_index is None else process_index
    hosts = jax.process_count() if process_count is None else process_count
    if config.batch_size % hosts:
        raise ValueError(
            f"data.batch_size ({config.batch_size}) must be divisible by the {hosts} hosts"
        )
    if config.kind == "shards":
        docs = shard_documents(config.shards, "train")
        if len(docs) < hosts:
            raise ValueError(f"the shards' train split has {len(docs)} documents, fewer than "
                             f"the {hosts} hosts")  # fmt: skip
        docs = docs[host::hosts].shuffle(seed=config.seed).repeat()
        ahead = grain.ReadOptions(num_threads=config.read_threads,
                                  prefetch_buffer_size=8 * config.read_threads)  # fmt: skip
        examples = shard_windows(docs.to_iter_dataset(ahead), config.seq_len)
        return iter(examples.batch(config.batch_size // hosts, drop_remainder=True))
    dataset = grain.MapDataset.source(train_source(config))
    dataset = dataset[host::hosts]
    return iter(dataset.batch(config.batch_size // hosts, drop_remainder=True).to_iter_dataset())


def eval_batches(config: DataConfig, kv_pairs: int | None = None) -> list[dict[str, np.ndarray]]:
    """A fixed held-out set: MQAR from a disjoint seed (optionally with `kv_pairs` pairs), or
    consecutive windows of the corpus' held-out tokens (for shards: of the heldout split's
    documents in order, read only as far as `config.eval_examples` windows need)."""
    if config.kind == "mqar":
        mqar = config.mqar
        if kv_pairs is not None:
            mqar = dataclasses.replace(mqar, num_kv_pairs=kv_pairs)
        source = MQARSource(mqar, seed=config.seed + 1_000_003, size=config.eval_examples)
    elif config.kind == "shards":
        docs = shard_documents(config.shards, "heldout").to_iter_dataset()
        examples = list(itertools.islice(shard_windows(docs, config.seq_len),
                                         config.eval_examples))  # fmt: skip
        source = examples
    else:
        heldout = _text_split(config).heldout
        source = corpus.WindowSource(heldout, config.seq_len, seed=0, random=False)
        source.size = min(source.size, config.eval_examples)
    dataset = grain.MapDataset.source(source).batch(config.batch_size, drop_remainder=False)
    return [dataset[i] for i in range(len(dataset))]
