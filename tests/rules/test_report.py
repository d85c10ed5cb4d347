"""The machine formats: exact JSON, structurally valid SARIF 2.1.0, exact GitHub annotations."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from tests.conftest import SAMPLES
from tokenlimit.errors import RuleError
from tokenlimit.rules import load_rules, parse_rules_text
from tokenlimit.rules.codes import CODES
from tokenlimit.rules.formats import (
    failed_report,
    format_github,
    format_json,
    format_sarif,
    validate_rules,
)

VIP = ('[{"rate_limit_key_regex": "^vip$", "max_tokens": 100, "tokens_per_fill": 50,\n'
       '  "fill_interval_second": 60, "redis_expired_seconds": 600}]')
VIP_FIGURES = {"tokens_per_minute": 50.0, "tokens_per_day": 72000.0, "start_tokens": 50,
               "burst_tokens": 100, "seconds_to_full": 120, "lifetime_seconds": 600,
               "refills": True}


def test_json_document_is_exact() -> None:
    report = validate_rules(parse_rules_text(VIP, "vip.json"), ["vip", "guest"])
    where = {"path": "vip.json", "line": 1, "column": 1}
    assert json.loads(format_json(report)) == {
        "rules": [{
            "index": 0, "rate_limit_key_regex": "^vip$", "max_tokens": 100,
            "tokens_per_fill": 50, "fill_interval_second": 60, "redis_expired_seconds": 600,
            "location": {"path": "vip.json", "line": 1, "column": 2}, "figures": VIP_FIGURES,
        }],
        "findings": [
            {"code": "TL305", "severity": "info",
             "message": "no catch-all rule: a key that matches no rule, such as 'anonymous', is "
                        "never limited; checks store nothing for it, but each usage report for it "
                        "writes a Redis key with no TTL (a slow leak)",
             "hint": "Add a last rule with the regex '.*' (or '') and a budget for everyone "
                     "else.", "rule_index": None, "field": None, **where},
            {"code": "TL306", "severity": "info",
             "message": "keys come from request attributes (the plug-in's rateLimitKeys, e.g. "
                        "{{request.headers.user-type}}); when that is a header the client sends, "
                        "the key is the client's choice: a client that sets it picks its own "
                        "rule, e.g. 'vip' takes rule 0 (50 tokens/min)",
             "hint": "Set the header in a trusted layer (gateway or auth filter) that overwrites "
                     "what clients send, or key on an authenticated identity.",
             "rule_index": None, "field": None, **where},
            {"code": "TL308", "severity": "info",
             "message": "rule 0: sustained up to 50 tokens/min (72,000/day); a new key starts "
                        "with 50 tokens; burst up to 100; refills from empty to full in 2 min; "
                        "the bucket expires 10 min after its last refill (then it restarts, "
                        "debt forgiven)",
             "hint": "Run `tokenlimit validate --key KEY` to see which rule a key takes.",
             "rule_index": 0, "field": None, "path": "vip.json", "line": 1, "column": 2},
        ],
        "summary": {"errors": 0, "warnings": 0, "infos": 3},
        "keys": [
            {"key": "vip", "outcome": "limited", "rule_index": 0, "regex": "^vip$",
             "figures": VIP_FIGURES},
            {"key": "guest", "outcome": "unlimited", "rule_index": None, "regex": None,
             "figures": None},
        ],
    }


def test_keys_are_unknown_when_the_rules_cannot_be_matched() -> None:
    bad = VIP.replace("^vip$", "(?=vip)")
    report = validate_rules(parse_rules_text(bad, "vip.json"), ["vip"])
    assert [k.to_dict() for k in report.keys] == [
        {"key": "vip", "outcome": "unknown", "rule_index": None, "regex": None, "figures": None}]
    assert report.exit_status() == 1


def test_exit_status_follows_strictness() -> None:
    warned = validate_rules(parse_rules_text(VIP.replace('"max_tokens": 100', '"max_tokens": 10'),
                                             "w.json"))
    assert [f.code for f in warned.findings if f.severity.value == "warning"] == ["TL203"]
    assert (warned.exit_status(), warned.exit_status(strict=True)) == (0, 1)


# What GitHub code scanning reads from a SARIF upload (a subset of the 2.1.0 schema).
SARIF_SUBSET = {
    "type": "object",
    "required": ["version", "runs", "$schema"],
    "properties": {
        "version": {"const": "2.1.0"},
        "runs": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["tool", "results"],
            "properties": {
                "tool": {"type": "object", "required": ["driver"], "properties": {
                    "driver": {"type": "object", "required": ["name", "rules"], "properties": {
                        "name": {"type": "string"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["id", "shortDescription"],
                            "properties": {"id": {"type": "string"}, "shortDescription": {
                                "type": "object", "required": ["text"]}}}}}}}},
                "results": {"type": "array", "items": {
                    "type": "object", "required": ["ruleId", "level", "message", "locations"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": 0},
                        "level": {"enum": ["error", "warning", "note", "none"]},
                        "message": {"type": "object", "required": ["text"]},
                        "locations": {"type": "array", "minItems": 1, "items": {
                            "type": "object", "required": ["physicalLocation"],
                            "properties": {"physicalLocation": {
                                "type": "object", "required": ["artifactLocation", "region"],
                                "properties": {
                                    "artifactLocation": {"type": "object", "required": ["uri"],
                                                         "properties": {"uri": {
                                                             "type": "string",
                                                             "pattern": "^[^ <>\\\\]+$"}}},
                                    "region": {"type": "object",
                                               "required": ["startLine", "startColumn"],
                                               "properties": {
                                                   "startLine": {"type": "integer",
                                                                 "minimum": 1},
                                                   "startColumn": {"type": "integer",
                                                                   "minimum": 1}}}}}}}}}}}},
        }},
    },
}


def test_sarif_is_what_code_scanning_accepts() -> None:
    root = str(SAMPLES.parent)
    report = validate_rules(load_rules(SAMPLES / "mistakes.json"))
    document = json.loads(format_sarif(report, "9.9.9", root=root))
    jsonschema.validate(document, SARIF_SUBSET)
    run = document["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == [c.code for c in CODES]
    assert run["tool"]["driver"]["version"] == "9.9.9"
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    first = run["results"][2]
    assert first["ruleId"] == "TL202" and first["level"] == "warning"
    assert first["locations"][0]["physicalLocation"] == {
        "artifactLocation": {"uri": "samples/mistakes.json"},
        "region": {"startLine": 2, "startColumn": 57}}
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert (levels["TL107"], levels["TL301"], levels["TL308"]) == ("error", "warning", "note")


def test_sarif_for_unreadable_rules_and_pseudo_paths() -> None:
    report = failed_report(RuleError("invalid JSON: unexpected 'x'", path="<stdin>", line=3,
                                     column=4))
    document = json.loads(format_sarif(report, "0"))
    jsonschema.validate(document, SARIF_SUBSET)
    location = document["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert location == {"artifactLocation": {"uri": "%3Cstdin%3E"},
                        "region": {"startLine": 3, "startColumn": 4}}


def test_github_annotations_are_exact(tmp_path: Path) -> None:
    path = tmp_path / "rules, v2.json"
    path.write_text(VIP.replace('"max_tokens": 100', '"max_tokens": 10'))
    report = validate_rules(load_rules(path))
    lines = format_github(report, root=str(tmp_path)).splitlines()
    assert lines[2] == (
        "::warning file=rules%2C v2.json,line=1,col=73::TL203 tokens_per_fill (50) is more "
        "than max_tokens (10): a new or expired bucket starts at 50, above the cap, but a "
        "refill never leaves more than 10 (it can even lower the balance): a drained key gets "
        "at most 10 tokens per interval, yet a key whose bucket expires starts again at 50")
    assert [line.split("::")[1].split(" ")[0] for line in lines] == [
        "notice", "notice", "warning", "notice"]


def test_github_annotations_escape_newlines_and_skip_pseudo_files() -> None:
    report = failed_report(RuleError("bad\nthing 100%", path="<env:RATE_LIMIT_CONFIG>", line=1,
                                     column=1))
    assert format_github(report) == "::error::TL100 bad%0Athing 100%25\n"
