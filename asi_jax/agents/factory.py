"""The one place agents are made: the task's offline roles, LLM-backed ones that fall back
to them, or the random-search control arm (a uniform sampler of the task's design grammar
with the offline analyser and judge: they run after training and cannot steer it, and the
judge's score is part of the fitness, so both arms are scored alike).

    agents = make_agents("llm", llm_config, task, log, calls=sink)  # sink(CallRecord)
    proposal, by = agents.researcher.call("propose", context)

Each role asks its own endpoint (`LLMConfig.endpoints`); the researcher may have several,
`Agents.researchers`, among which the controller's bandit picks one per proposal. The
summariser condenses an analysis into its problem summary; without a usable reply the
analyser's own summary stands.

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

from asi_jax.agents.grammar_search import RandomResearcher
from asi_jax.agents.llm import (
    AnalysisSummary,
    CallSink,
    Endpoint,
    LLMAnalyser,
    LLMClient,
    LLMConfig,
    LLMError,
    LLMJudge,
    LLMResearcher,
    LLMSummariser,
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
    researcher: Role  # the first of `researchers` (the offline researcher offline)
    analyser: Role
    judge: Role
    summariser: Role
    # (endpoint name, researcher on it) per model the researcher may ask; empty offline
    researchers: tuple[tuple[str, Role], ...] = ()

    def names(self) -> dict[str, Any]:
        names: dict[str, Any] = {"researcher": self.researcher.name,
                                 "analyser": self.analyser.name, "judge": self.judge.name,
                                 "summariser": self.summariser.name}  # fmt: skip
        if len(self.researchers) > 1:
            names["researchers"] = {arm: role.name for arm, role in self.researchers}
        return names


def make_agents(kind: str, llm: LLMConfig, task: Task, log: Callable[[str], None] = print,
                calls: CallSink | None = None,
                transport: Transport | None = None) -> Agents:  # fmt: skip
    """The task's offline agents (`kind` "offline"), the random-search control arm
    ("random"), or LLM ones on `llm` ("llm"), each role on its endpoints, with the offline
    analyser and judge standing in for unusable replies; every request to a model is
    recorded in `calls`; `transport` replaces the network (a replay)."""
    researcher, analyser, judge = task.offline_agents()
    summary = Role(AnalysisSummary(), None, log)
    if kind == "offline":
        return Agents(Role(researcher, None, log), Role(analyser, None, log),
                      Role(judge, None, log), summary)  # fmt: skip
    if kind == "random":
        if (grammar := task.grammar()) is None:
            raise ValueError(f"agents 'random' sample the task's design grammar, and the task "
                             f"{task.name} has none")  # fmt: skip
        return Agents(Role(RandomResearcher(grammar), None, log), Role(analyser, None, log),
                      Role(judge, None, log), summary)  # fmt: skip
    if kind != "llm":
        raise ValueError(f"agents are 'offline', 'llm' or 'random', got {kind!r}")
    clients: dict[str, LLMClient] = {}

    def client(endpoint: Endpoint) -> LLMClient:  # one per endpoint, shared by its roles
        if endpoint.name not in clients:
            clients[endpoint.name] = make_client(llm.at(endpoint), calls, log, transport)
        return clients[endpoint.name]

    def only(role: str) -> LLMClient:
        return client(llm.endpoints(role)[0])

    reviser = only("reviser")
    researchers = tuple((e.name, Role(LLMResearcher(client(e), task, reviser), None, log))
                        for e in llm.endpoints("researcher"))  # fmt: skip
    return Agents(researchers[0][1],
                  Role(LLMAnalyser(only("analyser"), task), analyser, log),
                  Role(LLMJudge(only("judge"), task), judge, log),
                  Role(LLMSummariser(only("summariser"), task), AnalysisSummary(), log),
                  researchers)  # fmt: skip
