"""grain pipelines for training and evaluation from a `DataConfig`."""

from __future__ import annotations

import dataclasses
import functools
import os

import grain
import jax
import numpy as np

from asi_jax.data import corpus
from asi_jax.data.mqar import MQARConfig, MQARSource
from asi_jax.data.tokenizers import load_tokenizer

_STREAM = 1 << 40  # length of the procedurally generated training streams


@dataclasses.dataclass(frozen=True)
class DataConfig:
    kind: str = "mqar"  # "mqar" or "bytes" (text; bytes unless a tokenizer file is given)
    batch_size: int = 16  # global, across all hosts
    seq_len: int = 128
    seed: int = 0
    mqar: MQARConfig = MQARConfig()
    # bytes: text / .jsonl files; empty means the standard-library corpus (see corpus.py)
    files: tuple[str, ...] = ()
    tokenizer: str = ""  # a SentencePiece .model or tokenizers .json file; "" = UTF-8 bytes
    heldout_fraction: float = 0.05
    eval_examples: int = 256
    # MQAR accuracy is also reported at these numbers of key-value pairs (0: only the trained)
    eval_kv_pairs: tuple[int, ...] = ()

    def __post_init__(self):
        # Absolute from where the config is built (the user's working directory): the files
        # are read by sandboxed workers, whose working directory is a candidate's folder.
        object.__setattr__(self, "files", tuple(os.path.abspath(f) for f in self.files))
        if self.tokenizer:
            object.__setattr__(self, "tokenizer", os.path.abspath(self.tokenizer))
        if self.kind not in ("mqar", "bytes"):
            raise ValueError(f"data.kind must be 'mqar' or 'bytes', got {self.kind!r}")
        if self.batch_size < 1 or self.seq_len < 2:
            raise ValueError(
                f"data.batch_size must be >= 1 and data.seq_len >= 2, got "
                f"{self.batch_size} and {self.seq_len}"
            )
        if self.eval_examples < 1:
            raise ValueError(f"data.eval_examples must be >= 1, got {self.eval_examples}")
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
        return (*self.files, self.tokenizer) if self.tokenizer else self.files

    @property
    def vocab_size(self) -> int:
        if self.kind == "mqar":
            return self.mqar.vocab_size
        return load_tokenizer(self.tokenizer).vocab_size


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


def train_source(config: DataConfig):
    if config.kind == "mqar":
        return MQARSource(config.mqar, seed=config.seed, size=_STREAM)
    return corpus.WindowSource(
        _text_split(config).train, config.seq_len, seed=config.seed, random=True, size=_STREAM
    )


def train_iterator(config: DataConfig) -> grain.DatasetIterator:
    """This host's share of the training batches, as a checkpointable grain iterator.

    Batch i holds examples [i * B, (i + 1) * B) of the stream, split across hosts.
    """
    hosts = jax.process_count()
    if config.batch_size % hosts:
        raise ValueError(
            f"data.batch_size ({config.batch_size}) must be divisible by the {hosts} hosts"
        )
    dataset = grain.MapDataset.source(train_source(config))
    dataset = dataset[jax.process_index() :: hosts]
    return iter(dataset.batch(config.batch_size // hosts, drop_remainder=True).to_iter_dataset())


def eval_batches(config: DataConfig, kv_pairs: int | None = None) -> list[dict[str, np.ndarray]]:
    """A fixed held-out set: MQAR from a disjoint seed (optionally with `kv_pairs` pairs), or
    consecutive windows of the corpus' held-out bytes."""
    if config.kind == "mqar":
        mqar = config.mqar
        if kv_pairs is not None:
            mqar = dataclasses.replace(mqar, num_kv_pairs=kv_pairs)
        source = MQARSource(mqar, seed=config.seed + 1_000_003, size=config.eval_examples)
    else:
        heldout = _text_split(config).heldout
        source = corpus.WindowSource(heldout, config.seq_len, seed=0, random=False)
        source.size = min(source.size, config.eval_examples)
    dataset = grain.MapDataset.source(source).batch(config.batch_size, drop_remainder=False)
    return [dataset[i] for i in range(len(dataset))]
