"""LLM-backed agents: researcher, analyser and judge, on Gemini (google-genai) or any
OpenAI-compatible chat endpoint.

Only the controller talks to the model; the API key is read from the controller's own
environment and never reaches a candidate's sandbox. A reply that cannot be used (no code
block, bad JSON, a score off the scale) raises `LLMError` with what was wrong, and the
controller records it as a rejected proposal instead of stopping the run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from asi_jax.agents.base import Analysis, Proposal, Record, ResearchContext

if TYPE_CHECKING:
    from asi_jax.tasks.base import Task


class LLMError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    provider: str = "gemini"  # "gemini" or "openai" (any OpenAI-compatible endpoint)
    model: str = "gemini-2.5-pro"
    base_url: str = ""  # empty: the provider's default
    api_key_env: str = "GEMINI_API_KEY"
    temperature: float = 0.7
    timeout_seconds: float = 300.0
    max_retries: int = 3  # transient failures (network, 5xx, 429) are retried with backoff
    retry_seconds: float = 2.0  # the first backoff; doubles each retry


class LLMClient(Protocol):
    name: str

    def complete(self, system: str, prompt: str) -> str: ...


def _api_key(config: LLMConfig) -> str:
    key = os.environ.get(config.api_key_env)
    if not key:
        raise LLMError(f"the {config.provider} agents need an API key in ${config.api_key_env}")
    return key


def _retrying(call, config: LLMConfig, what: str) -> str:
    delay = config.retry_seconds
    for attempt in range(config.max_retries + 1):
        try:
            return call()
        except LLMError:
            raise
        except Exception as e:  # network errors and server errors of either SDK
            status = getattr(e, "code", None) or getattr(e, "status_code", None)
            transient = status is None or status == 429 or (isinstance(status, int)
                                                              and status >= 500)  # fmt: skip
            if not transient or attempt == config.max_retries:
                raise LLMError(f"{what} failed: {e}") from e
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


class GeminiClient:
    def __init__(self, config: LLMConfig):
        from google import genai
        from google.genai import types

        options = types.HttpOptions(base_url=config.base_url) if config.base_url else None
        self._client = genai.Client(api_key=_api_key(config), http_options=options)
        self._types, self.config = types, config
        self.name = f"gemini:{config.model}"

    def complete(self, system: str, prompt: str) -> str:
        settings = self._types.GenerateContentConfig(
            system_instruction=system, temperature=self.config.temperature
        )
        response = _retrying(
            lambda: self._client.models.generate_content(
                model=self.config.model, contents=prompt, config=settings
            ),
            self.config, f"Gemini request to {self.config.model}",
        )  # fmt: skip
        if not response.text:
            raise LLMError(f"Gemini {self.config.model} returned no text")
        return response.text


class OpenAIClient:
    """Chat completions over HTTP (stdlib only): OpenAI, vLLM, llama.cpp, Ollama, ..."""

    def __init__(self, config: LLMConfig):
        self.config, self._key = config, _api_key(config)
        self.url = (config.base_url or "https://api.openai.com/v1").rstrip("/")
        self.name = f"openai:{config.model}"

    def _post(self, body: dict) -> dict:
        request = urllib.request.Request(
            f"{self.url}/chat/completions", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._key}"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=self.config.timeout_seconds) as response:
            return json.loads(response.read())

    def complete(self, system: str, prompt: str) -> str:
        body = {"model": self.config.model, "temperature": self.config.temperature,
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": prompt}]}  # fmt: skip
        reply = _retrying(lambda: self._post(body), self.config,
                          f"chat request to {self.url}")  # fmt: skip
        try:
            return reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"unexpected chat completion: {json.dumps(reply)[:300]}") from None


def make_client(config: LLMConfig) -> LLMClient:
    if config.provider == "gemini":
        return GeminiClient(config)
    if config.provider == "openai":
        return OpenAIClient(config)
    raise ValueError(f"unknown LLM provider {config.provider!r}; expected 'gemini' or 'openai'")


# ------------------------------------------------------------------------------------------
# Parsing replies.


def extract_code(reply: str) -> str:
    """The last ```python block of a reply (the final version, when a model drafts first)."""
    fenced = re.findall(r"```([\w+-]*)[ \t]*\n(.*?)```", reply, re.DOTALL)
    blocks = [body for label, body in fenced if label.lower() in ("python", "py", "")]
    if not blocks:
        raise LLMError("the reply has no ```python code block")
    return blocks[-1].strip() + "\n"


def extract_json(reply: str) -> dict[str, Any]:
    """The first JSON object in a reply (bare, or in a ```json block)."""
    match = re.search(r"```json\s*\n(.*?)```", reply, re.DOTALL)
    text = match.group(1) if match else reply[reply.find("{") : reply.rfind("}") + 1]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise LLMError(f"the reply's JSON does not parse: {e.msg}") from None
    if not isinstance(value, dict):
        raise LLMError("the reply's JSON is not an object")
    return value


def _field(values: dict, key: str, kind: type = str):
    if not isinstance(values.get(key), kind):
        raise LLMError(f"the reply's JSON lacks {key!r} ({kind.__name__})")
    return values[key]


# ------------------------------------------------------------------------------------------
# The roles.


def researcher_system(task: Task) -> str:
    return ("You are the researcher of an automated discovery loop. You design new "
            "candidates, building on a parent design, reference designs, the analysis of "
            "earlier experiments and prior research.\n\n" + task.contract)  # fmt: skip


def _figures(r: Record, task: Task) -> str:
    if r.status != "evaluated":
        return f"{r.status} ({r.failure_stage}: {(r.failure_reason or '')[-200:]})"
    return (f"{task.loss.short} {r.loss:.4f}, {task.benchmark.short} {r.benchmark:.3f}"
            + (f", fitness {r.fitness:.3f}" if r.fitness is not None else ""))  # fmt: skip


def research_prompt(context: ResearchContext, task: Task) -> str:
    p = context.parent
    parts = [
        f"## Parent: {p.name} ({_figures(p, task)})\nMotivation:\n{p.motivation}\n\n"
        f"```python\n{p.code}\n```",
        f"## Analysis of the parent\n{context.problem_summary}",
    ]
    if context.references:
        parts.append("## References\n" + "\n".join(
            f"- {r.name} ({_figures(r, task)}): {r.motivation.splitlines()[0][:300]}"
            for r in context.references))  # fmt: skip
    if context.lessons:
        parts.append("## Lessons from earlier experiments\n"
                     + "\n".join(f"- {x}" for x in context.lessons[:15]))  # fmt: skip
    if context.cognition:
        parts.append("## Prior research retrieved for this situation\n" + "\n\n".join(
            f"### {r.entry.title} ({r.entry.source})\n{r.entry.design_insight}\n"
            f"Innovation: {r.entry.algorithmic_innovation}\n"
            f"Guidance: {r.entry.implementation_guidance}" for r in context.cognition))  # fmt: skip
    parts.append(
        "## Task\nPropose one new candidate that addresses the analysis. Reply with a JSON object "
        '{"name": short-kebab-case, "motivation": why this design should work, citing the '
        'research or lessons it uses, "idea_origins": [{"idea": ..., "origin": "cognition" | '
        '"analysis" | "original", "evidence": ...}]} and then the complete candidate file in '
        "one ```python block."
    )
    return "\n\n".join(parts)


class LLMResearcher:
    def __init__(self, client: LLMClient, task: Task):
        self.client, self.task = client, task
        self.name = f"llm-researcher:{client.name}"

    def propose(self, context: ResearchContext) -> Proposal:
        reply = self.client.complete(
            researcher_system(self.task), research_prompt(context, self.task)
        )
        values, code = extract_json(reply.split("```python")[0] + "\n"), extract_code(reply)
        name = re.sub(r"[^a-z0-9-]+", "-", _field(values, "name").lower()).strip("-")[:60]
        origins = [o for o in values.get("idea_origins", []) if isinstance(o, dict)
                   and o.get("origin") in ("cognition", "analysis", "original")]  # fmt: skip
        return Proposal(name or "llm-candidate", _field(values, "motivation"), code, None,
                        origins)  # fmt: skip

    def revise(self, source: str, error: str) -> str | None:
        prompt = (f"This candidate failed.\n\n```python\n{source}\n```\n\nError:\n{error}\n\n"
                  "Fix the cause, keeping the design's idea. Reply with the complete corrected "
                  "file in one ```python block.")  # fmt: skip
        try:
            return extract_code(self.client.complete(researcher_system(self.task), prompt))
        except LLMError:
            return None  # the engineer records the last failure; the run goes on


class LLMAnalyser:
    def __init__(self, client: LLMClient, task: Task):
        self.client, self.task = client, task
        self.name = f"llm-analyser:{client.name}"

    def analyse(self, record: Record, parent: Record | None,
                siblings: Sequence[Record]) -> Analysis:  # fmt: skip
        lines = [f"## Candidate {record.name}: {_figures(record, self.task)}\n{record.motivation}",
                 f"Metrics: {json.dumps((record.metrics or {}).get('eval'))}"]  # fmt: skip
        if parent:
            lines.append(
                f"## Parent {parent.name}: {_figures(parent, self.task)}\n{parent.motivation}"
            )
        lines += [
            f"- sibling {s.name}: {_figures(s, self.task)}" for s in siblings if s.id != record.id
        ]
        lines.append(
            'Reply with a JSON object {"report": what changed and what it did, '
            '"problem_summary": the remaining weakness, in one or two sentences that describe '
            'the experimental situation, "lesson": one reusable sentence}.'
        )
        system = ("You are the analyser of an automated discovery loop: compare a result "
                  "with its parent and siblings and say what was learned.\n\n"
                  + self.task.contract)  # fmt: skip
        values = extract_json(self.client.complete(system, "\n\n".join(lines)))
        return Analysis(
            _field(values, "report"),
            _field(values, "problem_summary"),
            values.get("lesson") if isinstance(values.get("lesson"), str) else None,
        )


class LLMJudge:
    def __init__(self, client: LLMClient, task: Task):
        self.client, self.task = client, task
        self.name = f"llm-judge:{client.name}"

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record],
              baselines: Sequence[Record] = ()) -> tuple[float, str]:  # fmt: skip
        prompt = (
            f"## Candidate {record.name}\n{record.motivation}\n\n```python\n{record.code}\n```\n\n"
            f"Its motivation has cosine similarity {nearest_similarity:.2f} to the nearest "
            f"earlier one; {len(population)} designs came before it.\n"
            "Score its novelty and soundness from 1 to 10. Reply with a JSON object "
            '{"score": number, "rationale": text}.'
        )
        system = ("You are the judge of an automated discovery loop: rate how novel and "
                  "sound a proposed candidate is.\n\n" + self.task.contract)  # fmt: skip
        values = extract_json(self.client.complete(system, prompt))
        score = values.get("score")
        if not isinstance(score, (int, float)) or not 1 <= score <= 10:
            raise LLMError(f"the judge's score must be a number in [1, 10], got {score!r}")
        return float(score), str(values.get("rationale", ""))
