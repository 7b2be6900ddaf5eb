"""MQAR and byte-corpus pipelines: determinism, structure, resumable iterators, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from asi_jax.data import corpus
from asi_jax.data.mqar import MQARConfig, MQARSource
from asi_jax.data.pipeline import DataConfig, eval_batches, train_iterator

MQAR = MQARConfig(vocab_size=64, seq_len=48, num_kv_pairs=5)


def test_mqar_is_deterministic_in_seed_and_index():
    a, b, c = (MQARSource(MQAR, seed=s, size=10) for s in (1, 1, 2))
    for name in ("inputs", "targets", "mask"):
        np.testing.assert_array_equal(a[7][name], b[7][name])
    assert not np.array_equal(a[7]["inputs"], c[7]["inputs"])
    assert not np.array_equal(a[7]["inputs"], a[8]["inputs"])


def test_mqar_answers_are_the_values_of_repeated_keys():
    example = MQARSource(MQAR, seed=0, size=1)[0]
    inputs, targets, mask = example["inputs"], example["targets"], example["mask"]
    context = dict(zip(inputs[0:10:2].tolist(), inputs[1:10:2].tolist(), strict=True))
    assert len(context) == 5 and all(k < 32 <= v for k, v in context.items())
    answers = np.flatnonzero(mask)
    assert len(answers) == 5 and answers.min() >= 10
    for t in answers:
        assert targets[t] == context[int(inputs[t])]
    np.testing.assert_array_equal(inputs[1:], targets[:-1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(vocab_size=63), "even number"),
        (dict(num_kv_pairs=40), r"num_kv_pairs must be in \[1, vocab_size / 2\)"),
        (dict(seq_len=16, num_kv_pairs=5), "must be at least 4 \\* num_kv_pairs"),
    ],
)
def test_mqar_rejects_impossible_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MQARConfig(**{**dict(vocab_size=64, seq_len=48, num_kv_pairs=5), **kwargs})


def test_stdlib_corpus_needs_no_download_and_splits():
    data = corpus.read_tokens(corpus.stdlib_files())
    assert data.dtype == np.int32 and data.size > 500_000 and data.max() < 256
    parts = corpus.split(data, 0.05, 64)
    assert len(parts.train) + len(parts.heldout) == len(data)


def test_user_text_and_jsonl_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    (tmp_path / "b.jsonl").write_text(json.dumps({"text": "wörld"}) + "\n\n")
    data = corpus.read_tokens([tmp_path / "a.txt", tmp_path / "b.jsonl"])
    assert data.tolist() == list("hello\nwörld".encode())


def test_bad_corpus_files_say_where(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"body": "no text field"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: expected a JSON object"):
        corpus.read_tokens([bad])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corpus.read_tokens([tmp_path / "missing.txt"])
    (tmp_path / "short.txt").write_text("tiny")
    with pytest.raises(ValueError, match="fewer than seq_len"):
        corpus.split(corpus.read_tokens([tmp_path / "short.txt"]), 0.5, 64)


def test_byte_windows_are_next_byte_pairs_and_deterministic():
    data = np.arange(1000, dtype=np.uint8)
    a = corpus.WindowSource(data, 16, seed=3, random=True, size=100)
    b = corpus.WindowSource(data, 16, seed=3, random=True, size=100)
    np.testing.assert_array_equal(a[5]["inputs"], b[5]["inputs"])
    np.testing.assert_array_equal(a[5]["inputs"][1:], a[5]["targets"][:-1])
    sequential = corpus.WindowSource(data, 16, seed=0, random=False)
    np.testing.assert_array_equal(sequential[2]["inputs"], data[32:48])


@pytest.mark.parametrize("kind", ["mqar", "bytes"])
def test_train_iterator_resumes_from_its_state(kind):
    config = DataConfig(kind=kind, batch_size=4, seq_len=48, mqar=MQAR, seed=5)
    it = train_iterator(config)
    next(it)
    state = it.get_state()
    expected = [next(it)["inputs"] for _ in range(3)]
    resumed = train_iterator(config)
    resumed.set_state(state)
    for batch in expected:
        np.testing.assert_array_equal(next(resumed)["inputs"], batch)


def test_eval_sets_are_fixed_and_disjoint_from_training():
    config = DataConfig(kind="mqar", batch_size=4, seq_len=48, mqar=MQAR, eval_examples=8)
    first, second = eval_batches(config), eval_batches(config)
    assert len(first) == 2
    np.testing.assert_array_equal(first[0]["inputs"], second[0]["inputs"])
    train_batch = next(train_iterator(config))
    assert not np.array_equal(first[0]["inputs"], train_batch["inputs"])
    wider = eval_batches(config, kv_pairs=8)
    assert int(wider[0]["mask"][0].sum()) == 8


def test_data_config_errors():
    with pytest.raises(ValueError, match=r"data\.kind must be 'mqar', 'bytes' or 'shards'"):
        DataConfig(kind="images")
    with pytest.raises(ValueError, match=r"data.mqar.seq_len \(48\) must equal data.seq_len"):
        DataConfig(kind="mqar", seq_len=64, mqar=MQAR)


def test_sentencepiece_tokenizer_file(tmp_path):
    import sentencepiece as spm

    text = tmp_path / "text.txt"
    text.write_bytes(bytes(corpus.read_tokens(corpus.stdlib_files()[:3]).astype(np.uint8)))
    spm.SentencePieceTrainer.train(
        input=str(text), model_prefix=str(tmp_path / "sp"), vocab_size=300,
        minloglevel=2, hard_vocab_limit=False,
    )  # fmt: skip
    config = DataConfig(kind="bytes", batch_size=2, seq_len=32, files=(str(text),),
                        tokenizer=str(tmp_path / "sp.model"))  # fmt: skip
    assert config.vocab_size == 300
    batch = next(train_iterator(config))
    assert batch["inputs"].max() < 300 and batch["inputs"].shape == (2, 32)


def test_huggingface_tokenizer_file(tmp_path):
    import tokenizers

    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=200, special_tokens=["[UNK]"])
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog\n" * 200)
    tokenizer.train([str(text)], trainer)
    tokenizer.save(str(tmp_path / "tok.json"))
    config = DataConfig(kind="bytes", batch_size=2, seq_len=16, files=(str(text),),
                        tokenizer=str(tmp_path / "tok.json"), heldout_fraction=0.2)  # fmt: skip
    assert config.vocab_size == tokenizer.get_vocab_size()
    assert next(train_iterator(config))["inputs"].max() < config.vocab_size


def test_unknown_tokenizer_files_are_rejected(tmp_path):
    (tmp_path / "vocab.txt").write_text("a")
    with pytest.raises(
        ValueError, match=r"expected a SentencePiece \.model or a tokenizers \.json"
    ):
        DataConfig(kind="bytes", tokenizer=str(tmp_path / "vocab.txt"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        DataConfig(kind="bytes", tokenizer=str(tmp_path / "none.model"))


def test_data_paths_are_absolute_from_where_the_config_is_built(tmp_path, monkeypatch):
    """Sandboxed workers read the run's files from another working directory: the config
    carries absolute paths, and names them as the paths the workers may read."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text("text\n")
    config = DataConfig(kind="bytes", files=("corpus.txt",))
    assert config.files == (str(tmp_path / "corpus.txt"),)
    assert config.declared_paths == config.files
    assert DataConfig(kind="mqar").declared_paths == ()  # MQAR reads no files
