"""Tokenizers for users' corpora: raw bytes by default, or a local tokenizer file.

A SentencePiece model (`*.model`) or a Hugging Face `tokenizers` file (`*.json`) is read from
disk; nothing is downloaded. Both need the `tokenizers` extra: pip install 'asi-jax[tokenizers]'.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np


class Tokenizer(Protocol):
    vocab_size: int

    def encode(self, text: str) -> np.ndarray: ...  # int32 [N]


class ByteTokenizer:
    """UTF-8 bytes as tokens: vocabulary 256, no file, no unknown tokens."""

    vocab_size = 256

    def encode(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), np.uint8).astype(np.int32)


class SentencePieceTokenizer:
    def __init__(self, path: Path):
        import sentencepiece

        self._model = sentencepiece.SentencePieceProcessor(model_file=str(path))
        self.vocab_size = int(self._model.get_piece_size())

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._model.encode(text), np.int32)


class HuggingFaceTokenizer:
    def __init__(self, path: Path):
        import tokenizers

        self._tokenizer = tokenizers.Tokenizer.from_file(str(path))
        self.vocab_size = int(self._tokenizer.get_vocab_size())

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tokenizer.encode(text).ids, np.int32)


@functools.cache
def load_tokenizer(path: str = "") -> Tokenizer:
    """ "" -> bytes; a .model file -> SentencePiece; a .json file -> Hugging Face tokenizers."""
    if not path:
        return ByteTokenizer()
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"tokenizer file {path!r} does not exist")
    kinds = {".model": SentencePieceTokenizer, ".json": HuggingFaceTokenizer}
    if file.suffix not in kinds:
        raise ValueError(
            f"tokenizer {path!r}: expected a SentencePiece .model or a tokenizers .json file"
        )
    try:
        return kinds[file.suffix](file)
    except ImportError as e:
        raise ImportError(
            f"reading {path!r} needs the tokenizers extra: pip install 'asi-jax[tokenizers]' ({e})"
        ) from e
