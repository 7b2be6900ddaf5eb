"""The one place agents are made: the task's offline roles, or LLM-backed ones that fall back
to them.

    agents = make_agents("llm", llm_config, task, log, calls=sink)  # sink(CallRecord)
    proposal, by = agents.researcher.call("propose", context)

An LLM role whose call fails (`LLMError`: a refused reply, and for now also an unavailable
model, `LLMUnavailable`) hands that call to the task's offline role, and the call's result
says which agent produced it, so every record names its author. A researcher's failure is
not handed over: the controller records it as a rejected proposal and tries again (a model's
bad reply should not silently become a grammar proposal).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from asi_jax.agents.llm import (
    CallSink,
    LLMAnalyser,
    LLMConfig,
    LLMError,
    LLMJudge,
    LLMResearcher,
    Transport,
    make_client,
)
from asi_jax.tasks.base import Task


@dataclasses.dataclass(frozen=True)
class Role:
    """An agent and what stands in for it when its reply is unusable (None: nothing)."""

    agent: Any
    fallback: Any | None
    log: Callable[[str], None] = print

    @property
    def name(self) -> str:
        return self.agent.name

    def call(self, method: str, *args, **kwargs) -> tuple[Any, str]:
        """(the result of agent.method(...), the name of the agent that produced it)."""
        try:
            return getattr(self.agent, method)(*args, **kwargs), self.agent.name
        except LLMError as e:
            if self.fallback is None:
                raise
            self.log(f"{self.agent.name} failed ({e}); {self.fallback.name} stands in")
            return getattr(self.fallback, method)(*args, **kwargs), self.fallback.name


@dataclasses.dataclass(frozen=True)
class Agents:
    researcher: Role
    analyser: Role
    judge: Role

    def names(self) -> dict[str, str]:
        return {"researcher": self.researcher.name, "analyser": self.analyser.name,
                "judge": self.judge.name}  # fmt: skip


def make_agents(kind: str, llm: LLMConfig, task: Task, log: Callable[[str], None] = print,
                calls: CallSink | None = None,
                transport: Transport | None = None) -> Agents:  # fmt: skip
    """The task's offline agents (`kind` "offline"), or LLM ones on `llm` ("llm") with the
    offline analyser and judge standing in for unusable replies; every request to the model
    is recorded in `calls`; `transport` replaces the network (a replay)."""
    researcher, analyser, judge = task.offline_agents()
    if kind == "offline":
        return Agents(Role(researcher, None, log), Role(analyser, None, log),
                      Role(judge, None, log))  # fmt: skip
    if kind != "llm":
        raise ValueError(f"agents are 'offline' or 'llm', got {kind!r}")
    client = make_client(llm, calls, log, transport)
    return Agents(Role(LLMResearcher(client, task), None, log),
                  Role(LLMAnalyser(client, task), analyser, log),
                  Role(LLMJudge(client, task), judge, log))  # fmt: skip
