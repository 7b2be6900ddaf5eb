"""Token shards: prepare_data's shards and manifest, the datasets path, damaged folders, the
shard pipeline (resume, per-host split), training on shards, and sandboxed runs that read
them through the read-only mount."""

from __future__ import annotations

import dataclasses
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from train_testing import losses, tiny_dict

from asi_jax.data import shards
from asi_jax.data.pipeline import DataConfig, eval_batches, shard_documents, train_iterator
from asi_jax.data.prepare import PrepareConfig, prepare
from asi_jax.train.config import from_config_dict
from asi_jax.train.trainer import train

ROOT = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "a",
    "lazy",
    "dog",
    "while",
    "seven",
    "wizards",
    "quietly",
    "hex",
    "it",
]


def _document(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 120))) + "."


@pytest.fixture
def corpus(tmp_path) -> dict:
    """Two text files, a JSONL file (with an empty document) and a Parquet file of 3 row
    groups; returns the paths and the documents' texts in corpus order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(0)
    texts, paths = [], []
    for i in range(2):
        paths.append(tmp_path / f"book{i}.txt")
        texts.append(_document(rng))
        paths[-1].write_text(texts[-1])
    jsonl = [_document(rng) for _ in range(60)]
    lines = [json.dumps({"text": t, "id": i}) for i, t in enumerate(jsonl)]
    lines.insert(10, json.dumps({"text": ""}))  # skipped: no tokens
    paths.append(tmp_path / "web.jsonl")
    paths[-1].write_text("\n".join(lines) + "\n")
    parquet = [_document(rng) for _ in range(45)]
    paths.append(tmp_path / "rows.parquet")
    pq.write_table(pa.table({"body": parquet, "n": list(range(45))}), paths[-1],
                   row_group_size=15)  # fmt: skip
    return {"paths": tuple(map(str, paths)), "texts": texts + jsonl + parquet,
            "parquet": parquet}  # fmt: skip


def _prepare(corpus: dict, output: Path, **kwargs) -> dict:
    config = PrepareConfig(inputs=corpus["paths"], output=str(output), text_field="text",
                           heldout_fraction=0.1, shard_tokens=2_000, chunk_bytes=3_000,
                           **kwargs)  # fmt: skip
    return prepare(config, log=lambda line: None)


def _split_corpus(corpus: dict) -> dict:
    """The fixture's Parquet file has its text in "body": a corpus of the other files."""
    return {**corpus, "paths": corpus["paths"][:3], "texts": corpus["texts"][:62]}


def _records(folder: Path, split: str) -> list[np.ndarray]:
    docs = shard_documents(folder, split)
    return [docs[i]["tokens"] for i in range(len(docs))]


def _shard_hashes(manifest: dict) -> list[str]:
    return [s["sha256"] for split in shards.SPLITS for s in manifest["splits"][split]["shards"]]


def test_manifest_counts_and_records_match_the_corpus(corpus, tmp_path):
    corpus = _split_corpus(corpus)
    manifest = _prepare(corpus, tmp_path / "shards")
    texts = corpus["texts"]
    assert manifest["documents"] == len(texts) and manifest["vocab_size"] == 256
    assert manifest["dtype"] == "uint8" and manifest["tokenizer"]["kind"] == "bytes"
    assert manifest["tokens"] == sum(len(t.encode()) for t in texts)
    heldout = [i for i in range(len(texts)) if (i + 1) * 0.1 // 1 > i * 0.1 // 1]
    assert manifest["splits"]["heldout"]["documents"] == len(heldout) == 6
    assert [s["documents"] for s in manifest["sources"]] == [1, 1, 60]
    assert manifest["sources"][2]["empty_documents"] == 1
    assert len(manifest["splits"]["train"]["shards"]) > 1  # shard_tokens closed some shards
    for split in shards.SPLITS:
        for shard in manifest["splits"][split]["shards"]:
            assert shard["bytes"] == (tmp_path / "shards" / shard["file"]).stat().st_size
    # Each record is one document's bytes, in corpus order within its split.
    train = [t for i, t in enumerate(texts) if i not in heldout]
    assert [bytes(r.astype(np.uint8)).decode() for r in _records(tmp_path / "shards", "train")] \
        == train  # fmt: skip
    assert manifest["config"]["heldout_fraction"] == 0.1


def test_tokenizer_file_and_workers_give_the_same_shards(corpus, tmp_path):
    """A tokenizers .json file's ids, recorded with the file's hash; two worker processes
    write exactly the shards that one does."""
    import tokenizers

    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(corpus["texts"], tokenizers.trainers.BpeTrainer(
        vocab_size=120, special_tokens=["[UNK]"], show_progress=False))  # fmt: skip
    path = tmp_path / "tok.json"
    tokenizer.save(str(path))
    corpus = _split_corpus(corpus)
    one = _prepare(corpus, tmp_path / "one", tokenizer=str(path))
    two = _prepare(corpus, tmp_path / "two", tokenizer=str(path), workers=2)
    assert one["tokenizer"]["kind"] == "tokenizers" and one["tokenizer"]["path"] == str(path)
    assert len(one["tokenizer"]["sha256"]) == 64
    assert one["vocab_size"] == tokenizer.get_vocab_size() and one["dtype"] == "uint8"
    assert _shard_hashes(one) == _shard_hashes(two)
    records = _records(tmp_path / "one", "train")
    np.testing.assert_array_equal(records[0], tokenizer.encode(corpus["texts"][0]).ids)
    config = DataConfig(kind="shards", shards=str(tmp_path / "two"), batch_size=2, seq_len=8)
    assert config.vocab_size == one["vocab_size"] and not config.byte_level


def test_hf_dataset_path_gives_the_parquet_shards(corpus, tmp_path, monkeypatch):
    """datasets.load_dataset("parquet", data_files=...) on a local file (no download), its
    rows tokenised by two worker processes."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    parquet = corpus["paths"][3]
    common = dict(text_field="body", heldout_fraction=0.2, shard_tokens=3_000)
    direct = prepare(PrepareConfig(inputs=(parquet,), output=str(tmp_path / "direct"),
                                   **common), log=lambda line: None)  # fmt: skip
    hf = prepare(PrepareConfig(hf_dataset="parquet", hf_data_files=(parquet,), hf_rows=7,
                               workers=2, hf_cache_dir=str(tmp_path / "cache"),
                               output=str(tmp_path / "hf"), **common),
                 log=lambda line: None)  # fmt: skip
    assert hf["documents"] == direct["documents"] == len(corpus["parquet"])
    assert _shard_hashes(hf) == _shard_hashes(direct)
    assert hf["sources"] == [{"path": "parquet", "documents": 45, "empty_documents": 0}]
    with pytest.raises(ValueError, match=r"no column 'text'; its columns are \['body', 'n'\]"):
        prepare(PrepareConfig(hf_dataset="parquet", hf_data_files=(parquet,),
                              hf_cache_dir=str(tmp_path / "cache"),
                              output=str(tmp_path / "bad")))  # fmt: skip


def test_bad_input_is_reported_clearly(corpus, tmp_path):
    txt, _, jsonl, parquet = corpus["paths"]
    with pytest.raises(FileNotFoundError, match=r"input file .*missing\.txt' does not exist"):
        PrepareConfig(inputs=(str(tmp_path / "missing.txt"),), output=str(tmp_path / "o"))
    with pytest.raises(ValueError, match=r"expected one of \.txt, \.jsonl, \.parquet"):
        PrepareConfig(inputs=(str(tmp_path / "data.csv"),), output=str(tmp_path / "o"))
    with pytest.raises(ValueError, match="either input files or a Hugging Face dataset"):
        PrepareConfig(output=str(tmp_path / "o"))
    with pytest.raises(ValueError, match=r"rows\.parquet: no column 'text'"):
        prepare(PrepareConfig(inputs=(parquet,), output=str(tmp_path / "o")))
    with pytest.raises(ValueError, match=r"web\.jsonl \(line at byte \d+\): .*string field 'body'"):
        prepare(PrepareConfig(inputs=(jsonl,), output=str(tmp_path / "o2"), text_field="body"))
    (tmp_path / "vocab.txt").write_text("a")
    with pytest.raises(ValueError, match=r"expected a SentencePiece \.model or a tokenizers"):
        prepare(PrepareConfig(inputs=(txt,), output=str(tmp_path / "o3"),
                              tokenizer=str(tmp_path / "vocab.txt")))  # fmt: skip
    with pytest.raises(ValueError, match="exists and is not an empty folder"):
        prepare(PrepareConfig(inputs=(txt,), output=str(tmp_path)))


def _damage(folder: Path, how: str) -> None:
    manifest_path = folder / shards.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    shard = folder / manifest["splits"]["train"]["shards"][-1]["file"]
    if how == "truncated manifest":
        manifest_path.write_text(manifest_path.read_text()[:200])
    elif how == "mutated counts":
        manifest["splits"]["train"]["tokens"] += 1
        manifest_path.write_text(json.dumps(manifest))
    elif how == "missing shard":
        shard.unlink()
    elif how == "truncated shard":
        shard.write_bytes(shard.read_bytes()[:-10])
    else:
        manifest_path.unlink()


@pytest.mark.parametrize(("how", "message"), [
    ("truncated manifest", r"manifest\.json: not valid JSON, truncated or damaged"),
    ("mutated counts", r"split 'train' counts \(\d+ documents, \d+ tokens\) differ from its "
                       r"shards' sums"),
    ("missing shard", r"shard '.*train-\d+\.array_record' of split 'train' is missing"),
    ("truncated shard", r"has \d+ bytes, the manifest says \d+: truncated or replaced"),
    ("no manifest", r"holds no manifest\.json: .*did not finish"),
])  # fmt: skip
def test_damaged_shard_folders_fail_with_a_clear_message(corpus, tmp_path, how, message):
    _prepare(_split_corpus(corpus), tmp_path / "shards")
    _damage(tmp_path / "shards", how)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        DataConfig(kind="shards", shards=str(tmp_path / "shards"), seq_len=16)


def test_shard_config_errors(corpus, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"needs data\.shards"):
        DataConfig(kind="shards")
    with pytest.raises(FileNotFoundError, match=r"shard folder .* does not exist"):
        DataConfig(kind="shards", shards=str(tmp_path / "none"))
    _prepare(_split_corpus(corpus), tmp_path / "shards")
    with pytest.raises(ValueError, match=r"data\.files and data\.tokenizer are for data\.kind="):
        DataConfig(kind="shards", shards=str(tmp_path / "shards"), files=(corpus["paths"][0],))
    with pytest.raises(ValueError, match=r"heldout split has \d+ tokens, fewer than seq_len"):
        DataConfig(kind="shards", shards=str(tmp_path / "shards"), seq_len=10_000)
    monkeypatch.chdir(tmp_path)  # relative folders become absolute, and are the declared data
    config = DataConfig(kind="shards", shards="shards")
    assert config.shards == str(tmp_path / "shards") and config.declared_paths == (config.shards,)


@pytest.mark.parametrize("read_threads", [0, 2])
def test_shard_iterator_resumes_from_its_state_and_eval_is_fixed(corpus, tmp_path, read_threads):
    _prepare(_split_corpus(corpus), tmp_path / "shards")
    config = DataConfig(kind="shards", shards=str(tmp_path / "shards"), batch_size=4,
                        seq_len=48, seed=5, eval_examples=10,
                        read_threads=read_threads)  # fmt: skip
    it = train_iterator(config)
    first = [next(it) for _ in range(7)]
    state = json.loads(json.dumps(it.get_state()))  # as a checkpoint stores it
    expected = [next(it)["inputs"] for _ in range(30)]  # past an epoch of the 1.9k tokens
    resumed = train_iterator(config)
    resumed.set_state(state)
    for batch in expected:
        np.testing.assert_array_equal(next(resumed)["inputs"], batch)
    np.testing.assert_array_equal(first[0]["inputs"][:, 1:], first[0]["targets"][:, :-1])
    other_seed = next(train_iterator(dataclasses.replace(config, seed=6)))
    assert not np.array_equal(other_seed["inputs"], first[0]["inputs"])

    evals = eval_batches(config)
    assert [len(b["inputs"]) for b in evals] == [4, 4, 2]
    np.testing.assert_array_equal(evals[0]["inputs"], eval_batches(config)[0]["inputs"])
    heldout = _records(tmp_path / "shards", "heldout")
    np.testing.assert_array_equal(evals[0]["inputs"][0], np.concatenate(heldout)[:48])


def test_hosts_read_disjoint_documents(tmp_path):
    """Document i is one byte repeated (a distinct byte per document): the bytes a host sees
    name the documents it read."""
    docs = [chr(ord("!") + i) * 40 for i in range(60)]
    (tmp_path / "docs.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    prepare(PrepareConfig(inputs=(str(tmp_path / "docs.jsonl"),), output=str(tmp_path / "s"),
                          heldout_fraction=0.1), log=lambda line: None)  # fmt: skip
    config = DataConfig(kind="shards", shards=str(tmp_path / "s"), batch_size=4, seq_len=16)
    seen = []
    for host in range(2):
        it = train_iterator(config, process_index=host, process_count=2)
        batches = [next(it) for _ in range(40)]  # 40 x 2 windows of 17: over an epoch
        assert batches[0]["inputs"].shape == (2, 16)
        seen.append({int(t) for b in batches for t in np.unique(b["inputs"])})
    train = {ord(d[0]) for i, d in enumerate(docs) if (i + 1) % 10}
    assert not seen[0] & seen[1]
    assert seen[0] | seen[1] == train


def _shard_config(folder: Path, **train_fields) -> dict:
    config = tiny_dict(**train_fields)
    config["data"] = {"kind": "shards", "shards": str(folder), "batch_size": 8, "seq_len": 32,
                      "eval_examples": 16}  # fmt: skip
    config["model"]["vocab_size"] = 0  # the manifest's
    return config


def test_training_on_shards_learns(corpus, tmp_path):
    _prepare(_split_corpus(corpus), tmp_path / "shards")
    config = from_config_dict(_shard_config(tmp_path / "shards", steps=30))
    assert config.model.vocab_size == 256
    result = train(config, tmp_path / "run", log=lambda line: None)
    assert result["status"] == "completed"
    curve = losses(tmp_path / "run")
    assert curve[30] < curve[5] - 0.5, curve
    assert "bits_per_byte" in result["eval"]["heldout"]


@pytest.mark.slow  # three training runs: about 3 minutes on 2 busy cores
def test_killed_training_on_shards_resumes_exactly(corpus, tmp_path):
    """The packing iterator's state (with a document split across windows) is in the
    checkpoint: the resumed run's losses are the uninterrupted run's."""
    _prepare(_split_corpus(corpus), tmp_path / "shards")
    config = from_config_dict(_shard_config(tmp_path / "shards", steps=30, checkpoint_every=10))
    reference = train(config, tmp_path / "reference", log=lambda line: None)

    class Killed(Exception):
        pass

    def kill_at_step_20(line: str) -> None:  # before step 20's checkpoint: resumes at 10
        if "20/30" in line:
            raise Killed

    with pytest.raises(Killed):
        train(config, tmp_path / "resumed", log=kill_at_step_20)
    lines = []
    resumed = train(config, tmp_path / "resumed", log=lines.append)
    assert "resumed from step 10" in lines
    assert losses(tmp_path / "resumed") == losses(tmp_path / "reference")
    assert resumed["eval"]["heldout"]["loss"] == reference["eval"]["heldout"]["loss"]


def test_evolve_text_config_takes_a_shard_folder(corpus, tmp_path):
    from asi_jax.command_line import _load_config_file
    from asi_jax.evolution.config import from_config_dict as evolution_config

    _prepare(_split_corpus(corpus), tmp_path / "shards")
    config = evolution_config(
        _load_config_file(f"{ROOT / 'configs' / 'evolve_text.py'}:{tmp_path / 'shards'}")
    )
    for stage in (config.explore, config.verify.experiment):
        assert stage.data.kind == "shards" and stage.model.vocab_size == 256
        assert stage.data.declared_paths == (str(tmp_path / "shards"),)


def test_prepare_data_script(corpus, tmp_path):
    script = [sys.executable, str(ROOT / "scripts" / "prepare_data.py")]
    ok = subprocess.run([*script, f"--inputs={','.join(corpus['paths'][:3])}",
                         f"--output={tmp_path / 'shards'}", "--heldout_fraction=0.1"],
                        capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "wrote 62 documents" in ok.stdout and "prepare_data: 1/3 chunks" in ok.stdout
    manifest = json.loads((tmp_path / "shards" / "manifest.json").read_text())
    assert "--heldout_fraction=0.1" in manifest["command"]
    bad = subprocess.run([*script, f"--inputs={tmp_path / 'nothing.jsonl'}",
                          f"--output={tmp_path / 'out'}"],
                         capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert bad.returncode == 2
    assert bad.stderr.strip().endswith("nothing.jsonl' does not exist"), bad.stderr


@pytest.mark.slow  # two sandboxed check-and-train runs: about 2-3 minutes on 2 busy cores
def test_candidate_and_baseline_train_on_shards_in_the_sandbox(corpus, tmp_path):
    """The shard folder and the benchmark folder are the run's declared data: mounted
    read-only into the sandboxed worker, which reads them there (and nothing else of this
    machine); the fitness's benchmark term is the fixture benchmarks' mean accuracy."""
    from asi_jax.candidates.engineer import EngineerConfig, run_candidate
    from asi_jax.tasks.linear_attention.checker import CheckConfig
    from asi_jax.tasks.linear_attention.task import LinearAttentionTask

    _prepare(_split_corpus(corpus), tmp_path / "shards")
    benchmarks = ROOT / "tests" / "data" / "downstream"
    values = _shard_config(tmp_path / "shards", steps=20)
    values["evals"] = {"benchmarks": ["piqa", "arc_easy"], "data_dir": str(benchmarks),
                       "batch_size": 8, "max_length": 128}  # fmt: skip
    config = from_config_dict(values)
    assert config.data.declared_paths == (str(tmp_path / "shards"),)
    check = CheckConfig(d_model=32, num_heads=2, seq_lens=(1, 19), cost_seq_len=128)
    engineer = EngineerConfig(check=check, train=config)
    good = (ROOT / "tests" / "candidates" / "good_gated_delta.py").read_text()
    candidate = run_candidate(good, engineer, tmp_path / "candidate")
    baseline = run_candidate("", engineer, tmp_path / "baseline", baseline="deltanet")
    for result, folder in ((candidate, "candidate"), (baseline, "baseline")):
        assert result.ok, (folder, result.stage, result.reason)
        assert result.train["status"] == "completed" and result.train["steps"] == 20
        assert result.train["eval"]["heldout"]["loss"] < 4.0  # below chance (ln 256 = 5.5)
        downstream = result.train["eval"]["downstream"]
        assert set(downstream["benchmarks"]) == {"piqa", "arc_easy"}
        figures = LinearAttentionTask().figures(result.train)
        assert figures.benchmark == pytest.approx(downstream["accuracy"])
        run = json.loads((tmp_path / folder / "attempt1" / "train" / "run.json").read_text())
        assert run["config"]["data"]["shards"] == str(tmp_path / "shards")
        landlock = result.attempts[0].isolation.get("landlock") or {}
        if landlock:  # where the kernel has Landlock: the folder was granted, read only
            assert str(tmp_path / "shards") in landlock["granted"]
