"""The run report: the analyses' numbers on a database built by hand, the page on a real run
of the controller (sandbox stubbed, seconds): it parses, shows every candidate, escapes
untrusted text, reads while the controller writes; scripts/report.py end to end, --watch's
self-reloading page, and Debian's chromium, headless: no console errors, the leaderboard
shown, a small screenshot (skipped where chromium is absent, except in CI)."""

from __future__ import annotations

import base64
import fcntl
import html.parser
import io
import json
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from test_evolution_control import StubWorker, _config

from asi_jax.candidates import engineer
from asi_jax.evolution import analyses, report
from asi_jax.evolution.controller import DATABASE, Controller
from asi_jax.evolution.db import Database, SchemaError
from asi_jax.report import page, source

ROOT = Path(__file__).resolve().parents[1]
EVIL = "<script>alert(1)</script>"
EVIL_ATTR = '"><img src=x onerror=alert(1)>'


# -- a database by hand: exact numbers ---------------------------------------------------------
def _add(db, name, *, kind="candidate", parent=None, design=None, origins=(), mode=None,
         second=None, q=1.0, judge=0.0, seconds=1.0, ok=True):  # fmt: skip
    cid = db.add_candidate(name=name, generation=0 if kind == "baseline" else 1, kind=kind,
                           researcher="test", motivation=f"why {name}", code=f"# {name}\n",
                           code_hash=name, parent_id=parent, design=design,
                           idea_origins=[{"idea": "i", "origin": o, "evidence": ""}
                                         for o in origins],
                           edit_mode=mode, second_parent_id=second)  # fmt: skip
    db.start_evaluation(cid, "explore")
    db.finish_evaluation(cid, "explore", ok=ok, failure_stage=None if ok else "train",
                         failure_reason=None if ok else "boom", loss=1.0, benchmark=0.5,
                         params=10, metrics={}, check_report={}, compute_seconds=seconds,
                         attempts=[])  # fmt: skip
    if ok:
        terms = {"loss": q / 2, "benchmark": q / 2, "judge": judge}
        db.set_score(cid, "explore", sum(terms.values()), terms)
    time.sleep(0.002)  # distinct finishing times
    return cid


@pytest.fixture
def hand_db(tmp_path):
    """ref (q 1.0); a wins (q 1.2); b loses on the quantitative terms though its judge term
    gives it the best fitness; c is free-form code and wins; d, a crossover of a and b,
    wins; e failed."""
    db = Database(tmp_path / "hand.sqlite")
    db.set_meta("config", {"reference_baseline": "ref"})
    ref = _add(db, "ref", kind="baseline", design={"rule": "delta", "gate": "none"},
               seconds=10)  # fmt: skip
    a = _add(db, "a", parent=ref, design={"rule": "delta", "gate": "sigmoid"},
             origins=("cognition", "analysis"), mode="full", q=1.2, seconds=20)  # fmt: skip
    b = _add(db, "b", parent=ref, design={"rule": "additive", "gate": "sigmoid"},
             origins=("original",), mode="diff", q=0.8, judge=5.0, seconds=30)  # fmt: skip
    _add(db, "c", parent=a, origins=("analysis",), mode="diff", q=1.5, seconds=40)
    _add(db, "d", parent=a, second=b, design={"rule": "delta", "gate": "none"},
         mode="crossover", q=1.1, seconds=50)  # fmt: skip
    _add(db, "e", parent=b, design={"rule": "additive", "gate": "none"}, origins=("original",),
         mode="full", seconds=5, ok=False)  # fmt: skip
    yield db
    db.close()


def test_least_squares_recovers_a_line_and_needs_two_distinct_points():
    fit = analyses.least_squares([0.0, 1.0, 2.0, 3.0], [1.0, 3.0, 5.0, 7.0])
    assert fit == analyses.Fit(pytest.approx(2.0), pytest.approx(1.0), pytest.approx(1.0))
    assert analyses.least_squares([1.0], [1.0]) is None
    assert analyses.least_squares([2.0, 2.0], [1.0, 3.0]) is None


def test_winners_follow_the_leaderboards_quantitative_rule(hand_db):
    assert analyses.winners(hand_db) == ["a", "c", "d"]  # b's judge term does not lift it
    rows = analyses.stage_rows(hand_db, "explore")
    assert max(rows, key=lambda r: r["fitness"] or 0)["name"] == "b"
    assert report.beating(rows, "ref") == analyses.winners(hand_db)


def test_discoveries_against_compute(hand_db):
    d = analyses.discoveries(hand_db)
    assert d.compute_seconds == [10, 30, 60, 100, 150, 155]  # failures spend compute too
    assert d.count == [0, 1, 1, 2, 3, 3]
    assert d.names == [None, "a", None, "c", "d", None]
    slope, intercept = np.polyfit(d.compute_seconds, d.count, 1)
    assert d.fit.slope == pytest.approx(slope) and d.fit.intercept == pytest.approx(intercept)
    assert d.per_hour == pytest.approx(slope * 3600)
    assert 0.9 < d.fit.r2 <= 1.0


def test_component_frequencies_of_winners_against_all(hand_db):
    c = analyses.component_frequencies(hand_db)
    assert (c["candidates"], c["winners"]) == (4, 2)  # a, b, d, e have designs; a, d win
    assert c["free_form"] == {"all": 1, "winners": 1}  # c
    by = {(r["component"], r["value"]): r for r in c["components"]}
    assert (by["rule", "delta"]["winners"], by["rule", "delta"]["all"]) == (2, 2)
    assert (by["rule", "additive"]["winners"], by["rule", "additive"]["all"]) == (0, 2)
    assert by["gate", "sigmoid"]["winner_share"] == by["gate", "sigmoid"]["all_share"] == 0.5
    assert c["components"][0]["component"] == "rule" and c["components"][0]["value"] == "delta"
    assert c["components"][-1]["value"] == "additive"


def test_idea_origins_of_winners_against_all(hand_db):
    o = analyses.idea_origins(hand_db)
    by = {r["origin"]: (r["winners"], r["all"]) for r in o["origins"]}
    assert by == {"cognition": (1, 1), "analysis": (2, 2), "original": (0, 2),
                  analyses.NO_ORIGIN: (1, 1)}  # fmt: skip
    assert o["totals"] == {"winners": 4, "all": 6}
    assert [r["origin"] for r in o["origins"]][:3] == ["cognition", "analysis", "original"]


def test_lineage_tree_with_a_crossover(hand_db):
    tree = analyses.lineage(hand_db)
    by = {n.name: n for n in tree.values()}
    assert [n.name for n in analyses.roots(tree)] == ["ref"]
    assert by["d"].edit_mode == "crossover" and by["d"].second_parent_id == by["b"].id
    assert by["a"].children == (by["c"].id, by["d"].id) and by["ref"].children == (2, 3)
    assert [n.name for n in tree.values() if n.winner] == ["a", "c", "d"]


# -- a real run, sandbox stubbed -----------------------------------------------------------------
class CurveWorker(StubWorker):
    """The stub, with a training curve in each result and the second candidate timing out."""

    def __call__(self, request, folder, limits, **kwargs):
        result = super().__call__(request, folder, limits, **kwargs)
        if result.ok:
            result.response["train"]["curve"] = [{"step": s, "loss": 5.0 / (1 + s)}
                                                 for s in range(0, 100, 10)]  # fmt: skip
        return result


def _second_candidate_times_out():
    names = []

    def behaviour(name, stage, call):
        if stage == "explore" and name not in ("deltanet", "linear_attention"):
            if name not in names:
                names.append(name)
            return "timeout" if names.index(name) == 1 else "ok"
        return "ok"

    return behaviour


def _evolve(workdir: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(engineer, "run_worker", CurveWorker(_second_candidate_times_out()))
        with Controller(_config(budget={"candidates": 5}), workdir, log=lambda x: None) as c:
            c.run()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("run")
    _evolve(workdir)
    return workdir


class Page(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.tags if "id" in a}


def _render(workdir: Path, **kwargs) -> str:
    db = source.open_run(workdir)
    try:
        return page.render(db, workdir, **kwargs)
    finally:
        db.close()


def test_the_runs_analyses_agree_with_its_leaderboard(run_dir):
    board = json.loads((run_dir / report.LEADERBOARD).read_text())
    db = source.open_run(run_dir)
    try:
        assert sorted(analyses.winners(db)) == sorted(board["explore"]["beats_deltanet"])
        d = analyses.discoveries(db)
        assert d.count[-1] == len(board["explore"]["beats_deltanet"])
        spent = sum(r["compute_seconds"] or 0 for r in board["explore"]["ranking"])
        assert d.compute_seconds[-1] == pytest.approx(spent)
        assert len(d.count) == len(board["explore"]["ranking"])
    finally:
        db.close()


def test_the_page_parses_and_shows_every_candidate(run_dir):
    text = _render(run_dir)
    parsed = Page(text)
    db = Database(run_dir / DATABASE)
    candidates = db.candidates()
    db.close()
    assert len(candidates) == 7 and {f"cand-{c['id']}" for c in candidates} <= parsed.ids()
    body = "".join(parsed.text)
    for c in candidates:
        assert c["name"] in body
    for section in ("leaderboard", "analyses", "lineage", "llm", "control", "candidates"):
        assert section in parsed.ids()
    assert "No control arm" in body and "timed out" in body  # no control; a failed attempt
    tags = [t for t, _ in parsed.tags]
    assert "script" not in tags and "link" not in tags and 'http-equiv="refresh"' not in text
    assert tags.count("svg") >= 7 + 3  # a loss curve per candidate, and the analyses
    assert "discoveries per compute-hour" in body and "none recorded" in body  # no LLM calls
    assert "&amp;" not in text  # nothing escaped twice
    assert body.count("@@") >= 5  # a diff against its parent for each proposed candidate


def test_untrusted_text_cannot_run_in_the_page(run_dir, tmp_path):
    workdir = tmp_path / "evil"
    shutil.copytree(run_dir, workdir)
    db = Database(workdir / DATABASE)
    parent = db.candidate_by_name("deltanet")
    cid = db.add_candidate(name=f"evil{EVIL}", generation=1, kind="candidate",
                           researcher=EVIL, motivation=f"{EVIL}{EVIL_ATTR}",
                           code=f"# {EVIL}\n{EVIL_ATTR}\n", code_hash="x",
                           parent_id=parent["id"], design={EVIL: EVIL_ATTR},
                           idea_origins=[{"idea": EVIL, "origin": EVIL, "evidence": EVIL}],
                           edit_mode=EVIL)  # fmt: skip
    attempt = {"number": 1, "code_hash": EVIL, "ok": False, "stage": EVIL, "reason": EVIL_ATTR,
               "seconds": 1.0}  # fmt: skip
    db.start_evaluation(cid, "explore")
    db.finish_evaluation(cid, "explore", ok=False, failure_stage=EVIL, failure_reason=EVIL,
                         loss=None, benchmark=None, params=None, metrics={"curve": []},
                         check_report={}, compute_seconds=1.0,
                         attempts=[attempt])  # fmt: skip
    db.add_analysis(cid, "explore", EVIL, EVIL, EVIL_ATTR, None)
    db.set_judgement(cid, EVIL, 3.0, f"{EVIL}{EVIL_ATTR}")
    db.close()
    text = _render(workdir)
    parsed = Page(text)
    assert not [t for t, _ in parsed.tags if t in ("script", "img")]
    assert not [(t, a) for t, a in parsed.tags if any(k.startswith("on") for k in a)]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and EVIL not in text
    assert f"cand-{cid}" in parsed.ids() and EVIL in "".join(parsed.text)  # shown, as text


def test_the_page_reads_while_the_controller_writes(tmp_path):
    """WAL: a read-only reader in another process renders mid-run, never blocking or
    failing the run (the controller runs in a process of its own, as it does for real)."""
    workdir, pages = tmp_path / "live", []
    code = f"import test_report, pathlib; test_report._evolve(pathlib.Path({str(workdir)!r}))"
    log = tmp_path / "run.log"
    with log.open("w") as stderr:
        run = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT / "tests",
                               stderr=stderr)  # fmt: skip
        while run.poll() is None:
            try:
                pages.append(_render(workdir, refresh_seconds=1))
            except (FileNotFoundError, ValueError, sqlite3.OperationalError):  # not started
                time.sleep(0.05)
    assert run.returncode == 0, log.read_text()[-3000:]
    assert any("state running" in p for p in pages)  # read mid-run
    assert all('<meta http-equiv="refresh" content="1">' in p for p in pages)
    board = json.loads((workdir / report.LEADERBOARD).read_text())
    assert board["run"]["state"] == "finished"


# -- the script ------------------------------------------------------------------------------
def _script(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "report.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)  # fmt: skip


def test_script_writes_the_page(run_dir, tmp_path):
    out = tmp_path / "page.html"
    done = _script(f"--workdir={run_dir}", f"--output={out}")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and "http-equiv" not in text
    assert "Leaderboard" in text and "deltanet" in text


def test_script_watch_writes_a_self_reloading_page_and_stops_after_its_iterations(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _script(f"--workdir={empty}", "--watch=0.2", "--iterations=2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("waiting") == 2  # no run yet: a waiting page, refreshed
    text = (empty / page.REPORT).read_text()
    assert '<meta http-equiv="refresh" content="1">' in text


def test_script_watch_on_a_run(run_dir, tmp_path):
    workdir = tmp_path / "copy"
    shutil.copytree(run_dir, workdir)
    done = _script(f"--workdir={workdir}", "--watch=3", "--iterations=1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": written") == 1
    text = (workdir / page.REPORT).read_text()
    assert '<meta http-equiv="refresh" content="3">' in text and "refreshes every 3 s" in text


def test_script_refuses_what_it_cannot_report(tmp_path):
    done = _script(f"--workdir={tmp_path / 'absent'}")
    assert done.returncode == 2 and "not a folder" in done.stderr
    done = _script(f"--workdir={tmp_path}")  # no database, and not watching
    assert done.returncode == 2 and "no run database" in done.stderr


def test_the_read_only_database_cannot_write(run_dir):
    db = source.open_run(run_dir)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            db.set_meta("x", 1)
    finally:
        db.close()


# -- a real browser --------------------------------------------------------------------------
def chromium() -> str:
    """Debian's chromium; the browser tests skip without it, except in CI (CI=true), where
    .ci/run installs it and its absence is a failure."""
    found = shutil.which("chromium")
    if found:
        return found
    why = "Debian's chromium is not installed (`apt-get install chromium` to run this test)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why}; CI installs it in .ci/run")
    pytest.skip(why)


def test_without_chromium_the_browser_tests_skip_except_in_ci(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no chromium on the PATH
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="chromium is not installed"):
        chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI installs it"):
        chromium()


class Browser:
    """Headless chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe:
    no port, no client library): a page's console errors, uncaught exceptions and failed
    loads, what it renders, and screenshots, at `width` x `height` CSS pixels."""

    def __init__(self, binary: str, profile: Path, width: int = 480, height: int = 320):
        # chromium reads commands on its fd 3 and writes on its fd 4; ours sit above both.
        ours, self._to = (_high_fd(fd) for fd in os.pipe())
        self._from, theirs = (_high_fd(fd) for fd in os.pipe())
        self._process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{ours} 4>&{theirs} {ours}<&- {theirs}>&-',
             binary, "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
             f"--user-data-dir={profile}", "about:blank"],
            pass_fds=(ours, theirs), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(ours)
        os.close(theirs)
        self._buffer, self._last_id, self.events = b"", 0, []
        try:
            target = next(t for t in self._send("Target.getTargets")["targetInfos"]
                          if t["type"] == "page")  # fmt: skip
            self._session = self._send("Target.attachToTarget", targetId=target["targetId"],
                                       flatten=True)["sessionId"]  # fmt: skip
            for domain in ("Runtime", "Log", "Page"):
                self._send(f"{domain}.enable", session=True)
            self._send("Emulation.setDeviceMetricsOverride", session=True, width=width,
                       height=height, deviceScaleFactor=1, mobile=False)  # fmt: skip
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                self._send("Browser.close")
                self._process.wait(timeout=30)
            except (OSError, EOFError, TimeoutError, subprocess.TimeoutExpired):
                self._process.kill()
                self._process.wait()
        os.close(self._to)
        os.close(self._from)

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._from], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from, 1 << 16)
            if not chunk:
                raise EOFError("chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _send(self, method: str, session: bool = False, **params) -> dict:
        self._last_id += 1
        message = {"id": self._last_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._to, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + 60
        while True:
            reply = self._receive(deadline)
            if reply.get("id") != self._last_id:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            else:
                return reply["result"]

    def load(self, url: str) -> None:
        """Navigates and waits for the load event (every resource loaded, or failed)."""
        start = len(self.events)
        self._send("Page.navigate", session=True, url=url)
        deadline = time.monotonic() + 60
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events[start:]):
            self.events.append(self._receive(deadline))

    def evaluate(self, expression: str):
        reply = self._send("Runtime.evaluate", session=True, expression=expression,
                           returnByValue=True)  # fmt: skip
        assert "exceptionDetails" not in reply, reply["exceptionDetails"]
        return reply["result"].get("value")

    def screenshot(self) -> bytes:
        """The viewport as PNG."""
        return base64.b64decode(self._send("Page.captureScreenshot", session=True,
                                           format="png")["data"])  # fmt: skip

    def errors(self) -> list[str]:
        """What the page's console showed as errors: console.error/assert calls, uncaught
        exceptions, and the browser's own error entries (a failed load, a refused style)."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append(" ".join(str(a.get("value", a.get("description")))
                                      for a in params["args"]))  # fmt: skip
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                found.append(details.get("exception", {}).get("description", details["text"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"{params['entry']['text']} ({params['entry'].get('url', '')})")
        return found


def _high_fd(fd: int) -> int:
    """`fd` moved above 4, so that the child's 3 and 4 cannot be one of the pipe's ends."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return moved


# The leaderboard as rendered: its heading's box and text, and the names in its first table.
_LEADERBOARD = """(() => {
  const heading = document.getElementById("leaderboard");
  if (!heading) return null;
  let table = heading.nextElementSibling;
  while (table && table.tagName !== "TABLE") table = table.nextElementSibling;
  const box = heading.getBoundingClientRect();
  return {text: heading.innerText, width: box.width, height: box.height,
          names: table ? [...table.rows].slice(1).map(r => r.cells[1].innerText.trim()) : []};
})()"""


def _shown_pixels(png: bytes) -> tuple[tuple[int, int], int, float]:
    """A screenshot's size, its number of colours, and the share of its pixels that differ
    from the most common colour (the background)."""
    image = PIL.Image.open(io.BytesIO(png)).convert("RGB")
    colours = image.getcolors(maxcolors=image.width * image.height)
    background = max(count for count, _ in colours)
    return image.size, len(colours), 1 - background / (image.width * image.height)


def test_a_headless_browser_loads_the_page_without_console_errors_and_shows_the_leaderboard(
    run_dir, tmp_path
):
    binary = chromium()
    out = tmp_path / "report.html"
    page.write(_render(run_dir), out)
    board = json.loads((run_dir / report.LEADERBOARD).read_text())
    with Browser(binary, tmp_path / "profile", width=1280, height=800) as browser:
        browser.load(out.as_uri())
        assert browser.errors() == []
        shown = browser.evaluate(_LEADERBOARD)
        body = browser.evaluate("document.body.innerText")
    assert shown["text"] == "Leaderboard" and shown["width"] > 0 and shown["height"] > 0
    beats = set(board["explore"]["beats_deltanet"])
    assert beats and shown["names"] == [("★ " if r["name"] in beats else "") + r["name"]
                                        for r in board["explore"]["ranking"]]  # fmt: skip
    assert "deltanet" in body and "Analyses" in body


def test_the_browser_sees_console_errors_exceptions_and_failed_loads(tmp_path):
    """The check above, on a page with each kind of error: it would see them."""
    binary = chromium()
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="absent.png"><script>'
                   'console.error("told"); console.log("fine"); undefined_name();'
                   "</script></body></html>")  # fmt: skip
    with Browser(binary, tmp_path / "profile") as browser:
        browser.load(bad.as_uri())
        errors = browser.errors()
    assert len(errors) == 3, errors
    assert "told" in errors and any("undefined_name is not defined" in e for e in errors)
    assert any("absent.png" in e and "ERR_FILE_NOT_FOUND" in e for e in errors)


def test_a_small_screenshot_of_the_page_shows_it(run_dir, tmp_path):
    """480 x 320: the page's top (title, run summary) drawn; a blank page, the control, is one
    colour at the same size."""
    binary = chromium()
    out, blank = tmp_path / "report.html", tmp_path / "blank.html"
    page.write(_render(run_dir), out)
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    with Browser(binary, tmp_path / "profile", width=480, height=320) as browser:
        browser.load(out.as_uri())
        shot = browser.screenshot()
        browser.load(blank.as_uri())
        control = browser.screenshot()
    (tmp_path / "report.png").write_bytes(shot)
    size, colours, drawn = _shown_pixels(shot)
    assert size == (480, 320) and colours >= 16 and drawn >= 0.02, (colours, drawn)
    assert _shown_pixels(control) == ((480, 320), 1, 0.0)


@pytest.mark.parametrize("version, error", [(2, source.OlderSchema), (99, SchemaError)])
def test_a_database_of_another_schema_is_refused_not_migrated(tmp_path, version, error):
    connection = sqlite3.connect(tmp_path / DATABASE)
    connection.execute(f"PRAGMA user_version = {version}")
    connection.close()
    with pytest.raises(error, match=f"schema version {version}"):
        source.open_run(tmp_path)
    connection = sqlite3.connect(tmp_path / DATABASE)
    assert connection.execute("PRAGMA user_version").fetchone()[0] == version
