"""LLM-backed agents: researcher, analyser and judge, on Gemini (google-genai) or any
OpenAI-compatible chat endpoint (the openai SDK: OpenAI, vLLM, Ollama, llama.cpp, ...).

Only the controller talks to the model; the API key is read from the controller's own
environment, never reaches a candidate's sandbox, and is scrubbed from every error, record and
log line. Each role asks for a reply of a known shape (`ReplyForm`): a JSON schema where the
endpoint enforces one, else a JSON object and a ```python block in free text; either reply
becomes the same `Proposal`, `Analysis`, score or code. Failures come in two kinds:

- `ReplyRefused`: the model answered, but nothing usable (no code, bad JSON, a score off the
  scale), after `reply_retries` more tries that each say why the last reply was refused;
- `LLMUnavailable`: no answer (connection refused, timeouts, 429/5xx after `max_retries`
  retries that honour Retry-After, a rejected key, an unknown model): a run should stop.

Both are `LLMError`s, as is a request the server rejects (HTTP 400, e.g. a prompt over the
context length: the server's words are kept). Each role asks its own endpoint (`LLMConfig.
endpoints`: the llm-wide model, `llm.models` entries, or on Gemini's and OpenAI's own APIs the
other tier for the judge, analyser and summariser); the researcher may have several, among
which the controller's bandit (asi_jax.evolution.bandit) picks one per proposal. Every
request is accounted (tokens from the provider's usage fields, latency, dollars from
`LLMConfig.prices`) in a `CallRecord` handed to the client's sink.
"""

from __future__ import annotations

import dataclasses
import difflib
import email.utils
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from asi_jax.agents.base import Analysis, Proposal, Record, ResearchContext
from asi_jax.agents.edits import FORMAT as EDIT_FORMAT
from asi_jax.agents.edits import EditError, apply_edits

if TYPE_CHECKING:
    from asi_jax.tasks.base import Task

T = TypeVar("T")
ROLES = ("researcher", "reviser", "analyser", "judge", "summariser")
BANDITS = ("ucb", "thompson", "none")
MAIN = "main"  # the endpoint name of the llm-wide provider, model, base_url and key
REVIEW = "review"  # the endpoint of `LLMConfig.review_model` (the llm-wide one but the model)
# The other tier of a provider's own API (base_url ""): what review_model="auto" gives the
# judge, analyser and summariser, so no model judges (or analyses) its own kind.
OTHER_TIER = {
    "gemini-2.5-pro": "gemini-2.5-flash",
    "gemini-2.5-flash": "gemini-2.5-pro",
    "gpt-4.1": "gpt-4.1-mini",
    "gpt-4.1-mini": "gpt-4.1",
}
STRUCTURED_OUTPUT = ("auto", "json_schema", "text")


class LLMError(RuntimeError):
    """A call to the model gave nothing usable (also: a request the server rejected)."""


class ReplyRefused(LLMError):
    """The model answered, but its reply cannot be used; another try may do better."""


class LLMUnavailable(LLMError):
    """The model gave no answer (network, timeouts, overload, key or model rejected): the
    run should stop rather than count it against a candidate."""


# ------------------------------------------------------------------------------------------
# Configuration.


@dataclasses.dataclass(frozen=True)
class RoleConfig:
    """One role's overrides of the llm-wide settings. A negative value keeps the llm-wide
    one (negative, not None: None fields cannot be overridden on the command line)."""

    temperature: float = -1.0
    timeout_seconds: float = -1.0
    max_retries: int = -1
    reply_retries: int = -1
    # Endpoint names (`LLMConfig.models`, or "main": the llm-wide model) this role asks.
    # Empty: "main" for the researcher and reviser; for the judge, analyser and summariser the
    # `review_model` endpoint ("review") where there is one, else "main". The researcher may
    # name several: the arms of `LLMConfig.bandit`; the other roles name at most one.
    models: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class RolesConfig:
    researcher: RoleConfig = RoleConfig()  # proposes candidates
    reviser: RoleConfig = RoleConfig()  # repairs a failing candidate (the researcher's revise)
    analyser: RoleConfig = RoleConfig()
    judge: RoleConfig = RoleConfig()
    # condenses the analyser's report into the problem summary that retrieves research
    summariser: RoleConfig = RoleConfig()


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A model at an address: what one `LLMClient` talks to."""

    name: str
    provider: str  # "gemini" or "openai"
    model: str
    base_url: str = ""  # empty: the provider's default
    api_key_env: str = ""  # "" for an openai endpoint that needs no key


@dataclasses.dataclass(frozen=True)
class RoleSettings:
    """A role's settings after its overrides."""

    temperature: float
    timeout_seconds: float
    max_retries: int
    reply_retries: int


# List prices in US dollars per million tokens (input, output) when written; check them.
DEFAULT_PRICES = (
    ("gemini-2.5-pro", 1.25, 10.0),
    ("gemini-2.5-flash", 0.30, 2.50),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4o", 2.50, 10.0),
)


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    provider: str = "gemini"  # "gemini" or "openai" (any OpenAI-compatible endpoint)
    model: str = "gemini-2.5-pro"
    base_url: str = ""  # empty: the provider's default; e.g. http://127.0.0.1:8000/v1 (vLLM)
    api_key_env: str = "GEMINI_API_KEY"  # "" for an openai endpoint that needs no key
    # "json_schema": replies constrained to each role's JSON schema; "text": a JSON object and
    # a ```python block in free text; "auto": json_schema, until the endpoint rejects it.
    structured_output: str = "auto"
    temperature: float = 0.7
    timeout_seconds: float = 300.0  # bounds each request
    max_retries: int = 3  # requests that got no answer (network, 429, 5xx) are retried
    retry_seconds: float = 2.0  # the first backoff; doubles each retry; Retry-After wins
    retry_max_seconds: float = 600.0  # the longest wait between requests, Retry-After too
    reply_retries: int = 2  # refused replies are asked again, saying why
    roles: RolesConfig = RolesConfig()  # per role: overrides of the settings above, its models
    # More endpoints, as (name, provider, model, base_url, api_key_env), for roles.<role>.models
    # to name, e.g. ("local", "openai", "Qwen/Qwen3-32B", "http://127.0.0.1:8000/v1", "").
    models: tuple[tuple[str, str, str, str, str], ...] = ()
    # The model the judge, analyser and summariser ask on the llm-wide provider, base_url and
    # key when their roles name no models, so that one model does not judge its own kind:
    # "auto" is the provider's other tier on its own API (base_url ""): gemini-2.5-pro's
    # judge is gemini-2.5-flash and the reverse, likewise gpt-4.1 and gpt-4.1-mini; elsewhere
    # (a vLLM server serves one model) the llm-wide model. "" always means the llm-wide model.
    review_model: str = "auto"
    # How each proposal picks the researcher's model among roles.researcher.models: "ucb"
    # (UCB1), "thompson" (Thompson sampling) or "none" (always the first). The reward of a
    # proposal is its candidate's gain in exploration fitness over its parent, floored at 0,
    # per dollar of its researcher calls plus bandit_epsilon_usd (see asi_jax.evolution.bandit).
    bandit: str = "ucb"
    bandit_epsilon_usd: float = 0.01  # a free (local) model's reward stays finite
    # (model, input $/Mtok, output $/Mtok); a model not listed costs 0 (with a warning)
    prices: tuple[tuple[str, float, float], ...] = DEFAULT_PRICES
    # The controller's answer to an outage: after this many proposals in a row got no answer
    # (LLMUnavailable) it pauses proposing for pause_seconds; after stop_after_failures it
    # stops the run with "LLM unavailable: ...". Evaluations in flight are recorded meanwhile.
    pause_after_failures: int = 3
    pause_seconds: float = 60.0
    stop_after_failures: int = 6

    def __post_init__(self):
        if not 1 <= self.pause_after_failures <= self.stop_after_failures:
            raise ValueError(
                "llm: 1 <= pause_after_failures <= stop_after_failures must hold, "
                f"got {self.pause_after_failures} and {self.stop_after_failures}"
            )
        if self.provider not in ("gemini", "openai"):
            raise ValueError(f"llm.provider must be 'gemini' or 'openai', got {self.provider!r}")
        if self.structured_output not in STRUCTURED_OUTPUT:
            raise ValueError(f"llm.structured_output must be one of {STRUCTURED_OUTPUT}, got "
                             f"{self.structured_output!r}")  # fmt: skip
        prices = []
        for entry in self.prices:
            ok = isinstance(entry, (list, tuple)) and len(entry) == 3
            if (
                not ok
                or not isinstance(entry[0], str)
                or not all(isinstance(x, (int, float)) and x >= 0 for x in entry[1:])
            ):
                raise ValueError(f"llm.prices entries are (model, input $/Mtok, output $/Mtok), "
                                 f"got {entry!r}")  # fmt: skip
            prices.append((entry[0], float(entry[1]), float(entry[2])))
        object.__setattr__(self, "prices", tuple(prices))
        if self.bandit not in BANDITS:
            raise ValueError(f"llm.bandit must be one of {BANDITS}, got {self.bandit!r}")
        if self.bandit_epsilon_usd <= 0:
            raise ValueError(f"llm.bandit_epsilon_usd must be > 0, got {self.bandit_epsilon_usd}")
        models = []
        for entry in self.models:
            if (not isinstance(entry, (list, tuple)) or len(entry) != 5
                    or not all(isinstance(x, str) for x in entry)):  # fmt: skip
                raise ValueError("llm.models entries are (name, provider, model, base_url, "
                                 f"api_key_env), got {entry!r}")  # fmt: skip
            endpoint = Endpoint(*entry)
            if endpoint.name in (MAIN, REVIEW) or not endpoint.name or not endpoint.model:
                raise ValueError(f"llm.models: {entry!r} needs a model and a name other than "
                                 f"{MAIN!r} and {REVIEW!r}")  # fmt: skip
            if endpoint.provider not in ("gemini", "openai"):
                raise ValueError(f"llm.models: {entry!r}: the provider is 'gemini' or 'openai'")
            models.append(tuple(entry))
        names = [m[0] for m in models]
        if len(set(names)) != len(names):
            raise ValueError(f"llm.models: endpoint names must differ, got {names}")
        object.__setattr__(self, "models", tuple(models))
        for role in ROLES:
            self.role(role)  # checks the values
            self.endpoints(role)  # checks the names

    def role(self, name: str) -> RoleSettings:
        """`name`'s settings: its overrides over the llm-wide values."""
        override = getattr(self.roles, name)
        settings = RoleSettings(**{
            f.name: getattr(override, f.name) if getattr(override, f.name) >= 0
            else getattr(self, f.name) for f in dataclasses.fields(RoleSettings)
        })  # fmt: skip
        if settings.timeout_seconds <= 0 or settings.max_retries < 0 or settings.reply_retries < 0:
            raise ValueError(f"llm ({name}): timeout_seconds must be > 0 and the retries >= 0, "
                             f"got {settings}")  # fmt: skip
        return settings

    def endpoint(self, name: str) -> Endpoint:
        """The endpoint called `name`: "main" (the llm-wide one), "review" or an llm.models one."""
        main = Endpoint(MAIN, self.provider, self.model, self.base_url, self.api_key_env)
        if name == MAIN:
            return main
        if name == REVIEW:
            return dataclasses.replace(main, name=REVIEW, model=self._review_model())
        for entry in self.models:
            if entry[0] == name:
                return Endpoint(*entry)
        raise ValueError(f"llm: no endpoint {name!r}: name one of llm.models "
                         f"{[m[0] for m in self.models]} or {MAIN!r}")  # fmt: skip

    def _review_model(self) -> str:
        if self.review_model != "auto":
            return self.review_model or self.model
        return OTHER_TIER.get(self.model, self.model) if not self.base_url else self.model

    def endpoints(self, role: str) -> tuple[Endpoint, ...]:
        """The endpoints `role` asks (see `RoleConfig.models`)."""
        names = getattr(self.roles, role).models
        if not names:
            reviewing = role in ("judge", "analyser", "summariser")
            names = (REVIEW,) if reviewing and self._review_model() != self.model else (MAIN,)
        if len(names) > 1 and role != "researcher":
            raise ValueError(f"llm.roles.{role}.models: only the researcher chooses among "
                             f"several models, got {list(names)}")  # fmt: skip
        if len(set(names)) != len(names):
            raise ValueError(f"llm.roles.{role}.models names an endpoint twice: {list(names)}")
        return tuple(self.endpoint(n) for n in names)

    def at(self, endpoint: Endpoint) -> LLMConfig:
        """This config with `endpoint` as its llm-wide model (what its client is made with)."""
        roles = RolesConfig(**{role: dataclasses.replace(getattr(self.roles, role), models=())
                               for role in ROLES})  # fmt: skip
        return dataclasses.replace(self, provider=endpoint.provider, model=endpoint.model,
                                   base_url=endpoint.base_url, api_key_env=endpoint.api_key_env,
                                   models=(), review_model="", roles=roles)  # fmt: skip

    def price(self, model: str) -> tuple[float, float] | None:
        """(input, output) dollars per million tokens of `model`, None when not listed."""
        return next(((i, o) for m, i, o in self.prices if m == model), None)


# ------------------------------------------------------------------------------------------
# Audit.


@dataclasses.dataclass(frozen=True)
class CallRecord:
    """One request to the model as the audit trail keeps it. The requests of one `ask`
    share `call_id` and count `attempt` from 1 (retries after no answer and after refused
    replies alike). The API key is never in it."""

    call_id: str
    role: str  # one of ROLES
    provider: str
    model: str
    system: str
    prompt: str  # the user message as sent, format instructions and refusal notes included
    reply: str  # the reply's text; "" when none came
    tokens_in: int
    tokens_out: int
    latency_seconds: float
    cost_usd: float
    error: str | None  # None: the reply was used
    attempt: int
    structured: bool  # whether a JSON schema was asked for
    started_at: float  # unix time


CallSink = Callable[[CallRecord], None]


class MemorySink:
    """Keeps every record in memory (tests, and runs without a database)."""

    def __init__(self):
        self.records: list[CallRecord] = []

    def __call__(self, record: CallRecord) -> None:
        self.records.append(record)


# ------------------------------------------------------------------------------------------
# Transports: one request to a provider, its failures in one shape.


@dataclasses.dataclass(frozen=True)
class Completion:
    text: str
    tokens_in: int
    tokens_out: int
    finish: str | None  # the provider's finish reason, e.g. "stop", "length", "MAX_TOKENS"


class RequestFailed(Exception):
    """A request without a reply: `status` None for no HTTP answer at all."""

    def __init__(self, status: int | None, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A Retry-After header's wait in seconds: delay-seconds or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _gemini_retry_delay(details: Any) -> float | None:
    """Gemini's google.rpc.RetryInfo delay ("30s") in an error body, when it sends one."""
    match = re.search(r'"retryDelay":\s*"([\d.]+)s"', json.dumps(details))
    return float(match.group(1)) if match else None


def _http_errors() -> tuple[type[Exception], ...]:
    """Transport-level errors of the HTTP libraries the SDKs use (httpx, or its fork)."""
    import httpx

    kinds: list[type[Exception]] = [httpx.HTTPError, httpx.StreamError]
    try:
        import httpx2

        kinds += [httpx2.HTTPError, httpx2.StreamError]
    except ImportError:
        pass
    return tuple(kinds)


class Transport(Protocol):
    """One request to a model: a `Completion`, or `RequestFailed`."""

    where: str  # for messages: the endpoint

    def send(self, system: str, prompt: str, settings: RoleSettings,
             schema: tuple[str, dict] | None) -> Completion: ...  # fmt: skip


class _OpenAITransport:
    def __init__(self, config: LLMConfig, key: str):
        import openai

        self._openai, self.config = openai, config
        self._client = openai.OpenAI(api_key=key or "no-key", base_url=config.base_url or None,
                                     max_retries=0, timeout=config.timeout_seconds)  # fmt: skip
        self.where = str(self._client.base_url).rstrip("/")

    def send(self, system: str, prompt: str, settings: RoleSettings,
             schema: tuple[str, dict] | None) -> Completion:  # fmt: skip
        extra: dict[str, Any] = {}
        if schema:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema[0], "schema": schema[1], "strict": True}}  # fmt: skip
        try:
            reply = self._client.chat.completions.create(
                model=self.config.model, temperature=settings.temperature,
                timeout=settings.timeout_seconds,
                messages=[{"role": "system", "content": system},
                          {"role": "user", "content": prompt}], **extra,
            )  # fmt: skip
        except self._openai.APIStatusError as e:
            headers = e.response.headers
            raise RequestFailed(e.status_code, _body(e.response),
                          retry_after_seconds(headers.get("retry-after"))) from None  # fmt: skip
        except (self._openai.APIError, ValueError, *_http_errors()) as e:
            raise RequestFailed(None, f"{type(e).__name__}: {e}") from None
        choices = getattr(reply, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        usage = getattr(reply, "usage", None)
        return Completion(
            text=(getattr(message, "content", None) or "") if message else "",
            tokens_in=getattr(usage, "prompt_tokens", None) or 0,
            tokens_out=getattr(usage, "completion_tokens", None) or 0,
            finish=getattr(choices[0], "finish_reason", None) if choices else None,
        )


class _GeminiTransport:
    def __init__(self, config: LLMConfig, key: str):
        from google import genai
        from google.genai import errors, types

        self._errors, self._types, self.config = errors, types, config
        options = types.HttpOptions(base_url=config.base_url or None,
                                    timeout=round(config.timeout_seconds * 1000))  # fmt: skip
        self._client = genai.Client(api_key=key, http_options=options)
        self.where = config.base_url or "the Gemini API"

    def send(self, system: str, prompt: str, settings: RoleSettings,
             schema: tuple[str, dict] | None) -> Completion:  # fmt: skip
        types = self._types
        settings_ = types.GenerateContentConfig(
            system_instruction=system, temperature=settings.temperature,
            http_options=types.HttpOptions(timeout=round(settings.timeout_seconds * 1000)),
            **({"response_mime_type": "application/json", "response_json_schema": schema[1]}
               if schema else {}),
        )  # fmt: skip
        try:
            reply = self._client.models.generate_content(
                model=self.config.model, contents=prompt, config=settings_
            )
        except self._errors.APIError as e:
            response = getattr(e, "response", None)
            header = response.headers.get("retry-after") if response is not None else None
            wait = retry_after_seconds(header)
            if wait is None:
                wait = _gemini_retry_delay(e.details)
            raise RequestFailed(e.code, json.dumps(e.details)[:4000], wait) from None
        except (self._errors.UnknownApiResponseError, ValueError, *_http_errors()) as e:
            raise RequestFailed(None, f"{type(e).__name__}: {e}") from None
        candidates = reply.candidates or []
        finish = candidates[0].finish_reason if candidates else None
        usage = reply.usage_metadata
        text = "".join(p.text or "" for c in candidates[:1] if c.content
                       for p in c.content.parts or [] if not p.thought)  # fmt: skip
        return Completion(
            text=text,
            tokens_in=(usage.prompt_token_count or 0) if usage else 0,
            tokens_out=((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0))
            if usage else 0,
            finish=getattr(finish, "value", finish),
        )  # fmt: skip


def _body(response: Any) -> str:
    try:
        return response.text[:4000]
    except Exception:  # a body that cannot be read still leaves its status
        return "(unreadable body)"


# ------------------------------------------------------------------------------------------
# The client: retries, structured output, accounting and the audit trail.


@dataclasses.dataclass
class _Call:
    """One `ask`: what its requests' records share, and how many requests it made."""

    role: str
    system: str
    id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:16])
    attempt: int = 0


def _api_key(config: LLMConfig) -> str:
    if config.provider == "openai" and not config.api_key_env:
        return ""  # a local server without keys
    key = os.environ.get(config.api_key_env)
    if not key:
        raise LLMUnavailable(
            f"the {config.provider} agents need an API key in ${config.api_key_env}"
        )
    return key


class LLMClient:
    """A provider's model behind `ask`, which returns a role's parsed reply or raises
    `ReplyRefused`, `LLMUnavailable` or `LLMError`. Every request goes to `sink`."""

    def __init__(self, config: LLMConfig, sink: CallSink | None = None,
                 log: Callable[[str], None] = print, transport: Transport | None = None
                 ) -> None:  # fmt: skip
        self.config, self.sink = config, sink
        if transport is None:
            self._key = _api_key(config)
            kind = _GeminiTransport if config.provider == "gemini" else _OpenAITransport
            transport = kind(config, self._key)
        else:  # a recorded run replayed (asi_jax.agents.replay): no network, no key
            self._key = ""
        self._transport = transport
        self.name = f"{config.provider}:{config.model}"
        self._log = log
        self._schema_rejected = False  # "auto" found that the endpoint rejects JSON schemas
        self._unpriced_warned = False

    def _scrub(self, text: str) -> str:
        return text.replace(self._key, "[api key]") if len(self._key) >= 4 else text

    def log(self, line: str) -> None:
        self._log(self._scrub(line))

    def _structured(self) -> bool:
        mode = self.config.structured_output
        return mode == "json_schema" or (mode == "auto" and not self._schema_rejected)

    def _cost(self, completion: Completion) -> float:
        price = self.config.price(self.config.model)
        if price is None:
            if not self._unpriced_warned:
                self._unpriced_warned = True
                self.log(f"llm: no price for {self.config.model!r} in llm.prices; its calls "
                         "are counted at $0")  # fmt: skip
            return 0.0
        return (completion.tokens_in * price[0] + completion.tokens_out * price[1]) / 1e6

    def _record(self, call: _Call, prompt: str, completion: Completion | None, latency: float,
                started: float, error: str | None, structured: bool) -> None:  # fmt: skip
        if self.sink is None:
            return
        done = completion or Completion("", 0, 0, None)
        self.sink(CallRecord(
            call_id=call.id, role=call.role, provider=self.config.provider,
            model=self.config.model, system=self._scrub(call.system),
            prompt=self._scrub(prompt), reply=self._scrub(done.text),
            tokens_in=done.tokens_in, tokens_out=done.tokens_out, latency_seconds=latency,
            cost_usd=self._cost(done) if completion else 0.0,
            error=self._scrub(error) if error is not None else None, attempt=call.attempt,
            structured=structured, started_at=started,
        ))  # fmt: skip

    def _request(self, call: _Call, prompt: str, settings: RoleSettings,
                 schema: tuple[str, dict] | None) -> tuple[Completion, float, float]:  # fmt: skip
        """One reply (with its latency and start time), through `max_retries` retries of
        requests that got none."""
        what = f"{self.name} at {self._transport.where}"
        delay = self.config.retry_seconds
        for retry in range(settings.max_retries + 1):
            call.attempt += 1
            started, clock = time.time(), time.monotonic()
            try:
                completion = self._transport.send(call.system, prompt, settings, schema)
                return completion, time.monotonic() - clock, started
            except RequestFailed as e:
                failure = e
            latency = time.monotonic() - clock
            if failure.status is None:
                message = f"{what}: no answer ({failure.message})"
            else:
                message = f"{what}: HTTP {failure.status}: {failure.message}"
            message = self._scrub(message)
            self._record(call, prompt, None, latency, started, message, schema is not None)
            status = failure.status
            if status in (401, 403, 404):
                raise LLMUnavailable(f"{message} (check llm.model, llm.base_url and the key)")
            if status is not None and status < 500 and status not in (408, 429):
                raise LLMError(message)  # the request itself is wrong; so is a retry
            if retry == settings.max_retries:
                raise LLMUnavailable(f"{message} ({retry + 1} requests, none answered)")
            wait = failure.retry_after if failure.retry_after is not None else delay
            wait = min(wait, self.config.retry_max_seconds)
            self.log(f"llm: {message}; retrying in {wait:.1f}s")
            time.sleep(wait)
            delay *= 2
        raise AssertionError("unreachable")

    def ask(self, role: str, system: str, prompt: str, form: ReplyForm[T]) -> T:
        """`form`'s result from the model's reply to `prompt` in `role`'s settings."""
        settings = self.config.role(role)
        call = _Call(role, system)
        note = reason = ""
        for _ in range(settings.reply_retries + 1):
            structured = self._structured()
            text = f"{prompt}\n\n{form.instruction(structured)}{note}"
            schema = (form.name, form.schema) if structured else None
            try:
                completion, latency, started = self._request(call, text, settings, schema)
            except LLMError as e:
                if (type(e) is not LLMError or not structured
                        or self.config.structured_output != "auto"):  # fmt: skip
                    raise
                # The endpoint may not take JSON schemas: ask once in free text, and keep to
                # free text if that is answered.
                text = f"{prompt}\n\n{form.instruction(False)}{note}"
                completion, latency, started = self._request(call, text, settings, None)
                self._schema_rejected, structured = True, False
                self.log(f"llm: {self.name} rejected a JSON-schema request ({e}); asking for "
                         "free text from now on")  # fmt: skip
            try:
                result = form.build(parse_reply(completion.text, form))
            except ReplyRefused as e:
                reason = str(e)
                if completion.finish and completion.finish.lower() != "stop":
                    reason += f" (the reply ended with {completion.finish})"
                self._record(call, text, completion, latency, started, f"refused: {reason}",
                             structured)  # fmt: skip
                note = (f"\n\nYour previous reply was refused: {reason}. Reply again, in "
                        "exactly the format asked for.")  # fmt: skip
                continue
            self._record(call, text, completion, latency, started, None, structured)
            return result
        raise ReplyRefused(
            self._scrub(f"{reason} ({settings.reply_retries + 1} replies from {self.name} refused)")
        )


def make_client(config: LLMConfig, sink: CallSink | None = None,
                log: Callable[[str], None] = print,
                transport: Transport | None = None) -> LLMClient:  # fmt: skip
    """The client of `config`'s provider (or of `transport`, which replaces the network);
    its requests are recorded in `sink`."""
    return LLMClient(config, sink, log, transport)


# ------------------------------------------------------------------------------------------
# Reply forms and parsing.


@dataclasses.dataclass(frozen=True)
class ReplyForm(Generic[T]):
    """The fields a role's reply must hold and how they become its result. `fields` maps a
    name to (its JSON schema, what it holds in words); in free text a "code" field comes in a
    ```python block and an "edits" field as SEARCH/REPLACE blocks, after the JSON object.
    `build` raises `ReplyRefused` for a reply it cannot use."""

    name: str
    fields: dict[str, tuple[dict[str, Any], str]]
    build: Callable[[dict[str, Any]], T]

    @property
    def schema(self) -> dict[str, Any]:
        """The reply's JSON schema, strict (every field required, no others)."""
        return _object({k: s for k, (s, _) in self.fields.items()})

    def instruction(self, structured: bool) -> str:
        """How the prompt asks for the reply: one JSON object, or free text."""
        words = {k: w for k, (_, w) in self.fields.items()}
        loose = None if structured else _loose_field(self)
        text = words.pop(loose) if loose else None
        obj = "{" + ", ".join(f'"{k}": {w}' for k, w in words.items()) + "}"
        if text is None:
            return f"Reply with one JSON object {obj}."
        if not words:
            return f"Reply with {text} {_LOOSE[loose]}."
        return f"Reply with a JSON object {obj} and then {text} {_LOOSE[loose]}."


# Fields that come after the JSON object in a free-text reply, and how.
_LOOSE = {"code": "in one ```python block", "edits": "as SEARCH/REPLACE blocks"}


def _loose_field(form: ReplyForm) -> str | None:
    return next((k for k in _LOOSE if k in form.fields), None)


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}  # fmt: skip


def extract_code(reply: str) -> str:
    """The last ```python block of a reply (the final version, when a model drafts first)."""
    fenced = re.findall(r"```([\w+-]*)[ \t]*\n(.*?)```", reply, re.DOTALL)
    blocks = [body for label, body in fenced if label.lower() in ("python", "py", "")]
    if not blocks:
        raise ReplyRefused("the reply has no ```python code block")
    return blocks[-1].strip() + "\n"


def extract_json(reply: str) -> dict[str, Any]:
    """The first JSON object in a reply (bare, or in a ```json block)."""
    match = re.search(r"```json\s*\n(.*?)```", reply, re.DOTALL)
    text = match.group(1) if match else reply[reply.find("{") : reply.rfind("}") + 1]
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ReplyRefused(f"the reply's JSON does not parse: {e.msg}") from None
    if not isinstance(value, dict):
        raise ReplyRefused("the reply's JSON is not an object")
    return value


def parse_reply(reply: str, form: ReplyForm) -> dict[str, Any]:
    """A reply's fields: the reply as one JSON object (what a schema asks for), else a JSON
    object in free text with the code (or edits) in it or after it, in a ```python block (or
    as SEARCH/REPLACE blocks): what a server without schemas may send."""
    text = re.sub(r"^```(?:json)?\s*\n(.*)\n```$", r"\1", reply.strip(), flags=re.DOTALL)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None
    loose = _loose_field(form)
    if isinstance(whole, dict) and (loose is None or loose in whole):
        return whole
    head = re.split(r"```python|<{5,9} ?SEARCH", reply)[0] + "\n"
    values = extract_json(head) if set(form.fields) - {loose} else {}
    if loose and not isinstance(values.get(loose), str):
        values[loose] = extract_code(reply) if loose == "code" else reply
    return values


def _field(values: dict, key: str, kind: type = str):
    if not isinstance(values.get(key), kind):
        raise ReplyRefused(f"the reply's JSON lacks {key!r} ({kind.__name__})")
    return values[key]


def _code(values: dict) -> str:
    code = _field(values, "code")
    code = extract_code(code) if "```" in code else code.strip() + "\n"
    if not code.strip():
        raise ReplyRefused("the reply's code is empty")
    return code


_CODE = ({"type": "string"}, "the complete candidate file")
ORIGINS = ("cognition", "analysis", "original")


def _proposal(values: dict, mode: str = "full") -> Proposal:
    name = re.sub(r"[^a-z0-9-]+", "-", _field(values, "name").lower()).strip("-")[:60]
    origins = values.get("idea_origins")
    origins = [o for o in origins if isinstance(o, dict) and o.get("origin") in ORIGINS] \
        if isinstance(origins, list) else []  # fmt: skip
    return Proposal(name or "llm-candidate", _field(values, "motivation"), _code(values), None,
                    origins, mode)  # fmt: skip


_ABOUT = {
    "name": ({"type": "string"}, "short-kebab-case"),
    "motivation": ({"type": "string"},
                   "why this design should work, citing the research or lessons it uses"),
    "idea_origins": ({"type": "array", "items": _object({
        "idea": {"type": "string"}, "origin": {"type": "string", "enum": list(ORIGINS)},
        "evidence": {"type": "string"}})},
        '[{"idea": ..., "origin": "cognition" | "analysis" | "original", "evidence": ...}]'),
}  # fmt: skip
PROPOSAL = ReplyForm("proposal", {**_ABOUT, "code": _CODE}, _proposal)
CROSSOVER = ReplyForm("proposal", {**_ABOUT, "code": _CODE},
                      lambda values: _proposal(values, "crossover"))  # fmt: skip


def diff_form(parent_source: str) -> ReplyForm[Proposal]:
    """A proposal written as edits to `parent_source`; edits that do not apply are refused,
    saying why, so the model's next try can mend them."""

    def build(values: dict) -> Proposal:
        try:
            code = apply_edits(parent_source, _field(values, "edits"))
        except EditError as e:
            raise ReplyRefused(f"the edits do not apply to the parent's file: {e}") from None
        return _proposal({**values, "code": code}, "diff")

    edits = ({"type": "string"}, "the edits to the parent's file, each a block\n"
             f"{EDIT_FORMAT}\n")  # fmt: skip
    return ReplyForm("diff_proposal", {**_ABOUT, "edits": edits}, build)


REVISION = ReplyForm("revision", {"code": (_CODE[0], "the complete corrected file")}, _code)


def _variants(values: dict) -> list[tuple[str, str]]:
    variants = _field(values, "variants", list)
    out = [(_field(v, "change").strip().splitlines()[0][:120], _code(v))
           for v in variants if isinstance(v, dict)]  # fmt: skip
    if not out or not all(change for change, _ in out):
        raise ReplyRefused("the reply names no variant with a change and its code")
    return out


ABLATIONS = ReplyForm("ablations", {"variants": ({"type": "array", "items": _object({
    "change": {"type": "string"}, "code": {"type": "string"}})},
    '[{"change": "the one component removed or replaced, in a few words", "code": "the '
    'complete candidate file of that variant"}]')}, _variants)  # fmt: skip


def _analysis(values: dict) -> Analysis:
    lesson = values.get("lesson")
    return Analysis(_field(values, "report"), _field(values, "problem_summary"),
                    lesson if isinstance(lesson, str) and lesson.strip() else None)  # fmt: skip


ANALYSIS = ReplyForm("analysis", {
    "report": ({"type": "string"}, "what changed and what it did"),
    "problem_summary": ({"type": "string"}, "the remaining weakness, in one or two sentences "
                        "that describe the experimental situation"),
    "lesson": ({"type": "string"}, "one reusable sentence"),
}, _analysis)  # fmt: skip


SUB_SCORES = ("performance", "innovation", "complexity")
_SUB_SCORES_TAG = "Sub-scores: "


def _judgement(values: dict) -> tuple[float, str]:
    scores = {}
    for key in ("score", *SUB_SCORES):
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 1 <= value <= 10:
            what = "score" if key == "score" else f"{key} score"
            raise ReplyRefused(f"the judge's {what} must be a number in [1, 10], got {value!r}")
        scores[key] = float(value)
    subs = json.dumps({k: scores[k] for k in SUB_SCORES})
    return scores["score"], f"{values.get('rationale', '')}\n\n{_SUB_SCORES_TAG}{subs}"


def sub_scores(rationale: str) -> dict[str, float]:
    """The judge's sub-scores ({performance, innovation, complexity}) kept at the end of an
    LLM judge's rationale; {} for a rationale without them (the offline judge's)."""
    _, tag, tail = rationale.rpartition(_SUB_SCORES_TAG)
    try:
        values = json.loads(tail) if tag else {}
    except json.JSONDecodeError:
        return {}
    return {k: float(v) for k, v in values.items() if k in SUB_SCORES} if isinstance(
        values, dict) else {}  # fmt: skip


_SCORE = {"type": "number"}
JUDGEMENT = ReplyForm("judgement", {
    "performance": (_SCORE, "1-10: its figures beside the baselines'"),
    "innovation": (_SCORE, "1-10: how new its idea is beside what came before"),
    "complexity": (_SCORE, "1-10: how simple and cheap it is for what it achieves (10: "
                   "simplest)"),
    "score": (_SCORE, "the overall score, a number from 1 to 10"),
    "rationale": ({"type": "string"}, "text"),
}, _judgement)  # fmt: skip


# ------------------------------------------------------------------------------------------
# The roles.


def researcher_system(task: Task) -> str:
    return ("You are the researcher of an automated discovery loop. You design new "
            "candidates, building on a parent design, reference designs, the analysis of "
            "earlier experiments and prior research.\n\n" + task.contract)  # fmt: skip


def _figures(r: Record, task: Task) -> str:
    if r.status != "evaluated":
        return f"{r.status} ({r.failure_stage}: {(r.failure_reason or '')[-200:]})"
    text = (f"{task.loss.short} {r.loss:.4f}, {task.benchmark.short} {r.benchmark:.3f}"
            + (f", fitness {r.fitness:.3f}" if r.fitness is not None else ""))  # fmt: skip
    try:  # the task's details, e.g. the recall at each number of key-value pairs
        details = task.figures(r.metrics).details if r.metrics else {}
    except (KeyError, TypeError, ValueError):
        details = {}
    return text + "".join(f"; {k} {json.dumps(v, sort_keys=True)}" for k, v in details.items())


def _candidate(title: str, r: Record, task: Task) -> str:
    """A candidate as prompts show it: results, motivation, analysis and file."""
    parts = [f"## {title}: {r.name} ({_figures(r, task)})", f"Motivation:\n{r.motivation}"]
    if r.analysis:
        parts.append(f"Analysis of its results:\n{r.analysis}")
    parts.append(f"```python\n{task.candidate_source(r).rstrip()}\n```")
    return "\n".join(parts)


_TASKS = {
    "full": "Propose one new candidate that addresses the analysis: write its complete file.",
    "diff": "Propose one new candidate that addresses the analysis, written as edits to the "
    "parent's file above: each SEARCH block quotes lines of that file exactly (enough of "
    "them to be unique) and its REPLACE block holds the lines that replace them.",
    "crossover": "Propose one new candidate that combines the strengths of the two parents "
    "above and addresses their weaknesses: write its complete file.",
}


def research_prompt(context: ResearchContext, task: Task) -> str:
    """The researcher's prompt: the parent (and, for a crossover, the other parent) and the
    references with their files, results and analyses; the lessons and retrieved research;
    what to write for `context.mode`. The human's steering comes first: their ideas must be
    considered, and a proposal that breaks a ban or requirement is rejected unread."""
    parts = []
    if context.notes or context.rules:
        parts.append("# Steering from the run's human operator (high priority)\n"
                     + "".join(f"- Idea from {n.author} (#{n.id}), consider it in this "
                               f"proposal: {n.text}\n" for n in context.notes)
                     + "".join(f"- {r.describe().capitalize()} (#{r.id}, by {r.author}); a "
                               "proposal that breaks this is rejected\n"
                               for r in context.rules))  # fmt: skip
    if context.mode == "crossover":
        parts += [_candidate("First parent", context.parent, task),
                  _candidate("Second parent", context.second_parent, task)]  # fmt: skip
    else:
        parts.append(_candidate("Parent", context.parent, task))
    parts.append(f"## The parent's remaining weakness\n{context.problem_summary}")
    if context.references:
        parts.append("# References\n\n" + "\n\n".join(
            _candidate("Reference", r, task) for r in context.references))  # fmt: skip
    if context.lessons:
        parts.append("## Lessons from earlier experiments\n"
                     + "\n".join(f"- {x}" for x in context.lessons[:15]))  # fmt: skip
    if context.cognition:
        parts.append("## Prior research retrieved for this situation\n" + "\n\n".join(
            f"### {r.entry.title} ({r.entry.source})\n{r.entry.design_insight}\n"
            f"Innovation: {r.entry.algorithmic_innovation}\n"
            f"Guidance: {r.entry.implementation_guidance}" for r in context.cognition))  # fmt: skip
    parts.append(f"## Task\n{_TASKS[context.mode]}")
    return "\n\n".join(parts)


class LLMResearcher:
    def __init__(self, client: LLMClient, task: Task, reviser: LLMClient | None = None):
        """`reviser`: the client `revise` asks (the reviser role's model); `client` if None."""
        self.client, self.task, self.reviser = client, task, reviser or client
        self.name = f"llm-researcher:{client.name}"

    def propose(self, context: ResearchContext) -> Proposal:
        """A whole new file ("full"), edits to the parent's ("diff", applied here: edits that
        do not apply are asked again, saying why) or a file combining two parents
        ("crossover"); the proposal records its mode."""
        form = {"full": PROPOSAL, "crossover": CROSSOVER}.get(context.mode)
        if context.mode == "diff":
            form = diff_form(self.task.candidate_source(context.parent))
        return self.client.ask("researcher", researcher_system(self.task),
                               research_prompt(context, self.task), form)  # fmt: skip

    def ablations(self, winner: Record, reference: Record, count: int
                  ) -> list[tuple[str, str]]:  # fmt: skip
        """Up to `count` single-change variants of a verified winner written as free-form
        code, each undoing one of its components: (what changed, the variant's file)."""
        prompt = "\n\n".join([
            _candidate("Verified winner", winner, self.task),
            _candidate("Reference", reference, self.task),
            f"## Task\nThe winner beat the reference on every verification seed. To find "
            f"which of its components carries the gain, write up to {count} ablation "
            "variants of the winner's file. Each changes exactly one component: it removes "
            "it, or replaces it with the reference's way of doing the same thing, and keeps "
            "everything else as it is. Name the change of each in a few words.",
        ])  # fmt: skip
        return self.client.ask("researcher", researcher_system(self.task), prompt,
                               ABLATIONS)[:count]  # fmt: skip

    def revise(self, source: str, error: str) -> str | None:
        prompt = (f"This candidate failed.\n\n```python\n{source}\n```\n\nError:\n{error}\n\n"
                  "Fix the cause, keeping the design's idea.")  # fmt: skip
        try:
            return self.reviser.ask("reviser", researcher_system(self.task), prompt, REVISION)
        except LLMError:
            return None  # the engineer records the last failure; the run goes on


DIFF_LINES = 400  # the most lines of a candidate's diff against its parent an analyser reads
CURVE_POINTS = 12  # the most points of a loss curve an analyser reads


def source_diff(parent: str, child: str, parent_name: str, child_name: str) -> str:
    """The unified diff of a child's file against its parent's (at most `DIFF_LINES`)."""
    lines = list(difflib.unified_diff(parent.splitlines(keepends=True),
                                      child.splitlines(keepends=True),
                                      f"{parent_name}.py", f"{child_name}.py"))  # fmt: skip
    if not lines:
        return "(the files are identical)\n"
    cut = len(lines) - DIFF_LINES
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines[:DIFF_LINES])
    return text + (f"... ({cut} more lines)\n" if cut > 0 else "")


def loss_curve(metrics: dict[str, Any]) -> str:
    """The training loss curve of a result, at most `CURVE_POINTS` points of
    `metrics["curve"]` ([{"step", "loss", ...}], the run's logged training records), else its
    final training figures."""
    curve = [p for p in metrics.get("curve") or []
             if isinstance(p, dict) and isinstance(p.get("loss"), (int, float))]  # fmt: skip
    if not curve:
        final = metrics.get("final_train")
        if not final:
            return "Training: no loss curve recorded"
        return f"Training: no loss curve recorded; after {metrics.get('steps')} steps {final}"
    picks = range(len(curve))
    if len(curve) > CURVE_POINTS:
        step = (len(curve) - 1) / (CURVE_POINTS - 1)
        picks = sorted({round(i * step) for i in range(CURVE_POINTS)})
    return "Training loss (step: loss):\n" + "\n".join(
        f"  {curve[i].get('step')}: {curve[i]['loss']:.4f}" for i in picks)  # fmt: skip


class LLMAnalyser:
    def __init__(self, client: LLMClient, task: Task):
        self.client, self.task = client, task
        self.name = f"llm-analyser:{client.name}"

    def analyse(self, record: Record, parent: Record | None,
                siblings: Sequence[Record]) -> Analysis:  # fmt: skip
        """Reads what the candidate changed (its diff against the parent's file), its loss
        curve and evaluation, beside its parent and siblings."""
        metrics = record.metrics or {}
        lines = [f"## Candidate {record.name}: {_figures(record, self.task)}\n{record.motivation}",
                 f"Evaluation: {json.dumps(metrics.get('eval'))}", loss_curve(metrics)]  # fmt: skip
        if parent:
            lines.append(
                f"## Parent {parent.name}: {_figures(parent, self.task)}\n{parent.motivation}"
            )
            if parent.analysis:
                lines.append(f"Analysis of the parent:\n{parent.analysis}")
            diff = source_diff(self.task.candidate_source(parent), record.code, parent.name,
                               record.name)  # fmt: skip
            lines.append(f"## What the candidate changed in its parent's file\n```diff\n{diff}```")
        else:
            lines.append(f"## The candidate's file\n```python\n{record.code.rstrip()}\n```")
        lines += [
            f"- sibling {s.name}: {_figures(s, self.task)}" for s in siblings if s.id != record.id
        ]
        system = ("You are the analyser of an automated discovery loop: compare a result "
                  "with its parent and siblings and say what was learned.\n\n"
                  + self.task.contract)  # fmt: skip
        return self.client.ask("analyser", system, "\n\n".join(lines), ANALYSIS)


def _summary(values: dict) -> str:
    summary = _field(values, "problem_summary").strip()
    if not summary:
        raise ReplyRefused("the reply's problem_summary is empty")
    return summary


SUMMARY = ReplyForm("summary", {
    "problem_summary": ({"type": "string"}, "the remaining weakness, in one or two sentences "
                        "that describe the experimental situation, for searching the research "
                        "literature"),
}, _summary)  # fmt: skip


class LLMSummariser:
    """Condenses an analysis into the problem summary the cognition store is queried with (as
    ASI-Arch's summariser does), on a model of its own."""

    def __init__(self, client: LLMClient, task: Task):
        self.client, self.task = client, task
        self.name = f"llm-summariser:{client.name}"

    def summarise(self, record: Record, analysis: Analysis) -> str:
        prompt = (f"## Candidate {record.name}: {_figures(record, self.task)}\n"
                  f"{record.motivation}\n\n## The analysis of its experiment\n{analysis.report}"
                  f"\n\n## The analyser's own summary\n{analysis.problem_summary}\n\n"
                  "Condense this into the problem the next design should solve: the summary "
                  "that will retrieve prior research for it.")  # fmt: skip
        system = ("You are the summariser of an automated discovery loop: condense an "
                  "experiment's analysis into the problem that retrieves prior research for "
                  "the next design.")  # fmt: skip
        return self.client.ask("summariser", system, prompt, SUMMARY)


class AnalysisSummary:
    """The summariser without a model: the analyser's own problem summary (the offline
    analyser's, when the LLM analyser stood down)."""

    name = "analyser-summary"

    def summarise(self, record: Record, analysis: Analysis) -> str:
        del record
        return analysis.problem_summary


class LLMJudge:
    def __init__(self, client: LLMClient, task: Task):
        self.client, self.task = client, task
        self.name = f"llm-judge:{client.name}"

    def judge(self, record: Record, *, nearest_similarity: float,
              population: Sequence[Record],
              baselines: Sequence[Record] = ()) -> tuple[float, str]:  # fmt: skip
        """(overall score, rationale ending in the performance, innovation and complexity
        sub-scores: `sub_scores` reads them) of a trained candidate beside the baselines."""
        parts = [f"## Candidate {record.name} ({_figures(record, self.task)})\n"
                 f"{record.motivation}\n\n```python\n{record.code.rstrip()}\n```"]  # fmt: skip
        if baselines:
            parts.append("## Baselines, trained alike\n" + "\n".join(
                f"- {b.name}: {_figures(b, self.task)}" for b in baselines))  # fmt: skip
        parts.append(
            f"Its motivation has cosine similarity {nearest_similarity:.2f} to the nearest "
            f"earlier one; {len(population)} designs came before it.\n"
            "Score it from 1 to 10 for performance (its figures beside the baselines'), "
            "innovation (how new its idea is) and complexity (how simple and cheap it is for "
            "what it achieves), then overall."
        )
        system = ("You are the judge of an automated discovery loop: rate how well a trained "
                  "candidate performs, how novel it is and how complex.\n\n"
                  + self.task.contract)  # fmt: skip
        return self.client.ask("judge", system, "\n\n".join(parts), JUDGEMENT)
