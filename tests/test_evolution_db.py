"""The evolution database: migrations, WAL, and what survives reopening."""

import sqlite3

import pytest

from asi_jax.evolution.db import MIGRATIONS, SCHEMA_VERSION, Database, SchemaError, migrate


def _add(db: Database, name: str) -> int:
    return db.add_candidate(
        name=name,
        generation=0,
        kind="baseline",
        researcher="baseline",
        motivation=f"m {name}",
        code="code",
        code_hash="h",
    )


def test_new_database_is_at_the_latest_schema_in_wal_mode(tmp_path):
    db = Database(tmp_path / "e.sqlite")
    assert db.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION == len(MIGRATIONS)
    assert db.query("PRAGMA journal_mode")[0]["journal_mode"] == "wal"


def test_old_database_is_migrated_in_place_keeping_its_rows(tmp_path):
    path = tmp_path / "e.sqlite"
    connection = sqlite3.connect(path, isolation_level=None)
    assert migrate(connection, target=1) == 1
    connection.execute(
        "INSERT INTO candidates (name, generation, kind, researcher, motivation, code, "
        "code_hash, created_at) VALUES ('old', 0, 'baseline', 'baseline', 'm', 'c', 'h', 0)"
    )
    connection.close()
    db = Database(path)  # upgrades 1 -> latest
    assert db.query("PRAGMA user_version")[0]["user_version"] == SCHEMA_VERSION
    assert db.candidate_by_name("old")["code"] == "c"
    assert db.candidate_by_name("old")["island"] == 0  # a single population: island 0
    assert db.members(0) == {db.candidate_by_name("old")["id"]}
    db.cache_embedding("e", "t", b"\x00\x01")  # a table from a later migration
    assert db.cached_embedding("e", "t") == b"\x00\x01"


def test_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "e.sqlite"
    Database(path).connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer than this asi-jax"):
        Database(path)


def test_failed_migration_leaves_the_file_at_the_last_good_version(tmp_path, monkeypatch):
    import asi_jax.evolution.db as db_module

    path = tmp_path / "e.sqlite"
    Database(path).close()
    broken = (*MIGRATIONS, "CREATE TABLE extra (x); CREATE TABLE extra (x);")
    monkeypatch.setattr(db_module, "MIGRATIONS", broken)
    monkeypatch.setattr(db_module, "SCHEMA_VERSION", len(broken))
    with pytest.raises(sqlite3.OperationalError):
        Database(path)
    connection = sqlite3.connect(path)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    tables = {r[0] for r in connection.execute("SELECT name FROM sqlite_master")}
    assert "extra" not in tables


def test_evaluations_attempts_scores_and_reopen(tmp_path):
    db = Database(tmp_path / "e.sqlite")
    a = _add(db, "a")
    db.start_evaluation(a, "explore")
    assert db.evaluations("explore", "pending")[0]["name"] == "a"
    attempt = {
        "number": 1,
        "code_hash": "h",
        "ok": True,
        "stage": None,
        "reason": None,
        "seconds": 2.5,
    }
    db.finish_evaluation(
        a,
        "explore",
        ok=True,
        failure_stage=None,
        failure_reason=None,
        loss=1.5,
        benchmark=0.4,
        params=100,
        metrics={"eval": {}},
        check_report={"ok": True},
        compute_seconds=2.5,
        attempts=[attempt],
    )
    db.set_score(a, "explore", 1.7, {"loss": 0.5, "benchmark": 0.5, "judge": 0.7, "speed": 0.1})
    db.add_analysis(a, "explore", "offline", "report", "summary", "lesson one")
    db.close()
    db = Database(tmp_path / "e.sqlite")
    (row,) = db.evaluations("explore", "evaluated")
    assert (row["loss"], row["fitness"], row["metrics"]) == (1.5, 1.7, {"eval": {}})
    assert row["terms"]["speed"] == 0.1 and row["judge_term"] == 0.7  # a new term: no column
    assert db.query("SELECT seconds FROM attempts")[0]["seconds"] == 2.5
    assert db.lessons() == ["lesson one"]
    assert db.analysis(a, "explore")["problem_summary"] == "summary"
    with pytest.raises(sqlite3.IntegrityError):
        _add(db, "a")  # names are unique
