"""Evolution on text: candidates and baselines trained as language models on your corpus.

    python scripts/evolve.py --config=configs/evolve_text.py --workdir=runs/text
    python scripts/evolve.py \
        --config=configs/evolve_text.py:/data/corpus.txt,/data/more.jsonl,/data/sp.model \
        --workdir=runs/my_text

The argument lists the corpus files (text, or JSONL with a "text" field) and, last, an
optional tokenizer file (a SentencePiece `.model` or a Hugging Face `tokenizers` `.json`;
needs `pip install -e ".[tokenizers]"`). The files may live anywhere: they are the run's
declared data, mounted read-only into every sandboxed worker, and nothing else of the host
is visible there. Without an argument the corpus is the standard library's sources as UTF-8
bytes (no download). The vocabulary is the tokenizer's (model.vocab_size=0). A folder of
token shards that scripts/prepare_data.py wrote is the whole argument instead:
`configs/evolve_text.py:/data/shards` (its manifest gives the vocabulary and the split).

Exploration trains each candidate as a 2-layer, d_model 64 LM for 300 steps of 16 x 128
tokens; fitness is ASI-Arch's composite against DeltaNet: held-out loss and held-out
next-token accuracy. On 2 CPU cores expect about 1.5 minutes per evaluation.
"""

import os

from ml_collections import config_dict

from asi_jax.evolution.config import complete_config

_TOKENIZER_SUFFIXES = (".model", ".json")


def _experiment(files: tuple[str, ...], tokenizer: str, seed: int, steps: int) -> dict:
    if len(files) == 1 and os.path.isdir(files[0]):
        source = dict(kind="shards", shards=files[0])
    else:
        source = dict(kind="bytes", files=files, tokenizer=tokenizer)
    return dict(
        seed=seed,
        model=dict(vocab_size=0, d_model=64, num_layers=2, num_heads=4),
        data=dict(**source, batch_size=16, seq_len=128, seed=seed, eval_examples=64),
        optim=dict(learning_rate=3e-3, warmup_steps=30),
        train=dict(steps=steps, log_every=50, checkpoint_every=0),
    )  # fmt: skip


def get_config(paths: str = "") -> config_dict.ConfigDict:
    items = [p for p in paths.split(",") if p]
    tokenizer = items.pop() if items and items[-1].endswith(_TOKENIZER_SUFFIXES) else ""
    files = tuple(items)
    return complete_config(dict(
        seed=0,
        workers=2,
        baselines=("linear_attention", "deltanet", "gated_deltanet"),
        reference_baseline="deltanet",
        explore=_experiment(files, tokenizer, seed=0, steps=300),
        verify=dict(promote=2, experiment=_experiment(files, tokenizer, seed=1, steps=600)),
        budget=dict(candidates=16),
        check=dict(batch_sizes=(2,), seq_lens=(1, 37), cost_seq_len=128),
        limits=dict(wall_seconds=600.0, cpu_seconds=1800, reference_multiple=4.0),
    ))  # fmt: skip
