"""Multi-query associative recall (MQAR), as defined in Zoology (Arora et al. 2023).

A sequence starts with N key-value pairs, k1 v1 ... kN vN; later, each key appears once more
at a random position and the model must emit its value right after it. Keys come from the
lower half of the vocabulary, values from the upper half; token 0 fills the gaps. The loss
counts only the answer positions, so accuracy there is recall.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class MQARConfig:
    vocab_size: int = 256
    seq_len: int = 128  # tokens per example (inputs and targets are seq_len each)
    num_kv_pairs: int = 8
    power_a: float = 0.01  # Zoology's power law over query distances

    def __post_init__(self):
        if self.vocab_size < 4 or self.vocab_size % 2:
            raise ValueError(f"mqar.vocab_size must be an even number >= 4, got {self.vocab_size}")
        if self.num_kv_pairs < 1 or self.num_kv_pairs >= self.vocab_size // 2:
            raise ValueError(
                f"mqar.num_kv_pairs must be in [1, vocab_size / 2), got {self.num_kv_pairs}"
            )
        if 4 * self.num_kv_pairs > self.seq_len:
            raise ValueError(
                f"mqar.seq_len ({self.seq_len}) must be at least 4 * num_kv_pairs "
                f"({4 * self.num_kv_pairs}): the pairs and their queries must fit"
            )


class MQARSource:
    """Random-access MQAR examples: index i -> the i-th example of the stream `seed`.

    Each example: inputs, targets int32 [seq_len]; mask float32 [seq_len] (1 at answers).
    """

    def __init__(self, config: MQARConfig, *, seed: int, size: int):
        self.config, self.seed, self.size = config, seed, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        c = self.config
        rng = np.random.default_rng([self.seed, int(index)])
        n, half = c.num_kv_pairs, c.vocab_size // 2
        keys = rng.choice(np.arange(1, half), size=n, replace=False)
        values = rng.choice(np.arange(half, c.vocab_size), size=n)
        seq = np.zeros(c.seq_len + 1, np.int64)
        seq[0 : 2 * n : 2], seq[1 : 2 * n : 2] = keys, values

        # Query slots: even offsets after the context, weighted by Zoology's power law
        # a * gap^(a - 1) of their distance from the context (short gaps likelier).
        slots = np.arange(2 * n, c.seq_len - 1, 2)
        gaps = slots - 2 * n + 1
        weights = c.power_a * gaps ** (c.power_a - 1)
        chosen = np.sort(rng.choice(slots, size=n, replace=False, p=weights / weights.sum()))
        order = rng.permutation(n)
        seq[chosen], seq[chosen + 1] = keys[order], values[order]

        mask = np.zeros(c.seq_len, np.float32)
        mask[chosen] = 1.0  # predict seq[t + 1] (the value) from input position t (the key)
        return {
            "inputs": seq[:-1].astype(np.int32),
            "targets": seq[1:].astype(np.int32),
            "mask": mask,
        }
