"""Replaying a recorded run's language-model calls, with no network.

Every request a run makes is stored in its database (`calls`, see asi_jax.evolution.db);
`ReplayTransport` answers each new request with the recorded reply to the same request
(the same role, system and user text), in recorded order, so the client's retries, parsing
and refusals run exactly as they did. A request that was never made raises `ReplayDiverged`:
the replayed run has taken another path than the recorded one.
"""

from __future__ import annotations

import collections
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

from asi_jax.agents.llm import Completion, RequestFailed, RoleSettings


class ReplayDiverged(RuntimeError):
    pass


class ReplayTransport:
    """A transport serving recorded replies (rows of the `calls` table, in id order)."""

    where = "the recorded calls"

    def __init__(self, calls: Iterable[Mapping[str, Any]]):
        self._replies: dict[tuple[str, str], collections.deque] = collections.defaultdict(
            collections.deque
        )
        for call in calls:
            self._replies[(call["system"], call["prompt"])].append(call)
        self._lock = threading.Lock()  # revisions ask from the evaluation threads
        self.served = 0

    def send(self, system: str, prompt: str, settings: RoleSettings,
             schema: tuple[str, dict] | None) -> Completion:  # fmt: skip
        del settings, schema  # the recorded request was made with them
        with self._lock:
            recorded = self._replies.get((system, prompt))
            if not recorded:
                raise ReplayDiverged(
                    "the replayed run made a request the recorded run did not make (or made "
                    f"fewer times); its prompt begins {prompt[:200]!r}"
                )
            call = recorded.popleft()
            self.served += 1
        error = call["error"]
        if error is not None and not error.startswith("refused: "):
            status = re.search(r": HTTP (\d{3}): ", error)
            raise RequestFailed(int(status.group(1)) if status else None,
                                f"recorded: {error}", retry_after=0.0)  # fmt: skip
        return Completion(call["reply"], call["tokens_in"], call["tokens_out"], "stop")

    def unused(self) -> int:
        """Recorded requests the replay has not made (0 when it took the same path)."""
        return sum(len(q) for q in self._replies.values())
