"""The load report: its JSON form (documented in the README), exact merging, plain text.

A report carries its figures (throughput, percentiles, per key, conformance) for people and
scripts, and under ``raw`` the exact counts and histograms they were computed from, so
``merge_reports`` adds runs together exactly and recomputes every figure.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenlimit.errors import ConfigError
from tokenlimit.load.conformance import Conformance
from tokenlimit.load.run_stats import ANSWERS, NO_ANSWER, RunStats

SCHEMA = "tokenlimit-loadtest/1"
TOP_KEYS = 10  # keys in the text report's table unless --top says otherwise


@dataclass(slots=True)
class LoadReport:
    """What a run (or several merged runs) measured, with where and how it ran."""

    stats: RunStats
    target: str
    mode: str
    load: str
    workers: int = 1
    runs: int = 1
    interrupted: bool = False
    rules: list[dict[str, Any]] | None = None
    conformance: Conformance | None = None
    sources: list[str] = field(default_factory=list)

    @property
    def throughput(self) -> float:
        """Answered requests (with an HTTP status) per second over the run's span."""
        d = self.stats.duration
        return self.stats.answered / d if d > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "schema": SCHEMA,
            "target": self.target,
            "mode": self.mode,
            "load": self.load,
            "workers": self.workers,
            "runs": self.runs,
            "interrupted": self.interrupted,
            "started": s.started,
            "finished": s.finished,
            "duration_s": round(s.duration, 6),
            "requests": {"sent": s.sent, "completed": s.completed, "answered": s.answered,
                         "allowed": s.outcomes["allowed"], "limited": s.outcomes["limited"],
                         "errors": s.outcomes["error"]},
            "throughput_rps": round(self.throughput, 3),
            "latency_ms": s.latency.summary_ms(),
            "latency_ms_by_outcome": {o: s.by_outcome[o].summary_ms() for o in ANSWERS},
            "ttfb_ms": s.ttfb.summary_ms(),
            "send_lateness_ms": s.lateness.summary_ms(),
            "report_latency_ms": s.report_latency.summary_ms(),
            "statuses": dict(sorted(s.statuses.items())),
            "errors": dict(sorted(s.errors.items())),
            "report_statuses": dict(sorted(s.report_statuses.items())),
            "keys": {k: s.keys[k].to_dict() for k in sorted(s.keys)},
            "rules": self.rules,
            "conformance": None if self.conformance is None else self.conformance.to_dict(),
            "raw": s.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<report>") -> LoadReport:
        """Read a report written by ``to_dict`` (``ConfigError`` naming the source if bad)."""
        schema = data.get("schema") if isinstance(data, dict) else None
        if isinstance(schema, str) and schema.startswith(SCHEMA.split("/")[0] + "/") and \
                schema != SCHEMA:
            raise ConfigError(f"{source}: field 'schema': {schema!r} is not supported (this "
                              f"tokenlimit reads {SCHEMA}); merge reports of one version")
        if schema != SCHEMA:
            raise ConfigError(f"{source}: not a tokenlimit loadtest report (schema {SCHEMA})")
        if "raw" not in data and "requests" in data:  # what --format json prints
            raise ConfigError(f"{source}: field 'raw': missing: this is the summary that "
                              "--format json prints; merge the reports that --output writes")
        if not isinstance(data.get("raw"), dict):
            raise ConfigError(f"{source}: field 'raw': expected an object of counts and "
                              "histograms")
        try:
            conf = data.get("conformance")
            return cls(RunStats.from_dict(data["raw"]), str(data["target"]), str(data["mode"]),
                       str(data["load"]), int(data["workers"]), int(data["runs"]),
                       bool(data["interrupted"]), data.get("rules"),
                       None if conf is None else Conformance.from_dict(conf), [source])
        except KeyError as exc:
            raise ConfigError(f"{source}: field {exc.args[0]!r}: missing") from None
        except (ValueError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{source}: bad report field: {exc}") from None


def merge_reports(reports: Sequence[LoadReport]) -> LoadReport:
    """One report over all ``reports``: counts and histograms added, figures recomputed."""
    if not reports:
        raise ConfigError("merge: give at least one report")
    stats = RunStats()
    conformance: Conformance | None = None
    for report in reports:
        stats.merge(report.stats)
        if report.conformance is not None:
            conformance = conformance or Conformance()
            conformance.merge(report.conformance)
    rules = reports[0].rules if all(r.rules == reports[0].rules for r in reports) else None

    def joined(values: Sequence[str]) -> str:
        return ", ".join(dict.fromkeys(values))

    return LoadReport(stats, joined([r.target for r in reports]),
                      joined([r.mode for r in reports]), joined([r.load for r in reports]),
                      sum(r.workers for r in reports), sum(r.runs for r in reports),
                      any(r.interrupted for r in reports), rules, conformance,
                      [s for r in reports for s in r.sources])


def read_report(path: str) -> LoadReport:
    """Load a JSON report file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON: {exc}") from None
    return LoadReport.from_dict(data, path)


def _ms(value: float | int | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _requests_line(report: LoadReport) -> str:
    """Sent, answered (a rate only when something answered), failed with no answer,
    unfinished at the end, and the outcomes.

    A failure with no answer (connection refused, timeout) is never counted as an answer.
    """
    s = report.stats
    parts = [f"requests {s.sent} sent, {s.answered} answered in {s.duration:.2f} s"]
    if s.answered:
        parts[0] += f": {report.throughput:.1f}/s"
    failed = s.completed - s.answered
    if failed:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items()) if k in NO_ANSWER)
        parts.append(f"{failed} failed with no answer ({kinds})")
    if s.sent > s.completed:
        parts.append(f"{s.sent - s.completed} unfinished when the run ended")
    return "; ".join([*parts, f"allowed {s.outcomes['allowed']}, limited "
                              f"{s.outcomes['limited']}, errors {s.outcomes['error']}"])


def format_report(report: LoadReport, top: int = TOP_KEYS) -> str:
    """The report as plain text: findings first, then throughput, latency, and the ``top``
    keys by requests (ties by name)."""
    s = report.stats
    lines: list[str] = []
    conf = report.conformance
    if conf is not None:
        lines += [f"FINDING {f}" for f in conf.findings()]
    state = " (interrupted: partial report)" if report.interrupted else ""
    lines.append(f"target {report.target}  mode {report.mode}  load {report.load}  "
                 f"workers {report.workers}{state}")
    lines.append(_requests_line(report))
    codes = ", ".join(f"{k}: {v}" for k, v in sorted({**s.statuses, **s.errors}.items()))
    lines.append(f"statuses {codes or '-'}")
    lines.append("latency ms      count     p50     p90     p99   p99.9     max")
    rows = [("all", s.latency), *((o, s.by_outcome[o]) for o in ANSWERS)]
    if s.ttfb.count:
        rows.append(("ttfb", s.ttfb))
    if s.lateness.count:
        rows.append(("send lateness", s.lateness))
    if s.report_latency.count:
        rows.append(("usage report", s.report_latency))
    for name, hist in rows:
        m = hist.summary_ms()
        lines.append(f"  {name:<13}{hist.count:>7} {_ms(m['p50']):>7} {_ms(m['p90']):>7} "
                     f"{_ms(m['p99']):>7} {_ms(m['p99.9']):>7} {_ms(m['max']):>7}")
    ranked = sorted(s.keys, key=lambda name: (-s.keys[name].requests, name))
    width = max([22, *(len(key) + 1 for key in ranked[:top])])  # long keys keep columns
    lines.append(f"{'key':<{width + 2}} requests  allowed  limited   errors   tokens")
    for key in ranked[:top]:
        k = s.keys[key]
        lines.append(f"  {key:<{width}}{k.requests:>9}{k.allowed:>9}{k.limited:>9}{k.errors:>9}"
                     f"{k.tokens_admitted:>9}")
    if len(ranked) > top:
        rest = ranked[top:]
        lines.append(f"  ... {len(rest)} more keys ({sum(s.keys[k].requests for k in rest)} "
                     "requests); --top N shows more, the JSON report has every key")
    if conf is not None:
        pct = "-" if conf.agreement is None else f"{conf.agreement:.3f}%"
        lines.append(f"conformance {pct} agreement over {conf.compared} unambiguous requests; "
                     f"{conf.ambiguous} ambiguous (order or second boundary), "
                     f"{conf.not_compared} errors not compared")
        for key in sorted(conf.keys):
            k2 = conf.keys[key]
            if k2.over_admitted or k2.under_admitted:
                lines.append(f"  {key}: {k2.over_admitted} over-admitted (+{k2.tokens_above} "
                             f"tokens), {k2.under_admitted} under-admitted "
                             f"(-{k2.tokens_below} tokens)")
    return "\n".join(lines)
