"""The cognition store: shipped entries, the ASI-Arch ingester, embedders, the ScaNN index."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fake_servers import serve

from asi_jax.cognition.bench import (
    Quality,
    key_texts,
    measure,
    retrieval_quality,
    synthetic_entries,
    synthetic_queries,
)
from asi_jax.cognition.bm25 import BM25
from asi_jax.cognition.embedders import EmbeddingError, GeminiEmbedder, HashingEmbedder
from asi_jax.cognition.entries import (
    ASI_ARCH_FIELDS,
    ingest_asi_arch,
    load_jsonl,
)
from asi_jax.cognition.index import IndexConfig, VectorIndex, fingerprint
from asi_jax.cognition.store import CognitionStore
from asi_jax.tasks.linear_attention import LinearAttentionTask

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
ASI_ARCH_DIR = DATA / "asi_arch_cognition"


def test_shipped_entries_cover_the_literature_in_asi_arch_fields():
    entries = load_jsonl(LinearAttentionTask.cognition_file)
    assert len(entries) >= 40
    assert len({e.title for e in entries}) == len(entries)
    text = " ".join(e.title + " " + e.source for e in entries)
    for topic in (
        "DeltaNet",
        "Gated DeltaNet",
        "GLA",
        "RetNet",
        "Mamba2",
        "HGRN2",
        "RWKV-7",
        "xLSTM",
        "Based",
        "Hedgehog",
        "Zoology",
        "TTT",
        "Titans",
        "Longhorn",
        "DeltaProduct",
        "Kimi",
        "Forgetting Transformer",
        "PaTH",
        "Log-Linear",
    ):
        assert topic in text, topic
    for e in entries:
        assert set(e.to_json()) >= set(ASI_ARCH_FIELDS)


def test_forgetting_old_associations_retrieves_gated_and_delta_entries_first():
    store = CognitionStore(load_jsonl(LinearAttentionTask.cognition_file), HashingEmbedder())
    top = [r.entry.title for r in store.retrieve("forgetting old associations", k=3)]
    gated_or_delta = {
        "Gated DeltaNet",
        "Titans: memory with surprise and forgetting",
        "Forgetting Transformer",
        "Kimi Delta Attention: channel-wise gated delta rule",
        "Linear attention as fast weight programming",
        "Data-dependent versus fixed decay",
    }
    assert set(top) <= gated_or_delta, top
    assert "Gated DeltaNet" in top


def test_retrieval_matches_trigger_patterns():
    store = CognitionStore(load_jsonl(LinearAttentionTask.cognition_file), HashingEmbedder())
    top = store.retrieve("recall drops as the number of key-value pairs grows", k=2)
    assert top[0].entry.title == "Zoology and multi-query associative recall"
    assert top[0].score >= top[1].score


def test_ingests_asi_arch_folders_recursively_with_titles_from_background():
    warnings = []
    entries = ingest_asi_arch(ASI_ARCH_DIR, warn=warnings.append)
    assert len(entries) == 6  # README.txt ignored; .JSON and .jsonl in nested folders found
    assert {e.title for e in entries} == {
        "Short Convolutions Sharpen Recall in Recurrent Mixers",  # **Title**: in BACKGROUND
        "Chunked Decay in Log Space for Stable Linear Recurrences",  # BACKGROUND as a list
        "Capacity Limits of Outer-Product Memories",
        "state capacity",  # no **Title** line: the file's name
        "Gated Output Normalisation",  # **Title:** spelling
    }
    assert {e.source for e in entries} == {
        "Short Convolutions for Recall",
        "arXiv:2401.01234",
        "state capacity",
        "missing fields",
    }
    joined = [e for e in entries if "budget" in e.trigger_patterns]
    assert joined and "Convolutions dominate" in joined[0].trigger_patterns  # list -> text
    # The malformed file and entry are skipped, each with its place, and counted.
    assert any("truncated.json: not valid JSON" in w for w in warnings)
    assert any("missing_fields.json[0]: missing fields" in w for w in warnings)
    assert warnings[-1].endswith("skipped as malformed 1 of 5 files and 1 entries")
    store = CognitionStore(
        load_jsonl(LinearAttentionTask.cognition_file) + entries, HashingEmbedder()
    )
    top = store.retrieve("NaN appears with strong decays in bfloat16", k=1)
    assert top[0].entry.title == "Chunked Decay in Log Space for Stable Linear Recurrences"


def test_ingested_entries_carry_no_local_path_into_prompts_or_index_keys(tmp_path):
    folder = tmp_path / "home" / "someone" / "cognition"
    shutil.copytree(ASI_ARCH_DIR, folder)
    entries = ingest_asi_arch(folder, warn=lambda _: None)
    # The prompt shows title, source and fields (`text()`); the index key is title + triggers.
    assert not any("someone" in e.text() or str(tmp_path) in e.text() for e in entries)
    assert entries == ingest_asi_arch(ASI_ARCH_DIR, warn=lambda _: None)  # same wherever read
    key = fingerprint([e.text() for e in entries], "e")
    assert key == fingerprint([e.text() for e in ingest_asi_arch(folder, warn=lambda _: None)], "e")


def test_hashing_embedder_is_deterministic_unit_and_morphology_aware():
    e = HashingEmbedder()
    a, b, c = e.embed(["forgetting gates", "forget gate", "rotary position"])
    assert np.allclose(np.linalg.norm([a, b, c], axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, HashingEmbedder().embed(["forgetting gates"])[0])
    assert a @ b > 0.5 > a @ c


def test_tree_ah_index_finds_planted_neighbours_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    config = IndexConfig(brute_force_limit=100, leaves_searched_fraction=0.2)
    index = VectorIndex(vectors, config)
    assert index.kind == "tree_ah"
    queries = vectors[:200] + 0.05 * rng.normal(size=(200, 32)).astype(np.float32)
    ids, _ = index.search(queries, 1)
    # ScaNN's k-means differs from build to build: on these uniform (unclustered) vectors,
    # with 20% of the leaves searched, recall@1 was 0.87-0.95 over 8 builds (exhaustive: 1.0)
    assert (ids[:, 0] == np.arange(200)).mean() >= 0.8
    index.save(tmp_path / "idx", key="k1")
    assert VectorIndex.load(tmp_path / "idx", key="other", config=config) is None  # stale
    assert VectorIndex.load(tmp_path / "idx", key="k1") is None  # other settings: rebuilt
    loaded = VectorIndex.load(tmp_path / "idx", key="k1", config=config)
    assert np.array_equal(loaded.search(queries, 1)[0], ids)
    small = VectorIndex(vectors[:50])
    assert small.kind == "brute_force"
    assert small.search(vectors[3], 10)[0][0, 0] == 3
    assert VectorIndex(np.zeros((0, 32), np.float32)).search(vectors[:1], 5)[0].shape == (1, 0)


def test_store_index_is_saved_and_rebuilt_when_entries_change(tmp_path):
    entries = load_jsonl(LinearAttentionTask.cognition_file)
    CognitionStore(entries, HashingEmbedder(), tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["rows"] == len(entries)
    CognitionStore(entries[:10], HashingEmbedder(), tmp_path / "idx")
    assert json.loads((tmp_path / "idx" / "manifest.json").read_text())["rows"] == 10


def test_default_index_finds_the_exact_top_10_on_text_embeddings():
    # The large-set path, forced at a size CI can afford, on the benchmark's ASI-Arch-style
    # text (the old 20%-of-leaves tree found 0.86 of it at 10k entries, 0.91 at 60% and 3k).
    vectors = HashingEmbedder().embed(key_texts(synthetic_entries(3000)))
    queries = HashingEmbedder().embed(synthetic_queries(50))
    measured = measure("new", vectors, queries, IndexConfig(brute_force_limit=0), k=10)
    assert measured.kind == "ah"
    assert measured.recall_at_k >= 0.95, measured
    assert VectorIndex(vectors).kind == "brute_force"  # 3k rows: exact by default


def test_synthetic_entries_differ_like_papers_not_near_duplicates():
    entries = synthetic_entries(500)
    assert len({e.trigger_patterns for e in entries}) == 500
    vectors = HashingEmbedder().embed(key_texts(entries))
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    assert similarity.max() < 0.9 and 0.05 < similarity.mean() < 0.4


def test_bench_cognition_script_prints_a_table_and_writes_json(tmp_path):
    out = tmp_path / "c.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench_cognition.py"), "--sizes=200,400",
         "--queries=10", "--settings=old,new_forced", f"--output={out}"],
        capture_output=True, text=True, check=True, cwd=ROOT,
    )  # fmt: skip
    assert "setting" in result.stdout and "recall@k" in result.stdout
    rows = json.loads(out.read_text())["measurements"]
    assert [(r["setting"], r["rows"], r["kind"]) for r in rows] == [
        ("old", 200, "brute_force"), ("new_forced", 200, "ah"),
        ("old", 400, "brute_force"), ("new_forced", 400, "ah"),
    ]  # fmt: skip
    assert all(r["recall_at_k"] > 0.5 and r["ms_per_query"] > 0 for r in rows)


def test_store_retrieval_is_not_far_behind_bm25_on_judged_queries():
    # 20 problem summaries judged against the 54 linear-attention entries. Measured: store
    # recall@5 0.68, MRR 0.88; BM25 0.77, 0.96; chance 0.09, 0.16 (99th percentile of 200
    # random rankings: 0.21, 0.28). The hashing embedder lacks BM25's idf weighting.
    entries = load_jsonl(LinearAttentionTask.cognition_file)
    judged = json.loads((DATA / "cognition_queries.json").read_text())["queries"]
    queries, relevant = [j["query"] for j in judged], [j["relevant"] for j in judged]
    store, bm25 = CognitionStore(entries, HashingEmbedder()), BM25(key_texts(entries))
    titles = [e.title for e in entries]
    ours = retrieval_quality(
        [[r.entry.title for r in store.retrieve(q, len(entries))] for q in queries], relevant
    )
    lexical = retrieval_quality(
        [[titles[i] for i in bm25.top_k(q, len(entries))] for q in queries], relevant
    )
    assert ours.recall_at_5 >= lexical.recall_at_5 - 0.15, (ours, lexical)
    assert ours.mrr >= lexical.mrr - 0.15, (ours, lexical)
    assert min(ours.recall_at_5, ours.mrr, lexical.recall_at_5, lexical.mrr) >= 0.5


def test_bm25_scores_rare_matching_terms_highest():
    bm25 = BM25(["gated delta rule", "delta rule", "rotary positions", "delta rule with decay"])
    assert bm25.top_k("gated", 1) == [0]
    assert bm25.top_k("delta rule", 2) == [1, 0]  # the shortest match ranks first
    assert bm25.scores("unknown words")[0] == 0.0
    assert np.all(bm25.scores("rotary")[[0, 1, 3]] == 0.0)
    assert retrieval_quality([["a", "b", "c"]], [["b", "z"]]) == Quality(0.5, 0.5)


def _embeddings(path: str, body: dict) -> tuple[int, dict]:
    rows = [{"values": [float(i + 1), 1.0, 0.0]} for i in range(len(body["requests"]))]
    return 200, {"embeddings": rows}


@pytest.fixture
def gemini_key(monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")


def test_gemini_embedder_speaks_the_real_api_to_a_local_server(gemini_key):
    with serve(_embeddings) as server:
        embedder = GeminiEmbedder(base_url=server.url, dim=3, batch_size=2)
        vectors = embedder.embed(["a", "b", "c"], "query")
    assert vectors.shape == (3, 3)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    path, body, headers = server.requests[0]
    assert path.endswith("models/gemini-embedding-001:batchEmbedContents")
    assert headers["x-goog-api-key"] == "test-key"
    assert body["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    assert body["requests"][0]["outputDimensionality"] == 3
    assert len(server.requests) == 2  # batches of 2


def test_gemini_embedder_errors_are_clear(gemini_key, monkeypatch):
    failing = serve(lambda path, body: (500, {"error": {"message": "boom"}}))
    with failing as server, pytest.raises(EmbeddingError, match="Gemini embedding request failed"):
        GeminiEmbedder(base_url=server.url).embed(["a"])
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(EmbeddingError, match=r"needs an API key in \$GEMINI_API_KEY"):
        GeminiEmbedder()


@pytest.mark.parametrize(
    "kind, config",
    [
        ("brute_force", IndexConfig()),
        ("ah", IndexConfig(brute_force_limit=100)),
        ("tree_ah", IndexConfig(brute_force_limit=100, leaves_searched_fraction=0.2)),
    ],
)
def test_an_index_saved_under_a_relative_path_loads_from_another_cwd_and_when_moved(
    kind, config, tmp_path, monkeypatch
):
    vectors = np.random.default_rng(1).normal(size=(300, 16)).astype(np.float32)
    index = VectorIndex(vectors, config)
    assert index.kind == kind
    expected = index.search(vectors[:5], 3)[0]
    monkeypatch.chdir(tmp_path)
    index.save("runs/q/idx", key="k")  # as under the README's --workdir=runs/quickstart
    reloaded = VectorIndex.load("runs/q/idx", key="k", config=config)
    assert np.array_equal(reloaded.search(vectors[:5], 3)[0], expected)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "runs").rename(tmp_path / "moved")
    loaded = VectorIndex.load(tmp_path / "moved" / "q" / "idx", key="k", config=config)
    assert np.array_equal(loaded.search(vectors[:5], 3)[0], expected)


def test_an_index_that_cannot_be_loaded_is_rebuilt_with_a_warning(tmp_path):
    entries = load_jsonl(LinearAttentionTask.cognition_file)
    CognitionStore(entries, HashingEmbedder(), tmp_path / "idx")
    (tmp_path / "idx" / "scann" / "dataset.npy").write_bytes(b"truncated")
    warnings = []
    store = CognitionStore(entries, HashingEmbedder(), tmp_path / "idx", warn=warnings.append)
    assert len(warnings) == 1 and "could not be loaded" in warnings[0]
    assert "rebuilding it" in warnings[0]
    assert store.retrieve("forgetting old associations", 1)  # it works, and was saved again
    quiet = []
    CognitionStore(entries, HashingEmbedder(), tmp_path / "idx", warn=quiet.append)
    assert quiet == []
