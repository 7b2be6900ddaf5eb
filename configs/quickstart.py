"""Quickstart: a whole evolution run on a laptop CPU, offline, in under 30 minutes.

    python scripts/evolve.py --config=configs/quickstart.py --workdir=runs/quickstart

Exploration trains each candidate (and the baselines linear attention, DeltaNet and Gated
DeltaNet) as a 2-layer, d_model 64 language model on MQAR (vocabulary 64, 32 tokens, 4
key-value pairs) for 200 steps; fitness is ASI-Arch's composite against the DeltaNet run:
held-out loss and mean recall at 4 and 8 pairs. The two fittest candidates and the baselines
are then verified with a second seed and twice the steps; their final checkpoints are kept,
for scripts/evaluate.py. The agents are the offline ones
(grammar researcher, statistics analyser, novelty judge), so no network or API key is needed.
"""

from ml_collections import config_dict

from asi_jax.evolution.config import complete_config


def _experiment(seed: int, steps: int, checkpoint_every: int = 0) -> dict:
    vocab, seq_len = 64, 32
    return dict(
        seed=seed,
        model=dict(vocab_size=vocab, d_model=64, num_layers=2, num_heads=4),
        data=dict(
            kind="mqar",
            batch_size=32,
            seq_len=seq_len,
            seed=seed,
            eval_examples=256,
            mqar=dict(vocab_size=vocab, seq_len=seq_len, num_kv_pairs=4),
            eval_kv_pairs=(4, 8),
        ),
        optim=dict(learning_rate=1e-2, warmup_steps=20),
        train=dict(steps=steps, log_every=50, checkpoint_every=checkpoint_every),
    )


def get_config() -> config_dict.ConfigDict:
    return complete_config(dict(
        task="linear_attention",
        seed=0,
        workers=2,
        agents="offline",  # "llm": the researcher, analyser and judge call llm's model
        llm=dict(provider="gemini", model="gemini-2.5-pro", base_url="",
                 api_key_env="GEMINI_API_KEY"),
        pin_devices=False,  # True on a multi-accelerator host: worker i uses device i
        baselines=("linear_attention", "deltanet", "gated_deltanet"),
        reference_baseline="deltanet",
        explore=_experiment(seed=0, steps=200),
        verify=dict(promote=2, experiment=_experiment(seed=1, steps=400, checkpoint_every=400)),
        budget=dict(candidates=24, wall_seconds=0.0, compute_seconds=0.0),
        cognition=dict(embedder="hashing", extra_entries=(), top_k=4),
        novelty_threshold=0.97,
        check=dict(batch_sizes=(2,), seq_lens=(1, 37), cost_seq_len=128),
        # Floors: each stage's limits are 4x what DeltaNet took there, where that is more.
        limits=dict(wall_seconds=300.0, cpu_seconds=900, reference_multiple=4.0),
        max_attempts=2,
    ))  # fmt: skip
