"""MQAR in Zoology's setup, scaled to 2 CPU cores: the baseline comparison of BENCHMARKS.md.

    python scripts/sweep_baselines.py --config=configs/mqar_zoology.py \
        --mixers=softmax,linear_attention,deltanet,gated_deltanet --workdir=runs/mqar_zoology

As in Zoology's figure 2 (Arora et al. 2023): two layers, one head, learned absolute
position embeddings (without them, our rotary-only softmax attention stays on the plateau
where it answers with any value not yet asked, about 0.5 recall), 4 key-value pairs.
Scaled down: vocabulary 64, 32 tokens, d_model 64, batch 64, 3000 steps. Recall is also
measured at 8 pairs, which fill half the sequence.
"""

from ml_collections import config_dict

from asi_jax.train.config import ExperimentConfig, complete


def get_config() -> config_dict.ConfigDict:
    vocab, seq_len = 64, 32
    return complete(ExperimentConfig, dict(
        seed=0,
        mixer="softmax",
        model=dict(vocab_size=vocab, d_model=64, num_layers=2, num_heads=1,
                   max_positions=seq_len),
        data=dict(kind="mqar", batch_size=64, seq_len=seq_len, seed=0, eval_examples=512,
                  mqar=dict(vocab_size=vocab, seq_len=seq_len, num_kv_pairs=4),
                  eval_kv_pairs=(4, 8)),
        optim=dict(learning_rate=3e-3, warmup_steps=30),
        train=dict(steps=3000, log_every=100, eval_every=0, checkpoint_every=1000,
                   keep_checkpoints=1),
    ))  # fmt: skip
