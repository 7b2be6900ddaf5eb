"""Benchmarks the cognition index: build time, time per query and recall@k against exact
search, for each index setting at each number of entries.

    python scripts/bench_cognition.py --sizes=1000,10000,100000 --queries=100 \
        --settings=old,new,exact --output=bench_results/cognition.json

Entries and queries are synthetic ASI-Arch-style text (asi_jax/cognition/bench.py) embedded
with the offline HashingEmbedder: the figures are for those embeddings, not for a neural
embedder's (none can be downloaded here). Settings: `old` is the index before it was tuned
(a k-means tree above 2,000 entries, 20% of its leaves searched), `new` the current
defaults, `new_forced` the defaults' large-set path forced at every size (brute-force limit
0), and `exact` brute force at every size.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from absl import flags

from asi_jax import command_line
from asi_jax.cognition import bench
from asi_jax.cognition.embedders import HashingEmbedder
from asi_jax.cognition.index import IndexConfig
from asi_jax.provenance import environment_record

SETTINGS = {
    "old": IndexConfig(brute_force_limit=2000, leaves_searched_fraction=0.2, reorder=100),
    "new": IndexConfig(),
    "new_forced": dataclasses.replace(IndexConfig(), brute_force_limit=0),
    "exact": IndexConfig(brute_force_limit=2**62),
}

_SIZES = flags.DEFINE_list("sizes", ["1000", "10000", "100000"], "Numbers of entries.")
_QUERIES = flags.DEFINE_integer("queries", 100, "Problem summaries searched (one at a time).")
_K = flags.DEFINE_integer("k", 10, "Neighbours compared with exact search.")
_SETTINGS = flags.DEFINE_list("settings", ["old", "new", "exact"], f"Of {list(SETTINGS)}.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic entries.")
_OUTPUT = flags.DEFINE_string("output", "bench_results/cognition.json", "JSON file to write.")


def format_table(rows: list[bench.Measurement]) -> str:
    lines = [f"{'setting':<10} {'entries':>8} {'kind':<12} {'build s':>8} {'ms/query':>9} "
             f"{'recall@k':>8}"]  # fmt: skip
    lines += [f"{m.setting:<10} {m.rows:>8} {m.kind:<12} {m.build_seconds:>8.2f} "
              f"{m.ms_per_query:>9.2f} {m.recall_at_k:>8.3f}" for m in rows]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    if unknown := [s for s in _SETTINGS.value if s not in SETTINGS]:
        raise command_line.UsageError(f"unknown settings {unknown}; expected some of "
                                      f"{list(SETTINGS)}")  # fmt: skip
    try:
        sizes = sorted(int(s) for s in _SIZES.value)
    except ValueError as e:
        raise command_line.UsageError(f"--sizes must be integers ({e})") from e
    embedder = HashingEmbedder()
    start = time.perf_counter()
    entries = bench.synthetic_entries(max(sizes), _SEED.value)
    vectors = embedder.embed(bench.key_texts(entries), "document")
    queries = embedder.embed(bench.synthetic_queries(_QUERIES.value, _SEED.value + 1), "query")
    print(f"embedded {len(entries)} entries with {embedder.name} in "
          f"{time.perf_counter() - start:.1f} s", flush=True)  # fmt: skip
    rows = []
    for n in sizes:
        exact = bench.exact_top_k(vectors[:n], queries, _K.value)
        for name in _SETTINGS.value:
            rows.append(bench.measure(name, vectors[:n], queries, SETTINGS[name], _K.value, exact))
            print(format_table(rows[-1:]).splitlines()[1], flush=True)
    print(format_table(rows))
    output = Path(_OUTPUT.value)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "environment": environment_record(devices=False),
        "embedder": embedder.name,
        "flags": {f.name: f.value for f in flags.FLAGS.get_key_flags_for_module(__name__)},
        "settings": {name: dataclasses.asdict(SETTINGS[name]) for name in _SETTINGS.value},
        "measurements": [dataclasses.asdict(m) for m in rows],
    }
    output.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    command_line.run(main)
