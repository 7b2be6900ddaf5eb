"""Verification scale (ASI-Arch's stage 2): a ~340M-parameter LM on a pod slice or cluster.

    python scripts/train.py --config=configs/verify_340m.py --config.mixer=gated_deltanet \
        --config.data.files=/data/corpus.jsonl --config.data.tokenizer=/data/sp.model \
        --config.model.vocab_size=32000 --workdir=gs://bucket/runs/verify_gdn

Run the same command on every host of a TPU pod slice (or with JAX_COORDINATOR_ADDRESS set
on a GPU cluster): `jax.distributed.initialize()` joins the hosts, each reads its share of
every batch, and parameters plus optimizer state are sharded over all devices (fsdp = -1).
Set vocab_size to your tokenizer's. Not yet run here: no pod slice has been available.
"""

from ml_collections import config_dict

from asi_jax.train.config import ExperimentConfig, complete


def get_config() -> config_dict.ConfigDict:
    return complete(ExperimentConfig, dict(
        seed=0,
        mixer="gated_deltanet",
        model=dict(vocab_size=256, d_model=1024, num_layers=24, num_heads=8,
                   tie_embeddings=False),
        data=dict(kind="bytes", batch_size=256, seq_len=2048, seed=0, eval_examples=1024),
        optim=dict(learning_rate=6e-4, warmup_steps=2000, weight_decay=0.1),
        train=dict(steps=50_000, log_every=50, eval_every=2500, checkpoint_every=1000,
                   keep_checkpoints=3, compute_dtype="bfloat16", mesh_data=1, mesh_fsdp=-1),
        monitor=dict(min_loss=0.05, max_step_seconds=30.0),
    ))  # fmt: skip
