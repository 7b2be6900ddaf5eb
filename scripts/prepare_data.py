"""Tokenises text, JSONL or Parquet files (or a Hugging Face dataset) into token shards.

    python scripts/prepare_data.py --inputs=data/a.jsonl,data/b.parquet \
        --tokenizer=data/sp.model --output=data/shards --workers=8

    python scripts/prepare_data.py --hf_dataset=parquet --hf_data_files=data/part-0.parquet \
        --output=data/shards

Writes ArrayRecord shards (one record per document) and manifest.json into --output, a new
folder; train on them with --config.data.kind=shards --config.data.shards=data/shards.
Without --tokenizer the tokens are UTF-8 bytes.
"""

from __future__ import annotations

import sys

from absl import flags

from asi_jax import command_line
from asi_jax.data.prepare import PrepareConfig, prepare

_D = PrepareConfig
_INPUTS = flags.DEFINE_list("inputs", [], "Input .txt, .jsonl and .parquet files, in order.")
_OUTPUT = flags.DEFINE_string("output", None, "A new folder for the shards and manifest.json.")
_TOKENIZER = flags.DEFINE_string(
    "tokenizer", _D.tokenizer, "SentencePiece .model or tokenizers .json; empty: bytes."
)
_TEXT_FIELD = flags.DEFINE_string(
    "text_field", _D.text_field, "JSONL field / Parquet or dataset column with the text."
)
_HELDOUT = flags.DEFINE_float(
    "heldout_fraction", _D.heldout_fraction, "Fraction of the documents held out (evenly spread)."
)
_SHARD_TOKENS = flags.DEFINE_integer("shard_tokens", _D.shard_tokens, "Tokens per shard.")
_WORKERS = flags.DEFINE_integer("workers", _D.workers, "Tokenising processes.")
_CHUNK_BYTES = flags.DEFINE_integer("chunk_bytes", _D.chunk_bytes, "JSONL bytes per chunk.")
_EOS_ID = flags.DEFINE_integer(
    "eos_id", _D.eos_id, "Token id appended to every document; -1: none."
)
_HF_DATASET = flags.DEFINE_string(
    "hf_dataset", _D.hf_dataset, "A Hugging Face datasets name or local path."
)
_HF_NAME = flags.DEFINE_string("hf_name", _D.hf_name, "The dataset's configuration name.")
_HF_DATA_FILES = flags.DEFINE_list(
    "hf_data_files", list(_D.hf_data_files), "data_files for datasets.load_dataset."
)
_HF_SPLIT = flags.DEFINE_string("hf_split", _D.hf_split, "The dataset split to read.")
_HF_CACHE_DIR = flags.DEFINE_string(
    "hf_cache_dir", _D.hf_cache_dir, "The datasets cache folder; empty: its default."
)
_HF_ROWS = flags.DEFINE_integer("hf_rows", _D.hf_rows, "Dataset rows per chunk.")
flags.mark_flags_as_required(["output"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = PrepareConfig(
            inputs=tuple(_INPUTS.value), output=_OUTPUT.value, tokenizer=_TOKENIZER.value,
            text_field=_TEXT_FIELD.value, heldout_fraction=_HELDOUT.value,
            shard_tokens=_SHARD_TOKENS.value, workers=_WORKERS.value,
            chunk_bytes=_CHUNK_BYTES.value, eos_id=_EOS_ID.value, hf_dataset=_HF_DATASET.value,
            hf_name=_HF_NAME.value, hf_data_files=tuple(_HF_DATA_FILES.value),
            hf_split=_HF_SPLIT.value, hf_cache_dir=_HF_CACHE_DIR.value, hf_rows=_HF_ROWS.value,
        )  # fmt: skip
        manifest = prepare(config, command=sys.argv)
    except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
        raise command_line.UsageError(str(e)) from e
    splits = manifest["splits"]
    print(f"wrote {manifest['documents']} documents, {manifest['tokens']} tokens "
          f"(train {splits['train']['tokens']}, heldout {splits['heldout']['tokens']}) in "
          f"{len(splits['train']['shards']) + len(splits['heldout']['shards'])} shards to "
          f"{config.output} at {manifest['tokens_per_second']:,.0f} tokens/s")  # fmt: skip


if __name__ == "__main__":
    command_line.run(main)
