"""Held-out evaluation: loss, bits per token (and per byte), recall, forward throughput, and a
check that the program producing them does not read the future.

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
    return {name: evaluate_set(eval_sums, batches, byte_level=data.byte_level)
            for name, batches in sets.items()}  # fmt: skip


def reads_the_future(eval_sums: EvalSums, batch: Batch, vocab_size: int, *, cuts: int = 4,
                     seed: int = 0, tolerance: float = 1e-4) -> str | None:  # fmt: skip
    """Why the evaluation program reads tokens after the position it scores, or None.

    The same compiled program that produced the figures (no new trace of the model, so no
    second behaviour for a check to see) runs on `batch` scoring only the positions up to a
    cut, once as it is and once with every token after the cut replaced at random. A causal
    model's summed loss is the same both times (to rounding: an FFT spreads it over the
    sequence); the candidate's checker ran before training, on other programs and at the
    initial parameters, and this covers the trained model whose figures are reported.
    """
    inputs = np.asarray(batch["inputs"])
    seq_len = inputs.shape[1]
    rng = np.random.default_rng(seed)
    for cut in sorted({int(t) for t in np.linspace(0, seq_len - 2, cuts)}):
        past = np.broadcast_to(np.arange(seq_len) <= cut, inputs.shape)
        scored = {**batch, "mask": past.astype(np.asarray(batch["mask"]).dtype)}
        future = rng.integers(0, vocab_size, inputs.shape, dtype=inputs.dtype)
        changed = {**scored, "inputs": np.where(past, inputs, future)}
        before = float(jax.device_get(eval_sums(scored))["loss"])
        after = float(jax.device_get(eval_sums(changed))["loss"])
        if not abs(after - before) <= tolerance * max(1.0, abs(before)):
            return (
                f"the summed held-out loss over positions 0..{cut} went from {before:.6g} to "
                f"{after:.6g} when only the tokens after position {cut} changed"
            )
    return None
