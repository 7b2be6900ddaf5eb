"""Held-out evaluation: loss, bits per token (and per byte), recall, forward throughput.

The trainer calls `evaluate` at its eval steps and at the end of a run; `asi_jax.evals.
checkpoint` calls it on any saved checkpoint afterwards. The sets are fixed by the data
config, so every model trained on a config is measured on the same examples:
- "heldout": the corpus' held-out windows, or MQAR examples from a seed disjoint from training;
- "mqar_kv{N}": MQAR with N key-value pairs, one set per entry of `data.eval_kv_pairs`
  (accuracy there is recall: the loss mask covers only the answers).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np

from asi_jax.data.pipeline import DataConfig, eval_batches

Batch = Mapping[str, np.ndarray]  # inputs, targets int32 [B, T]; mask float32 [B, T]
EvalSums = Callable[[Batch], dict[str, jax.Array]]  # -> summed loss, correct and count


def eval_sets(data: DataConfig, kv_pairs: Sequence[int] | None = None) -> dict[str, list[Batch]]:
    """The named held-out sets of `data`; `kv_pairs` replaces `data.eval_kv_pairs`."""
    sets = {"heldout": eval_batches(data)}
    if data.kind == "mqar":
        for pairs in data.eval_kv_pairs if kv_pairs is None else kv_pairs:
            sets[f"mqar_kv{pairs}"] = eval_batches(data, kv_pairs=pairs)
    return sets


def evaluate_set(eval_sums: EvalSums, batches: Sequence[Batch], *, byte_level: bool) -> dict:
    """Masked loss, accuracy and bits per token over `batches`, and forward tokens per second.

    Bits per byte is reported only where it is exact, for byte-level data (one token is one
    byte). Throughput counts every position of every batch after the first (which may compile)
    and is absent for a single batch.
    """
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    timed_tokens, start = 0, None
    for i, batch in enumerate(batches):
        sums = jax.device_get(eval_sums(batch))
        for k in totals:
            totals[k] += float(sums[k])
        if i == 0:
            start = time.perf_counter()
        else:
            timed_tokens += int(np.prod(batch["inputs"].shape))
    count = max(totals["count"], 1.0)
    loss = totals["loss"] / count
    result = {"loss": loss, "accuracy": totals["correct"] / count,
              "bits_per_token": loss / math.log(2)}  # fmt: skip
    if byte_level:
        result["bits_per_byte"] = result["bits_per_token"]
    if timed_tokens:
        result["tokens_per_second"] = timed_tokens / (time.perf_counter() - start)
    return result


def evaluate(
    eval_sums: EvalSums, sets: Mapping[str, Sequence[Batch]], data: DataConfig
) -> dict[str, dict]:
    """`evaluate_set` for each named set."""
    byte_level = data.kind == "bytes" and not data.tokenizer
    return {name: evaluate_set(eval_sums, batches, byte_level=byte_level)
            for name, batches in sets.items()}  # fmt: skip
