"""ASI-Arch's two-stage setup: exploration at ~20M parameters on ~1B tokens, verification of
the top candidates at ~390M parameters on ~15B tokens, on your tokenised corpus.

    python scripts/prepare_data.py --input=/data/corpus.jsonl --tokenizer=/data/sp32k.model \
        --output=/data/shards
    python scripts/evolve.py --config=configs/evolve_asi_arch.py:gpu,/data/shards,/data/bench \
        --workdir=runs/asi_arch --dry_run
    python scripts/evolve.py --config=configs/evolve_asi_arch.py:gpu,/data/shards,/data/bench \
        --workdir=runs/asi_arch

The argument is the variant, the shard folder (`scripts/prepare_data.py`'s output; a
32k-vocabulary tokenizer gives the parameter counts below; the vocabulary is the shards') and,
optionally, a folder of downstream benchmark files (`<task>.jsonl`, see README): with it both
stages score ASI-Arch's benchmarks (ARC-e, ARC-c, BoolQ, HellaSwag, LAMBADA, PIQA, SIQA,
WinoGrande; Wikitext perplexity is reported beside them) and their mean accuracy is the
fitness's benchmark term; without it the term is held-out next-token accuracy.
- `gpu`: one accelerator. Candidates are explored one at a time; verification trains each
  promoted candidate and baseline on the same device.
- `pod`: a host with 8 accelerators (a TPU v4-8/v5e-8 slice host, or an 8-GPU machine).
  Eight candidates explore at once, one per chip (`pin_devices`); verification shards each
  run's parameters and optimizer state over all eight (fsdp).

`--dry_run` builds every stage's model and data pipeline and prints parameter counts, token
budgets and the estimated accelerator-hours, without training. The estimate is 6 x
parameters x tokens at the 5.6% MFU measured for `configs/explore_20m.py` on one H200 (the
only device run so far, BENCHMARKS.md). With a 32k vocabulary that is about 0.63 H200-hours
per explored candidate (130 for 200 candidates and the baselines) and about 180 per
verification run (1,600 for 5 candidates and 4 baselines), all estimated; verification should
reach a far higher MFU at 390M parameters than the 20M run did. Limits are per stage: a verification
run may take two weeks of wall time and writes checkpoints of several GB, which
verification keeps (`train.keep_checkpoints`) for `scripts/evaluate.py`.
"""

import os

from ml_collections import config_dict

from asi_jax.evolution.config import complete_config

_VARIANTS = {
    # variant -> (workers, pin_devices, explore mesh (data, fsdp), verify mesh (data, fsdp))
    "gpu": (1, False, (-1, 1), (-1, 1)),
    "pod": (8, True, (-1, 1), (1, -1)),
}
_SEQ_LEN = 2048
_BENCHMARKS = ("arc_easy", "arc_challenge", "boolq", "hellaswag", "lambada_openai", "piqa",
               "social_iqa", "winogrande", "wikitext")  # fmt: skip


def _experiment(shards: str, benchmarks: str, *, seed: int, d_model: int, layers: int, heads: int,
                tie: bool, batch: int, steps: int, mesh: tuple[int, int],
                checkpoint_every: int, learning_rate: float, warmup: int) -> dict:  # fmt: skip
    return dict(
        seed=seed,
        model=dict(vocab_size=0, d_model=d_model, num_layers=layers, num_heads=heads,
                   tie_embeddings=tie),
        data=dict(kind="shards", shards=shards, batch_size=batch, seq_len=_SEQ_LEN, seed=seed,
                  eval_examples=1024),
        optim=dict(learning_rate=learning_rate, warmup_steps=warmup, weight_decay=0.1),
        train=dict(steps=steps, log_every=100, eval_every=0, checkpoint_every=checkpoint_every,
                   keep_checkpoints=2, compute_dtype="bfloat16", mesh_data=mesh[0],
                   mesh_fsdp=mesh[1]),
        monitor=dict(min_loss=0.05, max_step_seconds=60.0),
        evals=dict(benchmarks=_BENCHMARKS if benchmarks else (), data_dir=benchmarks,
                   max_examples=1000, max_length=_SEQ_LEN),
    )  # fmt: skip


def get_config(argument: str = "gpu") -> config_dict.ConfigDict:
    variant, shards, benchmarks, *rest = [*argument.split(","), "", ""]
    if variant not in _VARIANTS or any(rest):
        raise ValueError("configs/evolve_asi_arch.py takes 'gpu' or 'pod', then ',SHARDS' and "
                         f"optionally ',BENCHMARKS'; got {argument!r}")  # fmt: skip
    shards = os.path.abspath(shards or "data/shards")
    benchmarks = os.path.abspath(benchmarks) if benchmarks else ""
    workers, pin, explore_mesh, verify_mesh = _VARIANTS[variant]
    # ~20M parameters at a 32k vocabulary; 64 x 2048 tokens x 7,630 steps = 1.0B tokens.
    explore = _experiment(shards, benchmarks, seed=0, d_model=320, layers=8, heads=5, tie=True,
                          batch=64, steps=7_630, mesh=explore_mesh, checkpoint_every=0,
                          learning_rate=1e-3, warmup=500)  # fmt: skip
    # ~390M parameters; 256 x 2048 tokens x 28,610 steps = 15.0B tokens.
    verify = _experiment(shards, benchmarks, seed=1, d_model=1024, layers=24, heads=8, tie=False,
                         batch=256, steps=28_610, mesh=verify_mesh, checkpoint_every=1000,
                         learning_rate=6e-4, warmup=2000)  # fmt: skip
    hour = 3600.0
    return complete_config(dict(
        task="linear_attention",
        seed=0,
        workers=workers,
        pin_devices=pin,
        agents="llm",
        baselines=("linear_attention", "deltanet", "gated_deltanet", "mamba2"),
        reference_baseline="deltanet",
        explore=explore,
        verify=dict(promote=5, experiment=verify,
                    limits=dict(wall_seconds=14 * 24 * hour, cpu_seconds=10**9,
                                memory_bytes=0, file_bytes=64 << 30,
                                reference_multiple=2.0)),
        budget=dict(candidates=200),
        limits=dict(wall_seconds=6 * hour, cpu_seconds=10**8, memory_bytes=0,
                    file_bytes=4 << 30, reference_multiple=4.0),
        check=dict(batch_sizes=(2,), seq_lens=(1, 37), cost_seq_len=_SEQ_LEN),
    ))  # fmt: skip
