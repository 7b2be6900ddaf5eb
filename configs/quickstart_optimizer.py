"""Quickstart for optimizer discovery: a whole run on a laptop CPU, offline, in under 20 minutes.

    python scripts/evolve.py --config=configs/quickstart_optimizer.py \
        --workdir=runs/quickstart_optimizer

Candidates are `make_optimizer(learning_rate)` factories (see asi_jax/tasks/optimizer). Each
trains the same language model: linear attention (the cheapest mixer on a CPU), 2 layers,
d_model 64, on the byte-level standard-library corpus (batch 16 x 64 bytes) for 150 steps
under a warmup-cosine schedule with peak 3e-3 and global-norm clipping 1.0; fitness is
ASI-Arch's composite against AdamW's run: held-out loss and held-out next-token accuracy.
Baselines: AdamW (the reference), Lion and Adafactor. The two fittest candidates and the
baselines are then verified with a second seed and twice the steps.

Cost, measured with the task's `evaluate` on a 2-core machine that was running another test
suite at the same time (load average about 9): one 150-step exploration evaluation took
61 s of wall time (24 s of it compiling) but only 24 s of CPU time (the process got a third
of a core); on an idle 2-core laptop expect about 25 s, and 4 s for a check in a fresh
worker (13 s at that load). Exploration: 3 baselines + 20 candidates = 23 evaluations at 2 workers
= 12 rounds x ~30 s = 6 min; verification: 5 runs at 300 steps = 3 rounds x ~45 s = 2.5 min;
with the agents and the sandbox's start-up about 10-12 minutes idle, under 20 with a busy
machine. Raise `budget.candidates` on a faster machine.
"""

from ml_collections import config_dict

from asi_jax.evolution.config import complete_config


def _experiment(seed: int, steps: int, checkpoint_every: int = 0) -> dict:
    return dict(
        seed=seed,
        mixer="linear_attention",  # fixed: the optimizer is what evolves
        model=dict(vocab_size=256, d_model=64, num_layers=2, num_heads=4),
        data=dict(kind="bytes", batch_size=16, seq_len=64, seed=seed, eval_examples=128),
        optim=dict(learning_rate=3e-3, warmup_steps=15, min_lr_ratio=0.1, clip_norm=1.0),
        train=dict(steps=steps, log_every=50, checkpoint_every=checkpoint_every),
    )


def _values() -> dict:
    return dict(
        task="optimizer",
        seed=0,
        workers=2,
        agents="offline",  # "llm": the researcher, analyser and judge call llm's model
        llm=dict(provider="gemini", model="gemini-2.5-pro", base_url="",
                 api_key_env="GEMINI_API_KEY"),
        pin_devices=False,
        baselines=("adamw", "lion", "adafactor"),
        reference_baseline="adamw",
        explore=_experiment(seed=0, steps=150),
        verify=dict(promote=2, experiment=_experiment(seed=1, steps=300, checkpoint_every=300)),
        budget=dict(candidates=20, wall_seconds=0.0, compute_seconds=0.0),
        cognition=dict(embedder="hashing", extra_entries=(), top_k=4),
        novelty_threshold=0.97,
        # The optimizer task's check (asi_jax/tasks/optimizer/checker.py), at its defaults.
        check=dict(shapes=((48, 32), (3, 16, 8), (32,), ()), dtypes=("float32", "bfloat16"),
                   steps=3, learning_rate=1e-2, max_state_ratio=3.0, tolerance=1e-3,
                   descent_steps=30, descent_learning_rate=3e-2, min_descent=0.05, seed=0),
        # Floors: each stage's limits are 4x what AdamW took there, where that is more.
        limits=dict(wall_seconds=300.0, cpu_seconds=900, reference_multiple=4.0),
        max_attempts=2,
    )  # fmt: skip


def get_config() -> config_dict.ConfigDict:
    return complete_config(_values())
