"""Exploration scale (ASI-Arch's stage 1): a ~20M-parameter LM on one GPU or TPU.

    python scripts/train.py --config=configs/explore_20m.py --config.mixer=gated_deltanet \
        --workdir=runs/explore_gdn

`configs/explore_20m.py:mqar` trains on MQAR (T=512, 32 key-value pairs) instead of text.
The default text corpus is the standard-library sources (about 2 MB): fine for comparing
mixers at equal steps, small for a 20M model; point `--config.data.files` at your own text
or JSONL for real language modelling. bf16 compute, float32 parameters. On one H200 it
trains at 448k tokens/s (MFU 5.6%) with the chunked kernels: see BENCHMARKS.md.
"""

from ml_collections import config_dict

from asi_jax.train.config import ExperimentConfig, complete


def get_config(variant: str = "bytes") -> config_dict.ConfigDict:
    if variant not in ("bytes", "mqar"):
        raise ValueError(f"configs/explore_20m.py takes 'bytes' or 'mqar', got {variant!r}")
    vocab = 256 if variant == "bytes" else 8192
    seq_len = 1024 if variant == "bytes" else 512
    data = dict(kind=variant, batch_size=64, seq_len=seq_len, seed=0, eval_examples=512)
    if variant == "mqar":
        data |= dict(mqar=dict(vocab_size=vocab, seq_len=seq_len, num_kv_pairs=32),
                     eval_kv_pairs=(16, 32, 64))  # fmt: skip
    return complete(ExperimentConfig, dict(
        seed=0,
        mixer="gated_deltanet",
        model=dict(vocab_size=vocab, d_model=512, num_layers=6, num_heads=8),
        data=data,
        optim=dict(learning_rate=1e-3, warmup_steps=500, weight_decay=0.1),
        train=dict(steps=10_000, log_every=50, eval_every=1000, checkpoint_every=1000,
                   keep_checkpoints=3, compute_dtype="bfloat16", mesh_data=-1, mesh_fsdp=1),
        monitor=dict(min_loss=0.05 if variant == "bytes" else 0.0, max_step_seconds=10.0),
    ))  # fmt: skip
