"""The run's state in SQLite: one file in the workdir, one writer (the controller).

Write-ahead logging keeps readers (a report, a notebook) from blocking the controller and
makes each committed transaction survive a kill. The schema is versioned with
`PRAGMA user_version`; `MIGRATIONS[i]` takes a database from version i to i + 1, and opening
an older file upgrades it in place. A file from a newer asi-jax is refused, not guessed at.

Tables: candidates (the design, where its ideas came from, the island it was proposed on),
evaluations (one per candidate and stage: status, metrics, figures), attempts (every
engineer attempt with its error), scores (fitness and its terms by name), analyses, lessons,
judgements, rejections (novelty and policy rejections before any compute), timings,
island_members (who belongs to which island, and how it got there), calls (every request to
a language model), bandit (the researcher's model per proposal, and its reward), steering
(the human's commands and what each did), and an embedding cache.
All SQL of the evolution lives here.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

MIGRATIONS: tuple[str, ...] = (
    # 0 -> 1: the evolution state.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE candidates (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        generation INTEGER NOT NULL,
        round INTEGER,
        parent_id INTEGER REFERENCES candidates(id),
        reference_ids TEXT NOT NULL DEFAULT '[]',
        kind TEXT NOT NULL,                 -- baseline | candidate
        researcher TEXT NOT NULL,           -- who proposed it, e.g. offline-grammar
        motivation TEXT NOT NULL,
        code TEXT NOT NULL,
        code_hash TEXT NOT NULL,
        design TEXT,                        -- JSON, when the proposer has a structured design
        idea_origins TEXT NOT NULL DEFAULT '[]',  -- JSON: [{idea, origin, evidence}]
        created_at REAL NOT NULL
    );
    CREATE TABLE evaluations (
        candidate_id INTEGER NOT NULL REFERENCES candidates(id),
        stage TEXT NOT NULL,                -- explore | verify
        status TEXT NOT NULL,               -- pending | evaluated | failed
        failure_stage TEXT,
        failure_reason TEXT,
        loss REAL,
        benchmark REAL,
        params INTEGER,
        metrics TEXT,                       -- JSON: the training result
        check_report TEXT,                  -- JSON: the checker's figures
        compute_seconds REAL,
        started_at REAL,
        finished_at REAL,
        PRIMARY KEY (candidate_id, stage)
    );
    CREATE TABLE attempts (
        candidate_id INTEGER NOT NULL REFERENCES candidates(id),
        stage TEXT NOT NULL,
        number INTEGER NOT NULL,
        code_hash TEXT NOT NULL,
        ok INTEGER NOT NULL,
        failed_stage TEXT,
        reason TEXT,
        seconds REAL NOT NULL,
        PRIMARY KEY (candidate_id, stage, number)
    );
    CREATE TABLE scores (
        candidate_id INTEGER NOT NULL REFERENCES candidates(id),
        stage TEXT NOT NULL,
        fitness REAL NOT NULL,
        loss_term REAL NOT NULL,
        benchmark_term REAL NOT NULL,
        judge_term REAL NOT NULL,
        PRIMARY KEY (candidate_id, stage)
    );
    CREATE TABLE analyses (
        candidate_id INTEGER NOT NULL REFERENCES candidates(id),
        stage TEXT NOT NULL,
        analyser TEXT NOT NULL,
        report TEXT NOT NULL,
        problem_summary TEXT NOT NULL,
        PRIMARY KEY (candidate_id, stage)
    );
    CREATE TABLE lessons (
        id INTEGER PRIMARY KEY,
        candidate_id INTEGER NOT NULL REFERENCES candidates(id),
        text TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE judgements (
        candidate_id INTEGER NOT NULL REFERENCES candidates(id),
        judge TEXT NOT NULL,
        score REAL NOT NULL,                -- 1-10
        rationale TEXT NOT NULL,
        PRIMARY KEY (candidate_id, judge)
    );
    CREATE TABLE rejections (
        id INTEGER PRIMARY KEY,
        round INTEGER NOT NULL,
        name TEXT NOT NULL,
        reason TEXT NOT NULL,
        motivation TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE timings (
        candidate_id INTEGER REFERENCES candidates(id),
        phase TEXT NOT NULL,
        seconds REAL NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    # 1 -> 2: cache embeddings, so a resumed run (or a paid embedder) does not recompute them.
    """
    CREATE TABLE embeddings (
        embedder TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (embedder, text_hash)
    );
    CREATE INDEX evaluations_by_stage ON evaluations(stage, status);
    """,
    # 2 -> 3: islands, and fitness terms by name (a new term needs no new column).
    """
    ALTER TABLE candidates ADD COLUMN island INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE scores ADD COLUMN terms TEXT;
    CREATE TABLE island_members (
        island INTEGER NOT NULL,
        candidate_id INTEGER NOT NULL REFERENCES candidates(id),
        joined_at_round INTEGER NOT NULL,   -- candidates proposed when it joined
        via TEXT NOT NULL,                  -- proposed | baseline | migration
        PRIMARY KEY (island, candidate_id)
    );
    INSERT INTO island_members SELECT 0, id, 0,
        CASE kind WHEN 'baseline' THEN 'baseline' ELSE 'proposed' END FROM candidates;
    """,
    # 3 -> 4: every request to a language model (the audit trail `scripts/replay.py` replays),
    # and how each candidate was proposed (edit mode, the second parent of a crossover).
    """
    CREATE TABLE calls (
        id INTEGER PRIMARY KEY,
        call_id TEXT NOT NULL,           -- shared by the requests of one ask
        role TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        system TEXT NOT NULL,
        prompt TEXT NOT NULL,
        reply TEXT NOT NULL,
        tokens_in INTEGER NOT NULL,
        tokens_out INTEGER NOT NULL,
        latency_seconds REAL NOT NULL,
        cost_usd REAL NOT NULL,
        error TEXT,                      -- NULL: the reply was used
        attempt INTEGER NOT NULL,
        structured INTEGER NOT NULL,
        started_at REAL NOT NULL
    );
    ALTER TABLE candidates ADD COLUMN edit_mode TEXT;
    ALTER TABLE candidates ADD COLUMN second_parent_id INTEGER REFERENCES candidates(id);
    """,
    # 4 -> 5: the researcher's model chosen per proposal and its reward (asi_jax.evolution.
    # bandit, whose state is recomputed from these rows on resume), and who summarised each
    # analysis into its problem summary.
    """
    CREATE TABLE bandit (
        id INTEGER PRIMARY KEY,
        proposal INTEGER NOT NULL,       -- proposals tried before it (seeds its choice)
        arm TEXT NOT NULL,               -- the researcher's endpoint name
        researcher TEXT NOT NULL,        -- e.g. llm-researcher:openai:Qwen/Qwen3-32B
        candidate_id INTEGER REFERENCES candidates(id),  -- NULL: rejected or unanswered
        outcome TEXT NOT NULL,           -- pending | scored | failed | rejected | unanswered
        cost_usd REAL NOT NULL,          -- its researcher calls
        reward REAL,                     -- NULL while pending
        chosen_at REAL NOT NULL,
        rewarded_at REAL
    );
    ALTER TABLE analyses ADD COLUMN summariser TEXT;
    """,
    # 5 -> 6: every human steering command (scripts/steer.py; asi_jax.evolution.steering),
    # as the controller applied it, and what it did.
    """
    CREATE TABLE steering (
        id TEXT PRIMARY KEY,             -- the command's id (steer.py's, or its file's name)
        author TEXT NOT NULL,
        command TEXT NOT NULL,           -- idea | ban | require | pause | resume | approve |
                                         -- veto | withdraw | malformed
        arguments TEXT NOT NULL,         -- JSON
        created_at REAL NOT NULL,        -- when steer.py wrote it
        applied_at REAL NOT NULL,        -- when the controller read it
        status TEXT NOT NULL,            -- active | expired | withdrawn | applied | rejected
        effect TEXT NOT NULL             -- JSON: what it did (proposals that saw an idea, ...)
    );
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
DATABASE = "evolution.sqlite"  # the file's name in a run's workdir
_JSON_COLUMNS = ("reference_ids", "design", "idea_origins", "metrics", "check_report", "terms",
                 "arguments", "effect")  # fmt: skip


class SchemaError(RuntimeError):
    pass


def migrate(connection: sqlite3.Connection, target: int | None = None) -> int:
    """Applies the migrations after the file's version up to `target` (default: the latest);
    returns the version."""
    target = SCHEMA_VERSION if target is None else target
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {version}, newer than this asi-jax's "
            f"{SCHEMA_VERSION}; upgrade asi-jax to open it"
        )
    for number in range(version, target):
        with connection:  # each migration commits as a whole or not at all
            connection.executescript(f"BEGIN; {MIGRATIONS[number]} PRAGMA user_version = "
                                     f"{number + 1}; COMMIT;")  # fmt: skip
    return max(version, target)


def _row(cursor: sqlite3.Cursor, values: tuple) -> dict[str, Any]:
    row = {d[0]: v for d, v in zip(cursor.description, values, strict=True)}
    for column in _JSON_COLUMNS:
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row


class Database:
    """Thin, explicit access to the evolution state. Every write commits immediately."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.connection = sqlite3.connect(self.path, isolation_level=None)
        self.connection.execute("PRAGMA journal_mode = WAL")
        self.connection.execute("PRAGMA foreign_keys = ON")
        self.connection.execute("PRAGMA synchronous = NORMAL")
        migrate(self.connection)
        self.connection.row_factory = _row

    def close(self) -> None:
        self.connection.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.connection.execute("BEGIN IMMEDIATE")
        try:
            yield self.connection
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise
        self.connection.execute("COMMIT")

    def query(self, sql: str, *args) -> list[dict[str, Any]]:
        return self.connection.execute(sql, args).fetchall()

    # meta -------------------------------------------------------------------------------
    def get_meta(self, key: str) -> Any:
        rows = self.query("SELECT value FROM meta WHERE key = ?", key)
        return json.loads(rows[0]["value"]) if rows else None

    def set_meta(self, key: str, value: Any) -> None:
        self.connection.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                (key, json.dumps(value)))  # fmt: skip

    # candidates ---------------------------------------------------------------------------
    def add_candidate(
        self,
        *,
        name: str,
        generation: int,
        kind: str,
        researcher: str,
        motivation: str,
        code: str,
        code_hash: str,
        round: int | None = None,
        parent_id: int | None = None,
        reference_ids: list[int] = (),
        design: dict | None = None,
        idea_origins: list[dict] = (),
        island: int = 0,
        edit_mode: str | None = None,
        second_parent_id: int | None = None,
    ) -> int:
        cursor = self.connection.execute(
            "INSERT INTO candidates (name, generation, round, parent_id, reference_ids, kind, "
            "researcher, motivation, code, code_hash, design, idea_origins, created_at, island, "
            "edit_mode, second_parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (name, generation, round, parent_id, json.dumps(list(reference_ids)), kind,
             researcher, motivation, code, code_hash,
             None if design is None else json.dumps(design), json.dumps(list(idea_origins)),
             time.time(), island, edit_mode, second_parent_id),
        )  # fmt: skip
        return int(cursor.lastrowid)

    def replace_code(self, candidate_id: int, code: str, code_hash: str,
                     design: dict | None) -> None:  # fmt: skip
        """A revision the engineer accepted replaces the proposed source."""
        self.connection.execute(
            "UPDATE candidates SET code = ?, code_hash = ?, design = ? WHERE id = ?",
            (code, code_hash, None if design is None else json.dumps(design), candidate_id),
        )

    def count_candidates(self, kind: str) -> int:
        return int(self.query("SELECT COUNT(*) AS n FROM candidates WHERE kind = ?", kind)[0]["n"])

    def proposals_tried(self) -> int:
        """Candidates stored plus proposals rejected: the number of every proposal so far."""
        return int(self.query("SELECT (SELECT COUNT(*) FROM candidates) + "
                              "(SELECT COUNT(*) FROM rejections) AS n")[0]["n"])  # fmt: skip

    def rejection_count(self) -> int:
        return int(self.query("SELECT COUNT(*) AS n FROM rejections")[0]["n"])

    def candidate(self, candidate_id: int) -> dict[str, Any]:
        rows = self.query("SELECT * FROM candidates WHERE id = ?", candidate_id)
        if not rows:
            raise KeyError(f"no candidate {candidate_id}")
        return rows[0]

    def candidate_by_name(self, name: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM candidates WHERE name = ?", name)
        return rows[0] if rows else None

    def candidates(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM candidates ORDER BY id")

    # evaluations -----------------------------------------------------------------------
    def start_evaluation(self, candidate_id: int, stage: str) -> None:
        self.connection.execute(
            "INSERT OR REPLACE INTO evaluations (candidate_id, stage, status, started_at) "
            "VALUES (?, ?, 'pending', ?)", (candidate_id, stage, time.time()))  # fmt: skip

    def finish_evaluation(
        self,
        candidate_id: int,
        stage: str,
        *,
        ok: bool,
        failure_stage: str | None,
        failure_reason: str | None,
        loss: float | None,
        benchmark: float | None,
        params: int | None,
        metrics: dict | None,
        check_report: dict | None,
        compute_seconds: float,
        attempts: list[dict],
    ) -> None:
        """Records the outcome and every attempt in one transaction."""
        with self.transaction() as c:
            c.execute("DELETE FROM attempts WHERE candidate_id = ? AND stage = ?",
                      (candidate_id, stage))  # fmt: skip
            for a in attempts:
                c.execute(
                    "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (candidate_id, stage, a["number"], a["code_hash"], int(a["ok"]),
                     a["stage"], a["reason"], a["seconds"]),
                )  # fmt: skip
            c.execute(
                "UPDATE evaluations SET status = ?, failure_stage = ?, failure_reason = ?, "
                "loss = ?, benchmark = ?, params = ?, metrics = ?, check_report = ?, "
                "compute_seconds = ?, finished_at = ? WHERE candidate_id = ? AND stage = ?",
                ("evaluated" if ok else "failed", failure_stage, failure_reason, loss,
                 benchmark, params, json.dumps(metrics), json.dumps(check_report),
                 compute_seconds, time.time(), candidate_id, stage),
            )  # fmt: skip

    def status(self, candidate_id: int, stage: str) -> str | None:
        """pending / evaluated / failed, or None when the candidate has no such evaluation."""
        rows = self.query("SELECT status FROM evaluations WHERE candidate_id = ? AND stage = ?",
                          candidate_id, stage)  # fmt: skip
        return rows[0]["status"] if rows else None

    def requeue(self, candidate_id: int, stage: str) -> None:
        """Back to pending, its score dropped (a reference baseline that failed before)."""
        with self.transaction() as c:
            c.execute("DELETE FROM scores WHERE candidate_id = ? AND stage = ?",
                      (candidate_id, stage))  # fmt: skip
            self.start_evaluation(candidate_id, stage)

    def drop_pending(self, candidate_id: int, stage: str) -> None:
        """Removes a pending evaluation that is not to run (a vetoed promotion)."""
        self.connection.execute("DELETE FROM evaluations WHERE candidate_id = ? AND stage = ? "
                                "AND status = 'pending'", (candidate_id, stage))  # fmt: skip

    def pending(self, stage: str) -> list[dict[str, Any]]:
        """The candidates whose evaluation in `stage` is pending, by id."""
        return self.query("SELECT c.* FROM evaluations e JOIN candidates c ON c.id = "
                          "e.candidate_id WHERE e.stage = ? AND e.status = 'pending' "
                          "ORDER BY c.id", stage)  # fmt: skip

    def compute_seconds(self) -> float:
        rows = self.query("SELECT COALESCE(SUM(compute_seconds), 0) AS s FROM evaluations")
        return float(rows[0]["s"])

    def evaluations(self, stage: str, status: str | None = None) -> list[dict[str, Any]]:
        """Evaluations of `stage` joined with their candidates and scores, by candidate id."""
        sql = (
            "SELECT c.*, e.stage, e.status, e.failure_stage, e.failure_reason, e.loss, "
            "e.benchmark, e.params, e.metrics, e.check_report, e.compute_seconds, "
            "s.fitness, s.loss_term, s.benchmark_term, s.judge_term, s.terms "
            "FROM evaluations e JOIN candidates c ON c.id = e.candidate_id "
            "LEFT JOIN scores s ON s.candidate_id = e.candidate_id AND s.stage = e.stage "
            "WHERE e.stage = ?"
        )
        args: list[Any] = [stage]
        if status is not None:
            sql += " AND e.status = ?"
            args.append(status)
        return self.query(sql + " ORDER BY c.id", *args)

    # everything else ----------------------------------------------------------------------
    def set_score(self, candidate_id: int, stage: str, fitness: float,
                  terms: dict[str, float]) -> None:  # fmt: skip
        """The fitness and its terms by name (loss, benchmark and judge also in columns of
        their own, which earlier versions read)."""
        self.connection.execute(
            "INSERT OR REPLACE INTO scores (candidate_id, stage, fitness, loss_term, "
            "benchmark_term, judge_term, terms) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (candidate_id, stage, fitness, terms.get("loss", 0.0),
             terms.get("benchmark", 0.0), terms.get("judge", 0.0), json.dumps(terms)),
        )  # fmt: skip

    # islands ----------------------------------------------------------------------------
    def add_member(self, island: int, candidate_id: int, round: int, via: str) -> bool:
        """Adds the candidate to the island; False when it was a member already."""
        cursor = self.connection.execute(
            "INSERT OR IGNORE INTO island_members VALUES (?, ?, ?, ?)",
            (island, candidate_id, round, via),
        )
        return cursor.rowcount > 0

    def members(self, island: int) -> set[int]:
        rows = self.query("SELECT candidate_id FROM island_members WHERE island = ?", island)
        return {r["candidate_id"] for r in rows}

    def migrations(self) -> list[dict[str, Any]]:
        """Every migration: the candidate, the island it joined, and when."""
        return self.query("SELECT m.island, m.candidate_id, c.name, c.island AS origin, "
                          "m.joined_at_round FROM island_members m JOIN candidates c ON "
                          "c.id = m.candidate_id WHERE m.via = 'migration' "
                          "ORDER BY m.joined_at_round, m.island, c.id")  # fmt: skip

    def add_analysis(self, candidate_id: int, stage: str, analyser: str, report: str,
                     problem_summary: str, lesson: str | None,
                     summariser: str | None = None) -> None:  # fmt: skip
        with self.transaction() as c:
            c.execute("INSERT OR REPLACE INTO analyses (candidate_id, stage, analyser, report, "
                      "problem_summary, summariser) VALUES (?, ?, ?, ?, ?, ?)",
                      (candidate_id, stage, analyser, report, problem_summary,
                       summariser))  # fmt: skip
            if lesson:
                c.execute("INSERT INTO lessons (candidate_id, text, created_at) VALUES (?, ?, ?)",
                          (candidate_id, lesson, time.time()))  # fmt: skip

    def analysis(self, candidate_id: int, stage: str) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM analyses WHERE candidate_id = ? AND stage = ?",
                          candidate_id, stage)  # fmt: skip
        return rows[0] if rows else None

    def lessons(self, limit: int = 20) -> list[str]:
        rows = self.query("SELECT text FROM lessons ORDER BY id DESC LIMIT ?", limit)
        return [r["text"] for r in rows]

    def set_judgement(self, candidate_id: int, judge: str, score: float, rationale: str) -> None:
        self.connection.execute("INSERT OR REPLACE INTO judgements VALUES (?, ?, ?, ?)",
                                (candidate_id, judge, score, rationale))  # fmt: skip

    def judgement(self, candidate_id: int) -> dict[str, Any] | None:
        rows = self.query("SELECT * FROM judgements WHERE candidate_id = ?", candidate_id)
        return rows[0] if rows else None

    def add_rejection(self, round: int, name: str, reason: str, motivation: str) -> None:
        self.connection.execute(
            "INSERT INTO rejections (round, name, reason, motivation, created_at) "
            "VALUES (?, ?, ?, ?, ?)", (round, name, reason, motivation, time.time()))  # fmt: skip

    def analysed(self, stage: str) -> set[int]:
        rows = self.query("SELECT candidate_id FROM analyses WHERE stage = ?", stage)
        return {r["candidate_id"] for r in rows}

    def add_timing(self, candidate_id: int | None, phase: str, seconds: float) -> None:
        self.connection.execute("INSERT INTO timings VALUES (?, ?, ?, ?)",
                                (candidate_id, phase, seconds, time.time()))  # fmt: skip

    # language-model calls ----------------------------------------------------------------
    def add_calls(self, records: Sequence[Any]) -> None:
        """Stores `CallRecord`s (asi_jax.agents.llm) as they came."""
        self.connection.executemany(
            "INSERT INTO calls (call_id, role, provider, model, system, prompt, reply, "
            "tokens_in, tokens_out, latency_seconds, cost_usd, error, attempt, structured, "
            "started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.call_id, r.role, r.provider, r.model, r.system, r.prompt, r.reply,
              r.tokens_in, r.tokens_out, r.latency_seconds, r.cost_usd, r.error, r.attempt,
              int(r.structured), r.started_at) for r in records],
        )  # fmt: skip

    def calls(self) -> list[dict[str, Any]]:
        return self.query("SELECT * FROM calls ORDER BY id")

    def call_totals(self) -> list[dict[str, Any]]:
        """Requests, tokens, dollars and failed requests per (role, model)."""
        return self.query(
            "SELECT role, provider, model, COUNT(*) AS requests, SUM(tokens_in) AS tokens_in, "
            "SUM(tokens_out) AS tokens_out, SUM(cost_usd) AS cost_usd, "
            "SUM(error IS NOT NULL) AS failed FROM calls GROUP BY role, provider, model "
            "ORDER BY role, model")  # fmt: skip

    def cost_usd(self) -> float:
        return float(self.query("SELECT COALESCE(SUM(cost_usd), 0) AS c FROM calls")[0]["c"])

    # the researcher's bandit ---------------------------------------------------------------
    def add_pull(self, proposal: int, arm: str, researcher: str, candidate_id: int | None,
                 outcome: str, cost_usd: float, reward: float | None) -> None:  # fmt: skip
        now = time.time()
        self.connection.execute(
            "INSERT INTO bandit (proposal, arm, researcher, candidate_id, outcome, cost_usd, "
            "reward, chosen_at, rewarded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (proposal, arm, researcher, candidate_id, outcome, cost_usd, reward, now,
             None if reward is None else now),
        )  # fmt: skip

    def set_reward(self, pull_id: int, outcome: str, reward: float) -> None:
        self.connection.execute(
            "UPDATE bandit SET outcome = ?, reward = ?, rewarded_at = ? WHERE id = ?",
            (outcome, reward, time.time(), pull_id),
        )

    def pulls(self, outcome: str | None = None) -> list[dict[str, Any]]:
        if outcome is None:
            return self.query("SELECT * FROM bandit ORDER BY id")
        return self.query("SELECT * FROM bandit WHERE outcome = ? ORDER BY id", outcome)

    def cached_embedding(self, embedder: str, text_hash: str) -> bytes | None:
        rows = self.query("SELECT vector FROM embeddings WHERE embedder = ? AND text_hash = ?",
                          embedder, text_hash)  # fmt: skip
        return rows[0]["vector"] if rows else None

    def cache_embedding(self, embedder: str, text_hash: str, vector: bytes) -> None:
        self.connection.execute("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                                (embedder, text_hash, vector))  # fmt: skip

    # human steering (asi_jax.evolution.steering) ------------------------------------------
    def add_steering(self, id: str, author: str, command: str, arguments: dict,
                     created_at: float, status: str, effect: dict) -> None:  # fmt: skip
        self.connection.execute(
            "INSERT INTO steering VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (id, author, command, json.dumps(arguments), created_at, time.time(), status,
             json.dumps(effect)),
        )  # fmt: skip

    def set_steering(self, id: str, status: str, effect: dict) -> None:
        self.connection.execute("UPDATE steering SET status = ?, effect = ? WHERE id = ?",
                                (status, json.dumps(effect), id))  # fmt: skip

    def steering(self) -> list[dict[str, Any]]:
        """Every steering command, in the order the controller applied them."""
        return self.query("SELECT * FROM steering ORDER BY applied_at, rowid")
