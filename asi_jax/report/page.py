"""The run report: one self-contained HTML page (inline CSS and SVG, no script, nothing
fetched) built from a run's database: the leaderboard per stage, the analyses
(asi_jax/evolution/analyses.py), the lineage, language-model totals, the human's steering
commands and what each did, the loop against the random-search control arm (a control run,
or an island of this one) and a section per
candidate with its code, diff against its parent, loss curve, analysis, judgement and
attempts.

Candidate code, motivations and model replies are untrusted: every value passes through
`html.escape` on its way into the page (`_e`), attributes included.
"""

from __future__ import annotations

import contextlib
import datetime
import difflib
import html
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from asi_jax.evolution import analyses, state, steering
from asi_jax.evolution.config import split_stage
from asi_jax.evolution.db import Database
from asi_jax.report import source, svg

REPORT = "report.html"
_STANDARD = {"name", "kind", "generation", "island", "parent", "stage", "status", "fitness",
             "terms", "loss", "benchmark", "params", "compute_seconds", "judge",
             "failure_stage", "failure_reason", "researcher", "idea_origins", "folder",
             "seeds", "intervals", "gain", "replicates"}  # fmt: skip

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;
color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-top:12px}
h3{font-size:15px}table{border-collapse:collapse;margin:6px 0;font-size:13px}
td,th{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed{color:#a00}tr.pending{color:#777}tr.reference{background:#fff8dc}
.win{color:#2a7a2a;font-weight:bold}pre{background:#f7f7f7;padding:8px;overflow:auto;
font-size:12px;max-height:480px}.add{color:#1a6d1a}.del{color:#a61b1b}.hunk{color:#555}
.empty{color:#777;font-style:italic}svg.chart text{font-size:11px;fill:#333}
svg.chart text.title{font-size:13px;font-weight:bold}svg.chart .frame{fill:none;
stroke:#999}svg.chart .grid{stroke:#eee}svg.chart .tick{stroke:#999}
ul.tree{list-style:none;padding-left:18px;border-left:1px dotted #bbb}ul.tree.top{border:0;
padding-left:0}.mode{color:#555;font-size:12px}section.candidate{border-top:1px solid #ddd}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return _e(value)


def _table(header: Iterable[str], rows: Iterable[Iterable[str]],
           row_classes: Iterable[str] | None = None) -> str:  # fmt: skip
    """`rows` hold cells already escaped (HTML fragments)."""
    classes = list(row_classes) if row_classes is not None else None
    body = "".join(
        f'<tr class="{_e(classes[i]) if classes else ""}">' + "".join(f"<td>{c}</td>" for c in r)
        + "</tr>" for i, r in enumerate(rows))  # fmt: skip
    return ("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" + body
            + "</table>")  # fmt: skip


def _anchor(ids: dict[str, int], name: str | None) -> str:
    if name is None:
        return "&ndash;"
    return f'<a href="#cand-{ids[name]}">{_e(name)}</a>' if name in ids else _e(name)


def _details(row: dict[str, Any]) -> str:
    """The task's own figures (e.g. recall by number of pairs), as text."""
    parts = []
    for key in sorted(set(row) - _STANDARD):
        value = row[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k}: {_num(v, 3)}" for k, v in value.items())
        parts.append(f"{_e(key)}: {_e(value) if isinstance(value, str) else _num(value, 3)}")
    return "<br>".join(parts) or "&ndash;"


def _interval(interval: dict[str, Any] | None, digits: int = 4) -> str:
    """mean [low, high]; the mean alone where there is no interval (one seed)."""
    if not interval:
        return "&ndash;"
    if interval["low"] is None:
        return _num(interval["mean"], digits)
    return (f"{_num(interval['mean'], digits)} <small>[{_num(interval['low'], digits)}, "
            f"{_num(interval['high'], digits)}]</small>")  # fmt: skip


def _figure(row: dict[str, Any], key: str) -> str:
    """A figure of the ranking: with its interval over seeds in verification."""
    if "intervals" in row:
        return _interval(row["intervals"].get(key))
    return _num(row[key])


def _ablations(tables: list[dict[str, Any]], ids: dict[str, int], confidence: float) -> str:
    out = ["<h3>Ablations of the verified winners</h3><p>Each variant sets one component of "
           "the winner back to the reference's option and retrains on the same seeds. Drop: "
           "the winner's gain minus the variant's, paired by seed, with its "
           f"{confidence:.0%} bootstrap interval; the component with the largest drop carries "
           "the gain.</p>"]  # fmt: skip
    for t in tables:
        rows = [[_e(v["change"]), _anchor(ids, v["variant"]), _e(v["status"]),
                 _interval(v["gain"]), _interval(v["drop"]),
                 "yes" if v["significant"] else "no"] for v in t["variants"]]  # fmt: skip
        out.append(f"<p>{_anchor(ids, t['winner'])}: gain {_interval(t['gain'])}; carried by "
                   f"<b>{_e(t['carried_by'] or 'undecided')}</b>.</p>")  # fmt: skip
        out.append(_table(["change", "variant", "status", "gain over the reference",
                           "drop from the winner's gain", "drop above zero"], rows))  # fmt: skip
    return "".join(out)


def _leaderboard(board: dict[str, Any], ids: dict[str, int]) -> str:
    ref = board["reference_baseline"]
    out = ["<h2 id=\"leaderboard\">Leaderboard</h2>",
           f"<p>Task {_e(board['task'])}; figures: loss = {_e(board['figures']['loss'])}, "
           f"benchmark = {_e(board['figures']['benchmark'])}; reference baseline "
           f"<b>{_e(ref)}</b>. <span class=\"win\">★</span> marks a candidate that beats the "
           "reference: in exploration (one seed) its quantitative terms (loss + benchmark) "
           "exceed the reference's; in verification the bootstrap interval of that gain over "
           "the reference, paired by seed, lies above zero. Verification figures are means "
           "over seeds with their intervals in brackets.</p>"]  # fmt: skip
    for stage in state.STAGES:
        if stage not in board:
            continue
        s = board[stage]
        beats = set(s.get(f"beats_{ref}", []))
        failures = ", ".join(f"{_e(k)}: {n}" for k, n in s["failures_by_stage"].items())
        seeds = (f" over {s['seeds']} seed(s), {s['confidence']:.0%} intervals"
                 if "seeds" in s else "")  # fmt: skip
        out.append(f"<h3>{_e(stage)}</h3><p>{s['evaluated']} evaluated{seeds}, {s['failed']} "
                   f"failed{' (' + failures + ')' if failures else ''}; {len(beats)} beat "
                   f"{_e(ref)}.</p>")  # fmt: skip
        rows, classes = [], []
        for i, r in enumerate(s["ranking"], 1):
            terms = r["terms"] or {}
            judge = r["judge"] and f"{_num(r['judge']['score'], 3)} ({_e(r['judge']['by'])})"
            failure = (f"{_e(r['failure_stage'])}: {_e(r['failure_reason'])}"
                       if r["status"] != "evaluated" and r["failure_stage"] else "")  # fmt: skip
            rows.append([
                str(i), ('<span class="win">★</span> ' if r["name"] in beats else "")
                + _anchor(ids, r["name"]), _e(r["kind"]), _e(r["status"]),
                _figure(r, "fitness"),
                _interval(r["gain"].get("quantitative")) if "gain" in r else
                "<br>".join(f"{_e(k)} {_num(v)}" for k, v in terms.items()) or "&ndash;",
                _figure(r, "loss"), _figure(r, "benchmark"), _details(r), _num(r["params"]),
                _num(r["compute_seconds"], 3), judge or "&ndash;", failure,
            ])  # fmt: skip
            classes.append(r["status"] + (" reference" if r["name"] == ref else ""))
        out.append(_table(["#", "name", "kind", "status", "fitness",
                           "gain over the reference" if stage == "verify" else "terms", "loss",
                           "benchmark", "details", "params", "compute s", "judge",
                           "failure"], rows, classes))  # fmt: skip
        if s.get("ablations"):
            out.append(_ablations(s["ablations"], ids, s["confidence"]))
    return "".join(out)


def _unit(seconds: float) -> tuple[str, float]:
    """A readable unit of compute time for an axis running up to `seconds`."""
    if seconds < 120:
        return "seconds", 1.0
    return ("minutes", 60.0) if seconds < 7200 else ("hours", 3600.0)


def _discoveries(db: Database) -> str:
    out = ['<h3>Discoveries against compute</h3><p>ASI-Arch reports that the number of '
           "architectures beating the reference grows linearly with the compute spent. Here: "
           "after each finished evaluation (baselines and failures spend compute too), the "
           "cumulative count of candidates beating the reference, with a least-squares "
           "line.</p>"]  # fmt: skip
    for stage in state.STAGES:
        d = analyses.discoveries(db, stage)
        if not d.count:
            continue
        unit, scale = _unit(d.compute_seconds[-1])
        hours = [s / scale for s in d.compute_seconds]
        series = [svg.Series("candidates beating the reference", hours, d.count, steps=True,
                             markers=True)]  # fmt: skip
        if d.fit is not None:
            fit = [d.fit.intercept + d.fit.slope * s for s in d.compute_seconds]
            series.append(svg.Series("least-squares fit", hours, fit, dashed=True))
            r2 = "n/a" if d.fit.r2 is None else f"{d.fit.r2:.3f}"
            text = (f"slope {d.per_hour:.4g} discoveries per compute-hour, intercept "
                    f"{d.fit.intercept:.3g}, R² {r2}")  # fmt: skip
        else:
            text = "too few evaluations for a fit"
        out.append(svg.line_chart(series, title=f"{stage}: discoveries against compute",
                                  x_label=f"cumulative compute ({unit})",
                                  y_label="candidates beating the reference"))  # fmt: skip
        out.append(
            f"<p>{_e(stage)}: {d.count[-1]} discoveries in "
            f"{d.compute_seconds[-1] / 3600:.3g} compute-hours; {_e(text)}.</p>"
        )
    return "".join(out)


def _components(db: Database) -> str:
    c = analyses.component_frequencies(db)
    out = [f"<h3>Design components: winners against all ({_e(c['stage'])})</h3><p>"
           f"{c['candidates']} candidates with a design, {c['winners']} of them winners; "
           f"free-form code without a design: {c['free_form']['all']} candidates, "
           f"{c['free_form']['winners']} winners (not counted below).</p>"]  # fmt: skip
    varying = [r for r in c["components"] if r["all"] < c["candidates"] or r["winners"]
               < c["winners"]]  # fmt: skip
    out.append(svg.paired_bars([(f"{r['component']}={r['value']}", r["winner_share"],
                                 r["all_share"]) for r in varying[:20]],
                               title="share of designs with the component (top 20 by lift)",
                               legend=("winners", "all candidates")))  # fmt: skip
    rows = [
        [
            _e(r["component"]),
            _e(r["value"]),
            str(r["winners"]),
            str(r["all"]),
            f"{r['winner_share']:.0%}",
            f"{r['all_share']:.0%}",
        ]
        for r in c["components"]
    ]
    out.append("<details><summary>every component</summary>"
               + _table(["component", "value", "winners", "all", "winner share", "share"], rows)
               + "</details>")  # fmt: skip
    return "".join(out)


def _origins(db: Database) -> str:
    o = analyses.idea_origins(db)
    out = [f"<h3>Idea origins: winners against all ({_e(o['stage'])})</h3><p>Where each "
           f"idea came from: the cognition base, the analysis of earlier results, or "
           f"original. {o['totals']['winners']} ideas in winners, {o['totals']['all']} in "
           "all candidates.</p>"]  # fmt: skip
    out.append(svg.paired_bars([(r["origin"], r["winner_share"], r["all_share"])
                                for r in o["origins"]], title="share of ideas by origin",
                               legend=("winners", "all candidates")))  # fmt: skip
    out.append(_table(["origin", "winners", "all", "winner share", "share"],
                      [[_e(r["origin"]), str(r["winners"]), str(r["all"]),
                        f"{r['winner_share']:.0%}", f"{r['all_share']:.0%}"]
                       for r in o["origins"]]))  # fmt: skip
    return "".join(out)


def _lineage(db: Database) -> str:
    tree = analyses.lineage(db)

    def item(node: analyses.Node, seen: frozenset[int]) -> str:
        mode = node.edit_mode or node.kind
        second = tree.get(node.second_parent_id) if node.second_parent_id else None
        cross = f' &times; <a href="#cand-{second.id}">{_e(second.name)}</a>' if second else ""
        star = '<span class="win">★</span> ' if node.winner else ""
        kids = [tree[k] for k in node.children if k not in seen]
        sub = ("<ul class=\"tree\">" + "".join(item(k, seen | {k.id}) for k in kids)
               + "</ul>") if kids else ""  # fmt: skip
        return (f'<li>{star}<a href="#cand-{node.id}">{_e(node.name)}</a> '
                f'<span class="mode">[{_e(mode)}, gen {node.generation}, island '
                f"{node.island}]{cross}</span>{sub}</li>")  # fmt: skip

    roots = analyses.roots(tree)
    body = "".join(item(r, frozenset({r.id})) for r in roots)
    return ('<h2 id="lineage">Lineage</h2><p>Each candidate under its parent; &times; names a '
            "crossover's second parent; [edit mode, generation, island]; ★ beats the "
            f'reference in explore.</p><ul class="tree top">{body}</ul>')  # fmt: skip


def _llm(db: Database) -> str:
    totals = db.call_totals()
    if not totals:
        return '<h2 id="llm">Language-model calls</h2><p class="empty">none recorded</p>'
    rows = [[_e(t["role"]), _e(t["provider"]), _e(t["model"]), str(t["requests"]),
             str(t["tokens_in"]), str(t["tokens_out"]), f"${t['cost_usd']:.4f}",
             str(t["failed"])] for t in totals]  # fmt: skip
    return ('<h2 id="llm">Language-model calls</h2>'
            + _table(["role", "provider", "model", "requests", "tokens in", "tokens out",
                      "cost", "failed"], rows)
            + f"<p>Total cost ${db.cost_usd():.4f}.</p>")  # fmt: skip


def _steering(db: Database) -> str:
    """Every steering command (scripts/steer.py): who gave it, when, and what it did."""
    rows = db.steering()
    if not rows:
        return '<h2 id="steering">Steering</h2><p class="empty">no commands given</p>'

    def when(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat(
            timespec="seconds")  # fmt: skip

    body = [[_e(r["id"]), _e(r["author"]), _e(when(r["created_at"])), _e(when(r["applied_at"])),
             _e(steering.describe(r["command"], r["arguments"])), _e(r["status"]),
             _e(steering.effect(r))] for r in rows]  # fmt: skip
    return ('<h2 id="steering">Steering</h2><p>Commands given with scripts/steer.py, in the '
            "order the run applied them (times in UTC).</p>"
            + _table(["id", "author", "given", "applied", "command", "status", "what it did"],
                     body))  # fmt: skip


def _agents(db: Database) -> str:
    config = db.get_meta("config") or {}
    kinds = list((config.get("islands") or {}).get("agents") or ())
    return "/".join(kinds) if kinds else str(config.get("agents", "?"))


def _control(db: Database, control: Database | None) -> str:
    """The loop against the random-search control arm: a control run's database beside this
    run's, or this run's islands when one of them samples at random."""
    out = ['<h2 id="control">Control arm</h2>']
    if control is not None:
        arms = [analyses.arm(db, f"this run ({_agents(db)})"),
                analyses.arm(control, f"control run ({_agents(control)})")]  # fmt: skip
        how = "a control run beside this one (scripts/report.py --control)"
    elif arms := analyses.island_arms(db):
        how = ("this run's islands, one of them the random-search control; verification "
               "promoted the run's fittest candidates, whichever island proposed them")  # fmt: skip
    else:
        return "".join(out) + (
            '<p class="empty">No control arm: this run has no island of agents "random" and '
            "no control run was given. Run one with the same config and "
            "--config.agents=random in another workdir and pass it as --control=WORKDIR, or "
            "run both arms in one run with --config.islands.count=2 "
            "--config.islands.agents='(\"offline\",\"random\")' "
            "--config.islands.migration_interval=0.</p>"
        )  # fmt: skip
    out.append(f"<p>Compared: {_e(how)}. The random-search control draws every component of "
               "the task's design grammar uniformly, with no cognition, analysis or parent; "
               "both arms run the baselines and are scored by the same analyser and judge. A "
               "verified win is a candidate beating the reference baseline in verification; "
               "each win is counted at the exploration compute at which its candidate was "
               "explored.</p>")  # fmt: skip
    unit, scale = _unit(max((a.compute_seconds[-1] for a in arms if a.compute_seconds),
                            default=0.0))  # fmt: skip

    def scored(a: analyses.Arm, xs: list[float]) -> tuple[list[float], list[float]]:
        points = [(x, y) for x, y in zip(xs, a.best, strict=True) if y is not None]
        return [x for x, _ in points], [y for _, y in points]

    compute = [svg.Series(a.label, *scored(a, [s / scale for s in a.compute_seconds]),
                          steps=True, markers=True) for a in arms]  # fmt: skip
    proposed = [svg.Series(a.label, *scored(a, [float(n) for n in a.proposed]), steps=True,
                           markers=True) for a in arms]  # fmt: skip
    wins = [svg.Series(a.label, [s / scale for s in a.compute_seconds],
                       [float(w) for w in a.wins], steps=True) for a in arms]  # fmt: skip
    x_label = f"cumulative exploration compute ({unit})"
    out.append(svg.line_chart(compute, title="best exploration fitness against compute",
                              x_label=x_label, y_label="best fitness so far"))  # fmt: skip
    out.append(svg.line_chart(proposed, title="best exploration fitness against candidates "
                              "proposed", x_label="candidates proposed",
                              y_label="best fitness so far"))  # fmt: skip
    out.append(svg.line_chart(wins, title="verified wins against compute", x_label=x_label,
                              y_label="verified wins"))  # fmt: skip
    rows = [[_e(a.label), str(a.candidates), _num(a.total_seconds / 3600, 3),
             _num(a.best_fitness), str(len(a.verified)),
             _num(a.best_verified)] for a in arms]  # fmt: skip
    out.append(_table(["arm", "candidates", "compute h (explore + verify)",
                       "best exploration fitness", "verified wins",
                       "best verified fitness"], rows))  # fmt: skip
    return "".join(out)


def _diff(parent: dict | None, code: str) -> str:
    if parent is None:
        return '<p class="empty">no parent: nothing to diff against</p>'
    lines = difflib.unified_diff(parent["code"].splitlines(), code.splitlines(),
                                 fromfile=parent["name"], tofile="this candidate",
                                 lineterm="")  # fmt: skip
    out = []
    for line in lines:
        cls = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "")
        out.append(f'<span class="{cls}">{_e(line)}</span>' if cls else _e(line))
    return "<pre>" + "\n".join(out) + "</pre>" if out else '<p class="empty">identical</p>'


def _candidate(db: Database, c: dict[str, Any], evaluations: dict[str, dict],
               by_id: dict[int, dict], winners: set[str]) -> str:  # fmt: skip
    parent = by_id.get(c["parent_id"])
    second = by_id.get(c["second_parent_id"])

    def link(x: dict | None) -> str:
        return f'<a href="#cand-{x["id"]}">{_e(x["name"])}</a>' if x else "&ndash;"

    star = ' <span class="win">★ beats the reference</span>' if c["name"] in winners else ""
    out = [f'<section class="candidate" id="cand-{c["id"]}"><h3>{_e(c["name"])}{star}</h3>',
           _table(["kind", "generation", "island", "researcher", "edit mode", "parent",
                   "second parent"],
                  [[_e(c["kind"]), str(c["generation"]), str(c["island"]),
                    _e(c["researcher"]), _e(c["edit_mode"]) or "&ndash;", link(parent),
                    link(second)]]),
           f"<p><b>Motivation</b></p><pre>{_e(c['motivation'])}</pre>"]  # fmt: skip
    if c["idea_origins"]:
        out.append(_table(["idea", "origin", "evidence"],
                          [[_e(i.get("idea")), _e(i.get("origin")), _e(i.get("evidence"))]
                           for i in c["idea_origins"]]))  # fmt: skip
    for j in db.query("SELECT * FROM judgements WHERE candidate_id = ?", c["id"]):
        out.append(f"<p><b>Judge</b> {_e(j['judge'])}: score {_num(j['score'], 3)}</p>"
                   f"<pre>{_e(j['rationale'])}</pre>")  # fmt: skip
    curves = []
    for stage, e in evaluations.items():
        failure = (f"; failed at {_e(e['failure_stage'])}<pre>{_e(e['failure_reason'])}</pre>"
                   if e["status"] == "failed" else "")  # fmt: skip
        out.append(f"<h4>{_e(stage)}: {_e(e['status'])}</h4><p>fitness {_num(e['fitness'])}, "
                   f"loss {_num(e['loss'])}, benchmark {_num(e['benchmark'])}, compute "
                   f"{_num(e['compute_seconds'], 3)} s{failure}</p>")  # fmt: skip
        a = db.analysis(c["id"], stage)
        if a:
            out.append(
                f"<p><b>Analysis</b> ({_e(a['analyser'])}): "
                f"{_e(a['problem_summary'])}</p><pre>{_e(a['report'])}</pre>"
            )
        attempts = db.query("SELECT * FROM attempts WHERE candidate_id = ? AND stage = ? "
                            "ORDER BY number", c["id"], stage)  # fmt: skip
        if attempts:
            out.append(_table(["attempt", "ok", "failed at", "reason", "seconds", "code"],
                              [[str(a["number"]), "yes" if a["ok"] else "no",
                                _e(a["failed_stage"]) or "&ndash;",
                                f"<pre>{_e(a['reason'])}</pre>" if a["reason"] else "&ndash;",
                                _num(a["seconds"], 3), _e(a["code_hash"])]
                               for a in attempts]))  # fmt: skip
        curve = [p for p in (e["metrics"] or {}).get("curve") or []
                 if isinstance(p, dict) and p.get("loss") is not None]  # fmt: skip
        if curve:
            curves.append(svg.Series(stage, [float(p.get("step", i)) for i, p in
                                             enumerate(curve)],
                                     [float(p["loss"]) for p in curve]))  # fmt: skip
    if curves:
        out.append(svg.line_chart(curves, title="training loss", x_label="step",
                                  y_label="loss"))  # fmt: skip
    out.append(
        f"<details><summary>code ({len(c['code'].splitlines())} lines)</summary>"
        f"<pre>{_e(c['code'])}</pre></details>"
    )
    out.append(
        "<details><summary>diff against its parent</summary>"
        f"{_diff(parent, c['code'])}</details></section>"
    )
    return "".join(out)


def _stage_order(stage: str) -> tuple[int, int]:
    base, seed = split_stage(stage)
    return (state.STAGES.index(base) if base in state.STAGES else len(state.STAGES), seed)


def render(db: Database, workdir: str | Path, *, refresh_seconds: float | None = None,
           now: datetime.datetime | None = None, control: Database | None = None
           ) -> str:  # fmt: skip
    """The page for the run in `workdir` whose database is `db`; with `refresh_seconds`
    the page reloads itself that often (watch mode); `control`: a control run's database,
    compared with this run in the control section."""
    now = now or datetime.datetime.now(datetime.UTC)
    with source.snapshot(db), contextlib.ExitStack() as stack:
        if control is not None:
            stack.enter_context(source.snapshot(control))
        board = source.leaderboard(db, workdir)
        candidates = db.candidates()
        by_id = {c["id"]: c for c in candidates}
        ids = {c["name"]: c["id"] for c in candidates}
        evaluations: dict[int, dict[str, dict]] = {}
        stages = [r["stage"] for r in db.query("SELECT DISTINCT stage FROM evaluations")]
        for stage in sorted(stages, key=_stage_order):  # each verification seed too
            for r in analyses.stage_rows(db, stage):
                evaluations.setdefault(r["id"], {})[stage] = r
        winners = set(analyses.winners(db, "explore"))
        sections = [_leaderboard(board, ids), '<h2 id="analyses">Analyses</h2>',
                    _discoveries(db), _components(db), _origins(db), _lineage(db), _llm(db),
                    _steering(db), _control(db, control),
                    '<h2 id="candidates">Candidates</h2>']  # fmt: skip
        sections += [_candidate(db, c, evaluations.get(c["id"], {}), by_id, winners)
                     for c in candidates]  # fmt: skip
    run = board.get("run") or {}
    refresh = (f'<meta http-equiv="refresh" content="{max(1, round(refresh_seconds))}">'
               if refresh_seconds else "")  # fmt: skip
    head = (f"<p>Run in {_e(Path(workdir).resolve())}: state {_e(run.get('state', 'unknown'))}"
            f"{' (' + _e(run['reason']) + ')' if run.get('reason') else ''}; "
            f"{len(candidates)} candidates, {board['rejected_proposals']} proposals rejected "
            f"before compute; compute {board['compute_seconds'] / 3600:.3g} h, wall "
            f"{board['wall_seconds'] / 3600:.3g} h. Written {_e(now.isoformat(timespec='seconds'))}"
            f"{f'; refreshes every {refresh_seconds:g} s' if refresh_seconds else ''}.</p>"
            '<p><a href="#leaderboard">leaderboard</a> · <a href="#analyses">analyses</a> · '
            '<a href="#lineage">lineage</a> · <a href="#llm">language models</a> · '
            '<a href="#steering">steering</a> · '
            '<a href="#control">control arm</a> · '
            '<a href="#candidates">candidates</a></p>')  # fmt: skip
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">" + refresh
            + f"<title>asi-jax run: {_e(board['task'])}</title><style>{CSS}</style></head>"
            + f"<body><h1>asi-jax run report</h1>{head}{''.join(sections)}"
            + "</body></html>\n")  # fmt: skip


def waiting(workdir: str | Path, reason: str, refresh_seconds: float | None) -> str:
    """The page while there is nothing to report yet (watch mode before the run starts)."""
    refresh = (f'<meta http-equiv="refresh" content="{max(1, round(refresh_seconds))}">'
               if refresh_seconds else "")  # fmt: skip
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">{refresh}'
            f"<title>asi-jax run report</title><style>{CSS}</style></head><body>"
            f"<h1>asi-jax run report</h1><p>{_e(Path(workdir).resolve())}: {_e(reason)}</p>"
            "</body></html>\n")  # fmt: skip


def write(text: str, path: str | Path) -> None:
    """Replaces the file atomically: a browser reloading it never reads half a page."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
