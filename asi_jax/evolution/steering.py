"""Human steering of a run: commands written by scripts/steer.py, applied by the controller.

    steering.submit(workdir, "ban", {"component": "conv", "value": "qkv"}, author="ana")

steer.py never writes the database (the controller is its only writer): each command is one
JSON file moved atomically into `<workdir>/steering/inbox/`. The controller reads the inbox
when a run starts and at every turn of its loop, so commands given while no run is going
apply when it resumes; it records each in the database's `steering` table with what it did,
then moves the file to `steering/done/` (or, when the command is malformed or cannot apply,
to `steering/rejected/` beside a `.reason` file, and logs why: the run goes on).

  idea TEXT        a note every proposal must consider, in the researcher's context at high
                   priority, until withdrawn or `steering.idea_proposals` candidates were
                   proposed with it (which proposals saw it is recorded)
  ban / require    a design component's option (component=value, checked against the task's
                   grammar where it has one) or a code pattern (a regex searched in the
                   candidate's file): a proposal that breaks one is rejected before any
                   compute, the rejection naming the command
  pause / resume   while paused no proposal and no evaluation starts; running ones finish
  approve / veto   a candidate's promotion to verification: `steering.require_approval`
                   makes verification wait for one of them; a veto always keeps it out
  withdraw ID      lifts an idea, ban or requirement
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from asi_jax.agents.base import Note, Rule, option_text
from asi_jax.evolution import state
from asi_jax.evolution.config import SteeringConfig
from asi_jax.evolution.db import Database
from asi_jax.tasks.base import Task

COMMANDS = ("idea", "ban", "require", "pause", "resume", "approve", "veto", "withdraw")
INBOX, DONE, REJECTED = "steering/inbox", "steering/done", "steering/rejected"
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
# The arguments of each command: (required, optional).
_ARGUMENTS = {"idea": ({"text"}, set()), "pause": (set(), set()), "resume": (set(), set()),
              "approve": ({"name"}, set()), "veto": ({"name"}, set()),
              "withdraw": ({"id"}, set())}  # fmt: skip


def options_of(task: Task) -> Mapping[str, Sequence[Any]] | None:
    """The task's design grammar (component -> its options); None for a task without a
    grammar (component names are then not checked)."""
    grammar = task.grammar()
    return grammar.options if grammar is not None else None


def validate(command: str, arguments: Mapping[str, Any],
             options: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """The command's arguments, checked and normalised; ValueError says what is wrong."""
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r}; the commands are {list(COMMANDS)}")
    args = dict(arguments)
    if command in ("ban", "require"):
        if "pattern" in args:
            if set(args) != {"pattern"} or not isinstance(args["pattern"], str):
                raise ValueError(f"{command} takes a pattern or a component=value, not both")
            try:
                re.compile(args["pattern"])
            except re.error as e:
                raise ValueError(f"{command}: the pattern {args['pattern']!r} is not a regular "
                                 f"expression: {e}") from e  # fmt: skip
            return {"pattern": args["pattern"]}
        component, value = args.get("component"), args.get("value")
        if (set(args) != {"component", "value"} or not isinstance(component, str)
                or not isinstance(value, str) or not component or not value):  # fmt: skip
            raise ValueError(f"{command} takes component=value or --pattern=REGEX, got {args}")
        if options is not None:
            if component not in options:
                raise ValueError(f"{command}: {component!r} is not a component of the task's "
                                 f"grammar; its components are {list(options)}")  # fmt: skip
            texts = [option_text(o) for o in options[component]]
            if value not in texts:
                raise ValueError(f"{command}: {value!r} is not an option of {component}; its "
                                 f"options are {texts}")  # fmt: skip
        return {"component": component, "value": value}
    required, optional = _ARGUMENTS[command]
    if missing := required - set(args):
        raise ValueError(f"{command} needs {sorted(missing)}")
    if unknown := set(args) - required - optional:
        raise ValueError(f"{command} takes no {sorted(unknown)}")
    for key in required:
        if not isinstance(args[key], str) or not args[key].strip():
            raise ValueError(f"{command}: {key} must be a non-empty string")
        args[key] = args[key].strip()
    return args


def submit(workdir: str | Path, command: str, arguments: Mapping[str, Any], author: str,
           options: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:  # fmt: skip
    """Validates a command and drops it into the run's inbox (atomically: a reader never
    sees half a file); returns what was written."""
    if not author.strip():
        raise ValueError("the author must be named")
    payload = {"id": uuid.uuid4().hex[:8], "author": author.strip(), "created_at": time.time(),
               "command": command, "arguments": validate(command, arguments, options)}  # fmt: skip
    inbox = Path(workdir) / INBOX
    inbox.mkdir(parents=True, exist_ok=True)
    name = f"{time.time_ns():020d}-{payload['id']}.json"  # the inbox is read in name order
    tmp = inbox / f".{name}.tmp"
    tmp.write_text(json.dumps(payload, indent=1) + "\n")
    os.replace(tmp, inbox / name)
    return payload


def read(path: Path, options: Mapping[str, Sequence[Any]] | None = None) -> dict[str, Any]:
    """A command file's payload, checked; ValueError says what is wrong."""
    payload = envelope(path)
    return {**payload, "arguments": validate(payload["command"], payload["arguments"], options)}


def envelope(path: Path) -> dict[str, Any]:
    """A command file's id, author, time, command and arguments, their types checked (not
    yet the arguments); ValueError says what is wrong."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"not a JSON command: {e}") from e
    if not isinstance(payload, dict):
        raise ValueError("not a JSON object")
    if not isinstance(payload.get("id"), str) or not _ID.fullmatch(payload["id"]):
        raise ValueError(f"the id must be 1-64 letters, digits, '.', '_' or '-', got "
                         f"{payload.get('id')!r}")  # fmt: skip
    if not isinstance(payload.get("author"), str) or not payload["author"].strip():
        raise ValueError("no author")
    if not isinstance(payload.get("created_at"), (int, float)):
        raise ValueError("created_at must be a time in seconds since the epoch")
    if not isinstance(payload.get("arguments", {}), dict):
        raise ValueError("arguments must be an object")
    return {**payload, "command": str(payload.get("command")),
            "arguments": payload.get("arguments", {})}  # fmt: skip


def queued(workdir: str | Path) -> list[tuple[Path, dict[str, Any] | str]]:
    """The inbox's command files, oldest first, each with its payload or what is wrong."""
    inbox = Path(workdir) / INBOX
    out: list[tuple[Path, dict[str, Any] | str]] = []
    for path in sorted(inbox.glob("*.json")) if inbox.is_dir() else []:
        try:
            out.append((path, read(path)))
        except ValueError as e:
            out.append((path, str(e)))
    return out


def describe(command: str, arguments: Mapping[str, Any]) -> str:
    """One command in words, as steer.py's arguments would write it."""
    if "pattern" in arguments:
        return f"{command} --pattern={arguments['pattern']}"
    if "component" in arguments:
        return f"{command} {arguments['component']}={arguments['value']}"
    values = [str(v) for k, v in arguments.items() if k in ("text", "name", "id")]
    return " ".join([command, *values])


def effect(row: Mapping[str, Any]) -> str:
    """What a recorded command did, in words (steer.py list, the report)."""
    e = row["effect"]
    if "reason" in e:
        return f"rejected: {e['reason']}"
    parts = [e["did"]] if "did" in e else []
    if "seen" in e:
        proposed = [s["name"] for s in e["seen"] if s["outcome"] == "proposed"]
        parts.append(f"seen by {len(e['seen'])} proposal(s), {len(proposed)} proposed"
                     + (f": {', '.join(proposed)}" if proposed else ""))  # fmt: skip
    if "rejected" in e:
        parts.append(f"rejected {len(e['rejected'])} proposal(s)"
                     + (f": {', '.join(e['rejected'])}" if e["rejected"] else ""))  # fmt: skip
    if "withdrawn_by" in e:
        parts.append(f"withdrawn by #{e['withdrawn_by']}")
    return "; ".join(parts)


class Steering:
    """The run's steering, as recorded in the `steering` table, and the inbox's reader.
    Controller thread only: it writes the database."""

    def __init__(self, db: Database, workdir: Path, config: SteeringConfig,
                 options: Mapping[str, Sequence[Any]] | None,
                 log: Callable[[str], None]) -> None:  # fmt: skip
        self.db, self.workdir, self.config, self.options, self.log = (db, workdir, config,
                                                                       options, log)  # fmt: skip
        self.rows = {r["id"]: r for r in db.steering()}  # in the order they were applied

    # -- the state ---------------------------------------------------------------------------
    def _active(self, *commands: str) -> list[dict[str, Any]]:
        return [r for r in self.rows.values()
                if r["command"] in commands and r["status"] == "active"]  # fmt: skip

    def notes(self) -> list[Note]:
        """The ideas every proposal must consider now."""
        return [Note(r["id"], r["author"], r["arguments"]["text"]) for r in self._active("idea")]

    def rules(self) -> list[Rule]:
        """The bans and requirements in force."""
        return [Rule(r["id"], r["author"], r["command"], **r["arguments"])
                for r in self._active("ban", "require")]  # fmt: skip

    def paused(self) -> str | None:
        """Who paused the run, while it is paused."""
        last = [r for r in self.rows.values()
                if r["command"] in ("pause", "resume") and r["status"] == "applied"]  # fmt: skip
        return last[-1]["author"] if last and last[-1]["command"] == "pause" else None

    def verdict(self, name: str) -> str | None:
        """The last word on a candidate's promotion ("approve" or "veto"), if any."""
        last = [r["command"] for r in self.rows.values() if r["command"] in ("approve", "veto")
                and r["status"] == "applied" and r["arguments"]["name"] == name]  # fmt: skip
        return last[-1] if last else None

    # -- proposals ---------------------------------------------------------------------------
    def violation(self, name: str, design: Mapping[str, Any] | None, code: str) -> str | None:
        """Why a proposal breaks a ban or a requirement (recorded in the command's effect),
        or None. A component rule needs the proposal's design: without one, a ban cannot be
        broken and a requirement is missing."""
        for rule in self.rules():
            if rule.pattern is not None:
                present = re.search(rule.pattern, code, re.MULTILINE) is not None
            else:
                present = bool(design) and rule.component in design and (
                    option_text(design[rule.component]) == rule.value)  # fmt: skip
            if present == (rule.kind == "ban"):
                row = self.rows[rule.id]
                self._set(rule.id, row["status"], rejected=[*row["effect"].get("rejected", []),
                                                            name])  # fmt: skip
                broken = "present" if rule.kind == "ban" else "missing"
                return (f"steering {rule.kind} #{rule.id} by {rule.author}: "
                        f"{rule.describe()} ({broken})")  # fmt: skip
        return None

    def saw(self, notes: Sequence[Note], proposal: int, name: str, outcome: str) -> None:
        """Records that proposal number `proposal` (`name`; `outcome`: "proposed" or why it
        was rejected) was made with `notes` in its context. An idea expires once
        `idea_proposals` candidates were proposed with it (rejected proposals do not count)."""
        for note in notes:
            row = self.rows.get(note.id)
            if row is None:
                continue
            seen = [*row["effect"].get("seen", []),
                    {"proposal": proposal, "name": name, "outcome": outcome}]  # fmt: skip
            proposed = sum(s["outcome"] == "proposed" for s in seen)
            limit, status = self.config.idea_proposals, row["status"]
            if status == "active" and limit and proposed >= limit:
                status = "expired"
                self.log(f"steering: idea #{note.id} expired after {proposed} candidates")
            self._set(note.id, status, seen=seen)

    def _set(self, id: str, status: str, **effect: Any) -> None:
        row = self.rows[id]
        row.update(status=status, effect={**row["effect"], **effect})
        self.db.set_steering(id, status, row["effect"])

    # -- the inbox ---------------------------------------------------------------------------
    def ingest(self, running: Collection[int] = ()) -> None:
        """Applies and records every command in the inbox, oldest first; `running`: the ids
        of the candidates being evaluated now (a veto cannot stop those)."""
        inbox = self.workdir / INBOX
        for path in sorted(inbox.glob("*.json")) if inbox.is_dir() else []:
            try:
                payload = envelope(path)
            except ValueError as e:
                self._reject(path, None, str(e))
                continue
            if payload["id"] in self.rows:  # recorded before a kill stopped the move
                self._move(path, DONE)
                continue
            try:
                payload["arguments"] = validate(payload["command"], payload["arguments"],
                                                self.options)  # fmt: skip
                status, effect = self._apply(payload, running)
            except ValueError as e:
                self._reject(path, payload, str(e))
                continue
            self._record(payload, status, effect)
            self._move(path, DONE)
            what = describe(payload["command"], payload["arguments"])
            self.log(f"steering: #{payload['id']} {what} (by {payload['author']}): "
                     + (effect.get("did") or status))  # fmt: skip

    def _apply(self, payload: dict[str, Any], running: Collection[int]
               ) -> tuple[str, dict[str, Any]]:  # fmt: skip
        """(status, effect) of a valid command; ValueError when it cannot apply."""
        command, args = payload["command"], payload["arguments"]
        if command == "idea":
            return "active", {"seen": []}
        if command in ("ban", "require"):
            return "active", {"rejected": []}
        if command == "pause":
            return "applied", {"did": "paused: no new proposal or evaluation starts, the "
                               "running ones finish (steer.py resume continues)"}  # fmt: skip
        if command == "resume":
            return "applied", {"did": "resumed" if self.paused() else "was not paused"}
        if command == "withdraw":
            target = self.rows.get(args["id"])
            if target is None or target["status"] != "active":
                raise ValueError(f"no active idea, ban or requirement #{args['id']}")
            self._set(args["id"], "withdrawn", withdrawn_by=payload["id"])
            return "applied", {"did": f"withdrew #{args['id']} ({target['command']})"}
        return "applied", {"did": self._verdict(command, args["name"], running)}

    def _verdict(self, command: str, name: str, running: Collection[int]) -> str:
        """What an approval or a veto of `name` does now (a veto of a promoted candidate
        whose verification has not started removes it)."""
        candidate = self.db.candidate_by_name(name)
        if candidate is None:
            raise ValueError(f"no candidate named {name!r}")
        if candidate["kind"] != "candidate":
            raise ValueError(f"{name} is a {candidate['kind']}; baselines and ablations are "
                             "always verified")  # fmt: skip
        status = self.db.status(candidate["id"], "verify")
        if status is None:
            if self.db.get_meta("verify_promoted") is not None:
                return "none: it was not promoted"
            return ("kept out of promotion" if command == "veto"
                    else "approved for verification, once promoted")  # fmt: skip
        if status != "pending" or candidate["id"] in running:
            return f"none: its verification is {status if status != 'pending' else 'running'}"
        if command == "approve":
            return "approved: its verification may start"
        for stage in state.seed_stages(self.db, "verify"):  # every seed's evaluation
            self.db.drop_pending(candidate["id"], stage)
        return "removed from verification before it started"

    def _record(self, payload: dict[str, Any], status: str, effect: dict[str, Any]) -> None:
        self.db.add_steering(payload["id"], payload["author"], payload["command"],
                             payload["arguments"], float(payload["created_at"]), status,
                             effect)  # fmt: skip
        self.rows = {r["id"]: r for r in self.db.steering()}

    def _reject(self, path: Path, payload: dict[str, Any] | None, reason: str) -> None:
        """Records a command that cannot apply, moves its file to `rejected/` beside the
        reason, and logs it."""
        if payload is None:
            payload = {"id": path.stem, "author": "unknown", "command": "malformed",
                       "arguments": {"file": path.name},
                       "created_at": path.stat().st_mtime}  # fmt: skip
        if payload["id"] not in self.rows:
            self._record(payload, "rejected", {"reason": reason})
        self._move(path, REJECTED)
        (self.workdir / REJECTED / f"{path.name}.reason").write_text(reason + "\n")
        self.log(f"steering: rejected {path.name}: {reason}")

    def _move(self, path: Path, folder: str) -> None:
        (self.workdir / folder).mkdir(parents=True, exist_ok=True)
        os.replace(path, self.workdir / folder / path.name)
