"""Tiny CPU experiment: a ~1M-parameter LM on MQAR or bytes, a few minutes on 2 CPU cores.

    python scripts/train.py --config=configs/tiny_cpu.py --config.mixer=deltanet \
        --workdir=runs/tiny_deltanet

Variants through the config argument: `configs/tiny_cpu.py:bytes` trains on the byte-level
standard-library corpus instead of MQAR. Expect on MQAR (4 key-value pairs, T=64) a held-out
recall well above chance (1/128 per answer) for the delta rules within the 300 steps, and
about 1.5-2 minutes per run for the linear mixers on 2 cores.
"""

from ml_collections import config_dict

from asi_jax.train.config import ExperimentConfig, complete


def get_config(variant: str = "mqar") -> config_dict.ConfigDict:
    if variant not in ("mqar", "bytes"):
        raise ValueError(f"configs/tiny_cpu.py takes 'mqar' or 'bytes', got {variant!r}")
    vocab = 256
    data = dict(kind=variant, batch_size=32, seq_len=64, seed=0, eval_examples=256)
    if variant == "mqar":
        data |= dict(mqar=dict(vocab_size=vocab, seq_len=64, num_kv_pairs=4),
                     eval_kv_pairs=(2, 4, 8))  # fmt: skip
    return complete(ExperimentConfig, dict(
        seed=0,
        mixer="deltanet",
        model=dict(vocab_size=vocab, d_model=128, num_layers=4, num_heads=4, max_positions=0),
        data=data,
        optim=dict(learning_rate=3e-3, warmup_steps=30),
        train=dict(steps=300, log_every=25, eval_every=0, checkpoint_every=100,
                   keep_checkpoints=2),
        monitor=dict(min_loss=0.0),
    ))  # fmt: skip
