"""Zero-shot downstream benchmarks as ASI-Arch reports them, scored as lm-evaluation-harness
scores them, from local files.

    results = evaluate_benchmarks(config, scorer)  # {"accuracy", "benchmarks": {task: ...}}

Each benchmark reads `<data_dir>/<task>.jsonl`: one document a line, in the field layout of the
Hugging Face dataset the harness's task uses (ARC: question, choices {text, label}, answerKey;
PIQA: goal, sol1, sol2, label; ...). Nothing is downloaded. A per-task adapter turns a document
into (context, continuation) requests and the gold index exactly as the harness's task YAML
does (lm_eval/tasks/<task>/*.yaml, 0-shot), and the metrics are the harness's:
- multiple choice: acc (argmax of log-likelihood) and acc_norm (log-likelihood divided by the
  choice's length in characters: the harness's `completion_len`);
- LAMBADA: acc (the last word is the greedy continuation) and perplexity (exp of minus the
  mean log-likelihood of the last word);
- Wikitext: word and byte perplexity and bits per byte of each page, scored in disjoint
  windows of `max_length` tokens as the harness's `loglikelihood_rolling` does.

Requests are tokenised as the harness's `TemplateLM` does (a context's trailing spaces move to
the continuation; an empty context becomes the prefix token) and scored in batches of fixed
padded shapes (lengths rounded up to powers of two), so jit compiles a few programs, not one
per example. `asi_jax.evals.lm_eval_adapter` drives the same `Scorer` from lm_eval itself.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from asi_jax.data.tokenizers import Tokenizer

# (inputs int32 [B, T], targets int32 [B, T], mask float32 [B, T]) -> per-row sums:
# {"logprob": float [B] (log-probability of the masked targets), "greedy": bool [B] (each
# masked target was the argmax)}.
ScoreFn = Callable[[Mapping[str, np.ndarray]], Mapping[str, Any]]


class DownstreamDataError(ValueError):
    """A benchmark file is missing or a document lacks what its task reads."""


@dataclasses.dataclass(frozen=True)
class DownstreamConfig:
    """Which benchmarks a run is scored on at its end (none by default) and how."""

    benchmarks: tuple[str, ...] = ()  # names from TASKS, e.g. ("arc_easy", "piqa")
    data_dir: str = ""  # holds <task>.jsonl for each benchmark
    max_examples: int = 1000  # documents per benchmark (the first ones); 0: all
    batch_size: int = 32  # requests per batch (rounded up to a multiple of the devices)
    max_length: int = 1024  # tokens a request may span; longer contexts lose their start

    def __post_init__(self):
        if self.data_dir:  # absolute from where the config is built, as DataConfig's files
            object.__setattr__(self, "data_dir", os.path.abspath(self.data_dir))
        unknown = sorted(set(self.benchmarks) - set(TASKS))
        if unknown:
            raise ValueError(f"evals.benchmarks: unknown {unknown}; known: {sorted(TASKS)}")
        if self.benchmarks and not self.data_dir:
            raise ValueError("evals.benchmarks needs evals.data_dir (the folder of <task>.jsonl)")
        if self.max_examples < 0 or self.batch_size < 1 or self.max_length < 2:
            raise ValueError(
                "evals.max_examples must be >= 0, evals.batch_size >= 1 and "
                f"evals.max_length >= 2; got {self.max_examples}, {self.batch_size}, "
                f"{self.max_length}"
            )

    @property
    def declared_paths(self) -> tuple[str, ...]:
        """What a sandboxed worker must be able to read for these benchmarks."""
        return (self.data_dir,) if self.benchmarks else ()

    def check_files(self) -> None:
        """Fails now, before training, if a benchmark's file is missing."""
        for name in self.benchmarks:
            task_file(self.data_dir, name)


# -- the tasks: a document -> requests, as the harness's task YAMLs build them ----------------


@dataclasses.dataclass(frozen=True)
class Example:
    """One document's requests: (context, continuation) per choice (one for a cloze or a
    rolling task), the gold choice, each choice's length for acc_norm, and for rolling tasks
    the page's words and bytes (the perplexities' denominators)."""

    pairs: tuple[tuple[str, str], ...]
    gold: int = 0
    lengths: tuple[float, ...] = ()
    words: int = 0
    bytes: int = 0


def _choices(context: str, choices: Sequence[str], gold: int, delimiter: str = " ") -> Example:
    if not 0 <= gold < len(choices):
        raise ValueError(f"gold index {gold} is not one of the {len(choices)} choices")
    return Example(tuple((context, f"{delimiter}{c}") for c in choices), gold,
                   tuple(float(len(c)) for c in choices))  # fmt: skip


def _arc(doc: Mapping) -> Example:
    choices = doc["choices"]
    return _choices(f"Question: {doc['question']}\nAnswer:", list(choices["text"]),
                    list(choices["label"]).index(doc["answerKey"]))  # fmt: skip


def _boolq(doc: Mapping) -> Example:
    context = f"{doc['passage']}\nQuestion: {doc['question']}?\nAnswer:"
    return _choices(context, ["no", "yes"], _int(doc["label"]))


def _hellaswag_text(text: str) -> str:
    text = text.strip().replace(" [title]", ". ")
    return re.sub("\\[.*?\\]", "", text).replace("  ", " ")


def _hellaswag(doc: Mapping) -> Example:
    context = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
    return _choices(_hellaswag_text(doc["activity_label"] + ": " + context),
                    [_hellaswag_text(e) for e in doc["endings"]], _int(doc["label"]))  # fmt: skip


def _lambada(doc: Mapping) -> Example:
    words = doc["text"].split(" ")
    return Example(((" ".join(words[:-1]), " " + words[-1]),))


def _piqa(doc: Mapping) -> Example:
    return _choices(f"Question: {doc['goal']}\nAnswer:", [doc["sol1"], doc["sol2"]],
                    _int(doc["label"]))  # fmt: skip


def _siqa(doc: Mapping) -> Example:
    choices = [doc["answerA"], doc["answerB"], doc["answerC"]]
    return _choices(f"Q: {doc['context']} {doc['question']}\nA:", choices, _int(doc["label"]) - 1)


def _winogrande(doc: Mapping) -> Example:
    """The choices are contexts (the sentence up to the blank, filled in); the continuation
    after the blank is shared."""
    sentence = doc["sentence"]
    blank = sentence.index("_")
    contexts = [sentence[:blank] + doc[o] for o in ("option1", "option2")]
    gold = {"1": 0, "2": 1}[str(doc["answer"])]
    continuation = " " + sentence[blank + 1 :].strip()
    return Example(tuple((c, continuation) for c in contexts), gold,
                   tuple(float(len(c)) for c in contexts))  # fmt: skip


def wikitext_detokenize(page: str) -> str:
    """The harness's `wikitext_detokenizer`: undoes the dataset's tokenisation."""
    s = page.replace("s '", "s'")
    s = re.sub(r"/' [0-9]/", r"/'[0-9]/", s)
    for a, b in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."), (" : ", ": "), (" ; ", "; "),
                 (" . ", ". "), (" ! ", "! "), (" ? ", "? "), (" , ", ", ")):  # fmt: skip
        s = s.replace(a, b)
    s = re.sub(r"\(\s*([^\)]*?)\s*\)", r"(\1)", s)
    s = re.sub(r"\[\s*([^\]]*?)\s*\]", r"[\1]", s)
    s = re.sub(r"{\s*([^}]*?)\s*}", r"{\1}", s)
    s = re.sub(r"\"\s*([^\"]*?)\s*\"", r'"\1"', s)
    s = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", s)
    for a, b in (("= = = =", "===="), ("= = =", "==="), ("= =", "=="),
                 (" " + chr(176) + " ", chr(176)), (" \n", "\n"), ("\n ", "\n"),
                 (" N ", " 1 "), (" 's", "'s")):  # fmt: skip
        s = s.replace(a, b)
    return s


def _wikitext(doc: Mapping) -> Example:
    page = doc["page"]
    if not isinstance(page, str):
        raise TypeError(f"page must be a string, got {type(page).__name__}")
    return Example((("", wikitext_detokenize(page)),), words=len(re.split(r"\s+", page)),
                   bytes=len(page.encode("utf-8")))  # fmt: skip


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"label must be an integer, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A benchmark: how a document becomes requests, which metrics it reports, and which
    accuracy ASI-Arch's table shows (acc_norm for ARC-c and HellaSwag, acc elsewhere)."""

    kind: str  # "multiple_choice", "loglikelihood" (a cloze) or "rolling" (perplexity)
    example: Callable[[Mapping], Example]
    headline: str | None = "acc"  # the accuracy that enters the mean; None: no accuracy


TASKS: dict[str, TaskSpec] = {
    "arc_easy": TaskSpec("multiple_choice", _arc),
    "arc_challenge": TaskSpec("multiple_choice", _arc, "acc_norm"),
    "boolq": TaskSpec("multiple_choice", _boolq),
    "hellaswag": TaskSpec("multiple_choice", _hellaswag, "acc_norm"),
    "lambada_openai": TaskSpec("loglikelihood", _lambada),
    "lambada_standard": TaskSpec("loglikelihood", _lambada),
    "piqa": TaskSpec("multiple_choice", _piqa),
    "social_iqa": TaskSpec("multiple_choice", _siqa),
    "winogrande": TaskSpec("multiple_choice", _winogrande),
    "wikitext": TaskSpec("rolling", _wikitext, None),
}


def task_file(data_dir: str | Path, name: str) -> Path:
    path = Path(data_dir) / f"{name}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"benchmark {name!r}: no file {str(path)!r} (one JSON document "
                                "a line, in the layout of the task's dataset)")  # fmt: skip
    return path


def read_examples(path: str | Path, name: str, max_examples: int = 0) -> list[Example]:
    """The first `max_examples` (0: all) documents of `path` as task `name`'s requests."""
    spec = TASKS[name]
    examples = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if max_examples and len(examples) >= max_examples:
                break
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
                if not isinstance(doc, dict):
                    raise TypeError(f"expected a JSON object, got {type(doc).__name__}")
                examples.append(spec.example(doc))
            except KeyError as e:
                raise DownstreamDataError(
                    f"{path}:{number}: a {name} document needs the field {e}"
                ) from None
            except (ValueError, TypeError, AttributeError, IndexError) as e:
                raise DownstreamDataError(f"{path}:{number}: not a {name} document: {e}") from None
    if not examples:
        raise DownstreamDataError(f"{path}: no {name} documents")
    return examples


# -- tokenisation and batched scoring ------------------------------------------------------


Tokens = tuple[list[int], list[int]]  # (context, continuation) token ids


class Scorer:
    """Log-likelihoods of continuations with a model's `score` function: padded, bucketed
    batches of `batch_size` rows, each request spanning at most `max_length` tokens."""

    def __init__(self, score: ScoreFn, tokenizer: Tokenizer, *, batch_size: int = 32,
                 max_length: int = 1024, multiple_of: int = 1):  # fmt: skip
        self.score, self.tokenizer, self.max_length = score, tokenizer, max_length
        self.batch_size = -(-batch_size // multiple_of) * multiple_of
        # No end-of-text token: documents are joined by newlines in training (data/corpus.py),
        # so a newline is what an empty context conditions on.
        newline = tokenizer.encode("\n")
        self.prefix_token = int(newline[-1]) if len(newline) else 0

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(text)]

    def encode_pair(self, context: str, continuation: str) -> Tokens:
        """As the harness's `TemplateLM.loglikelihood`: trailing spaces of the context move to
        the continuation; the continuation is what the whole adds to the context's tokens."""
        if not context:
            cont = self.encode(continuation)
            return ([self.prefix_token], cont) if cont[:1] != [self.prefix_token] else (
                cont[:1], cont[1:])  # fmt: skip
        stripped = context.rstrip()
        continuation = context[len(stripped) :] + continuation
        whole, ctx = self.encode(stripped + continuation), self.encode(stripped)
        return ctx, whole[len(ctx) :]

    def loglikelihoods(self, requests: Sequence[Tokens]) -> list[tuple[float, bool]]:
        """(log-probability, greedy) of each continuation given its context. The last
        `max_length + 1` tokens of context + continuation are kept (the harness's truncation);
        rows are sorted by length so a batch pads little."""
        rows = []
        for ctx, cont in requests:
            if not cont:
                raise ValueError("a request's continuation has no tokens")
            tokens = (list(ctx) + list(cont))[-(self.max_length + 1) :]
            rows.append((tokens, min(len(cont), len(tokens) - 1)))
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))
        out: list[tuple[float, bool]] = [(0.0, False)] * len(rows)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            batch = self._batch([rows[i] for i in chunk])
            scores = self.score(batch)
            logprob, greedy = np.asarray(scores["logprob"]), np.asarray(scores["greedy"])
            for j, i in enumerate(chunk):
                out[i] = (float(logprob[j]), bool(greedy[j]))
        return out

    def _batch(self, rows: list[tuple[list[int], int]]) -> dict[str, np.ndarray]:
        """Right-padded to a power-of-two length (at least 64, at most `max_length`) and to
        `batch_size` rows; padding is never scored (mask 0)."""
        longest = max(len(tokens) - 1 for tokens, _ in rows)
        length = min(self.max_length, max(64, 1 << (longest - 1).bit_length()))
        inputs = np.zeros((self.batch_size, length), np.int32)
        targets = np.zeros((self.batch_size, length), np.int32)
        mask = np.zeros((self.batch_size, length), np.float32)
        for r, (tokens, scored) in enumerate(rows):
            n = len(tokens) - 1
            inputs[r, :n], targets[r, :n] = tokens[:-1], tokens[1:]
            mask[r, n - scored : n] = 1.0
        return {"inputs": inputs, "targets": targets, "mask": mask}

    def loglikelihood(self, pairs: Sequence[tuple[str, str]]) -> list[tuple[float, bool]]:
        """`loglikelihoods` of (context, continuation) strings."""
        return self.loglikelihoods([self.encode_pair(c, x) for c, x in pairs])

    def rolling_windows(self, text: str) -> list[Tokens]:
        """The harness's disjoint rolling windows (`get_rolling_token_windows` with one token
        of context): spans of `max_length` tokens, the first conditioned on the prefix, each
        later one on the tokens before it that fill its window (one, but for a short last)."""
        tokens = self.encode(text)
        windows = []
        for start in range(0, len(tokens), self.max_length):
            end = min(start + self.max_length, len(tokens))
            first = start == 0
            before = [self.prefix_token] if first else tokens[end - self.max_length - 1 : start]
            windows.append((before, tokens[start:end]))
        return windows

    def loglikelihood_rolling(self, texts: Sequence[str]) -> list[float]:
        """The log-likelihood of each whole text (the harness's `loglikelihood_rolling`)."""
        windows = [self.rolling_windows(t) for t in texts]
        scores = iter(self.loglikelihoods([w for ws in windows for w in ws]))
        return [sum(next(scores)[0] for _ in ws) for ws in windows]


# -- metrics -------------------------------------------------------------------------------


def score_examples(name: str, examples: Sequence[Example], scorer: Scorer) -> dict[str, float]:
    """The harness's metrics of task `name` over `examples`."""
    kind = TASKS[name].kind
    if kind == "rolling":
        lls = scorer.loglikelihood_rolling([e.pairs[0][1] for e in examples])
        total, words = sum(lls), sum(e.words for e in examples)
        nbytes = sum(e.bytes for e in examples)
        return {"word_perplexity": math.exp(-total / words),
                "byte_perplexity": math.exp(-total / nbytes),
                "bits_per_byte": -total / nbytes / math.log(2)}  # fmt: skip
    results = iter(scorer.loglikelihood([p for e in examples for p in e.pairs]))
    per_example = [[next(results) for _ in e.pairs] for e in examples]
    if kind == "loglikelihood":
        lls = [r[0][0] for r in per_example]
        return {"acc": float(np.mean([r[0][1] for r in per_example])),
                "perplexity": math.exp(-float(np.mean(lls)))}  # fmt: skip
    acc, acc_norm = [], []
    for e, r in zip(examples, per_example, strict=True):
        lls = np.array([ll for ll, _ in r])
        acc.append(float(np.argmax(lls) == e.gold))
        acc_norm.append(float(np.argmax(lls / np.array(e.lengths)) == e.gold))
    return {"acc": float(np.mean(acc)), "acc_norm": float(np.mean(acc_norm))}


def evaluate_benchmarks(config: DownstreamConfig, scorer: Scorer) -> dict[str, Any]:
    """{"accuracy": the mean headline accuracy of the benchmarks that have one (None if none
    has), "benchmarks": {task: its metrics, "accuracy" (its headline), examples, examples
    per second (compilation included)}}."""
    results: dict[str, Any] = {}
    for name in config.benchmarks:
        examples = read_examples(task_file(config.data_dir, name), name, config.max_examples)
        start = time.perf_counter()
        metrics = score_examples(name, examples, scorer)
        seconds = time.perf_counter() - start
        headline = TASKS[name].headline
        results[name] = {**metrics, **({"accuracy": metrics[headline]} if headline else {}),
                         "examples": len(examples),
                         "examples_per_second": len(examples) / seconds}  # fmt: skip
    accuracies = [r["accuracy"] for r in results.values() if "accuracy" in r]
    return {"accuracy": float(np.mean(accuracies)) if accuracies else None, "benchmarks": results}
