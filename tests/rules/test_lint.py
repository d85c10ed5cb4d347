"""Every finding code, with exact code, severity, rule, field, line and column."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import SAMPLES
from tokenlimit.errors import RuleError, RulesRejected
from tokenlimit.rules import Finding, Severity, lint, load_rules, parse_rules_text, require_valid
from tokenlimit.rules.codes import CODES
from tokenlimit.rules.formats import failed_report

MISTAKES = str(SAMPLES / "mistakes.json")
GOOD = {"max_tokens": 200, "tokens_per_fill": 50, "fill_interval_second": 30,
        "redis_expired_seconds": 300}


def _rules_json(*rules: dict[str, object]) -> str:
    import json

    return json.dumps([{"rate_limit_key_regex": "^k$", **GOOD, **rule} for rule in rules])


def _lint(*rules: dict[str, object]) -> list[Finding]:
    return lint(parse_rules_text(_rules_json(*rules), "r.json", fmt="json"))


def _one(findings: list[Finding], code: str) -> Finding:
    found = [f for f in findings if f.code == code]
    assert len(found) == 1, [f.code for f in findings]
    return found[0]


def _row(f: Finding) -> tuple[object, ...]:
    loc = f.location
    assert loc is not None
    return (f.code, f.severity.value, f.rule_index, f.field, loc.line, loc.column)


MISTAKE_ROWS = [
    ("TL305", "info", None, None, 1, 1),
    ("TL306", "info", None, None, 1, 1),
    ("TL202", "warning", 0, "max_tokens", 2, 57),
    ("TL201", "warning", 1, "tokens_per_fill", 3, 84),
    ("TL203", "warning", 2, "tokens_per_fill", 4, 82),
    ("TL308", "info", 2, None, 4, 3),
    ("TL204", "warning", 3, "redis_expired_seconds", 5, 139),
    ("TL308", "info", 3, None, 5, 3),
    ("TL205", "warning", 4, "redis_expired_seconds", 6, 144),
    ("TL308", "info", 4, None, 6, 3),
    ("TL108", "error", 5, "fill_interval_second", 7, 116),
    ("TL109", "error", 6, "redis_expired_seconds", 8, 140),
    ("TL110", "error", 7, "redis_expired_seconds", 9, 142),
    ("TL103", "error", 8, "max_tokens", 10, 58),
    ("TL104", "error", 8, "tokens_per_fill", 10, 84),
    ("TL105", "error", 8, "fill_interval_second", 10, 114),
    ("TL106", "error", 9, "max_tokens", 11, 3),
    ("TL206", "warning", 9, "max_token", 11, 43),
    ("TL207", "warning", 10, "max_tokens", 12, 144),
    ("TL208", "info", 10, "tokens_per_fill", 12, 63),
    ("TL308", "info", 10, None, 12, 3),
    ("TL107", "error", 11, "rate_limit_key_regex", 13, 28),
    ("TL308", "info", 11, None, 13, 3),
    ("TL304", "info", 12, "rate_limit_key_regex", 14, 28),
    ("TL308", "info", 12, None, 14, 3),
    ("TL303", "info", 13, "rate_limit_key_regex", 15, 28),
    ("TL304", "info", 13, "rate_limit_key_regex", 15, 28),
    ("TL308", "info", 13, None, 15, 3),
    ("TL301", "warning", 14, "rate_limit_key_regex", 16, 28),
    ("TL308", "info", 14, None, 16, 3),
    ("TL302", "warning", 15, "rate_limit_key_regex", 17, 28),
    ("TL308", "info", 15, None, 17, 3),
    ("TL307", "info", 16, "rate_limit_key_regex", 18, 28),
    ("TL308", "info", 16, None, 18, 3),
    ("TL102", "error", 17, None, 19, 3),
]


def test_mistakes_sample_yields_every_finding_exactly() -> None:
    findings = lint(load_rules(MISTAKES))
    assert [_row(f) for f in findings] == MISTAKE_ROWS
    assert {f.location.path for f in findings if f.location} == {MISTAKES}


def test_mistakes_sample_shows_every_code_a_json_file_can_trigger() -> None:
    whole_document_only = {"TL100", "TL112", "TL113", "TL114"}
    # A null rule (TL111) would be a catch-all and change every coverage finding of the
    # sample; invalid UTF-8 (TL115) does not belong in a sample. tests/rules/test_go_corpus.py
    # checks both.
    elsewhere = {"TL111", "TL115"}
    emitted = {f.code for f in lint(load_rules(MISTAKES))}
    assert emitted == {c.code for c in CODES} - whole_document_only - elsewhere


def test_every_code_has_the_severity_of_the_table() -> None:
    table = {c.code: c.severity for c in CODES}
    for finding in lint(load_rules(MISTAKES)):
        assert finding.severity is table[finding.code], finding.code


@pytest.mark.parametrize("name", ["rules.json", "rules.yaml", "deployment.yaml"])
def test_documentation_rules_have_no_errors_and_no_warnings(name: str) -> None:
    findings = lint(load_rules(SAMPLES / name))
    assert [f.code for f in findings] == [
        "TL305", "TL306", "TL304", "TL308", "TL303", "TL304", "TL308"]
    assert require_valid(load_rules(SAMPLES / name)) == findings


MESSAGES = {
    "TL201": "tokens_per_fill is 0: a new bucket starts with 0 tokens and refills add nothing, "
             "so every check for a key of this rule is denied, for good",
    "TL202": "max_tokens is 0: a new bucket starts at tokens_per_fill (50) and can admit "
             "requests only until its first refill, which caps the balance at 0; from then on "
             "every check is denied until the bucket expires",
    "TL203": "tokens_per_fill (500) is more than max_tokens (100): a new or expired bucket "
             "starts at 500, above the cap, but a refill never leaves more than 100 (it can even "
             "lower the balance): a drained key gets at most 100 tokens per interval, yet a key "
             "whose bucket expires starts again at 500",
    "TL204": "redis_expired_seconds (30) is shorter than fill_interval_second (60): a bucket "
             "expires before its first refill is due, so it never refills; it restarts at "
             "tokens_per_fill (50) on the first check after it expired, debt forgiven: a key "
             "gets up to 50 tokens about every 30 s, not every 1 min",
    "TL205": "an emptied bucket left idle expires after 2 min, before it could refill to "
             "max_tokens (1,000 takes 1 h 40 min from empty): a key that pauses gets back at "
             "most 20 tokens, or restarts at 10 (debt forgiven) once its bucket has expired",
    "TL110": "redis_expired_seconds is negative (-1): Redis deletes the keys as soon as they are "
             "written, the check script fails and every check for this rule answers 400 (then "
             "the plug-in's fail-open setting decides)",
    "TL206": "unknown field 'max_token' in rule 9: the service ignores it silently. max_tokens "
             "is missing, so it keeps its zero value.",
    "TL301": "rule 14 ('^team-red') is shadowed: every key it matches is taken first by rule 12 "
             "(e.g. 'team-red' takes rule 12), so it never applies",
    "TL302": "rule 15 ('^team-') matches exactly the keys rule 12 matches (the same regex): "
             "rule 12 comes first, so rule 15 never applies",
    "TL303": "rule 13 ('-dev$') and rule 12 ('^team-') both match keys such as 'team-dev'; "
             "such a key takes rule 12 (the first match wins)",
    "TL305": "no catch-all rule: a key that matches no rule, such as 'anonymous', is never "
             "limited; checks store nothing for it, but each usage report for it writes a Redis "
             "key with no TTL (a slow leak)",
    "TL307": "regex '^\\\\p{Greek}+$': shadowing and overlap analysis skipped for this rule "
             "(it uses the escape \\p)",
}


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_messages_say_what_the_service_does(code: str) -> None:
    assert _one(lint(load_rules(MISTAKES)), code).message == MESSAGES[code]


@pytest.mark.parametrize("field,message", [
    ("max_tokens", "max_tokens is negative (-5): a new bucket starts at tokens_per_fill and "
     "can admit requests only until its first refill, which caps the balance at -5; from then "
     "on every check is denied until the bucket expires"),
    ("tokens_per_fill", "tokens_per_fill is negative (-5): a new bucket starts below zero and "
     "every refill lowers it further: every check for a key of this rule is denied, for good"),
    ("fill_interval_second", "fill_interval_second is negative (-5): the number of elapsed "
     "intervals is never positive, so the bucket never refills; it only restarts at "
     "tokens_per_fill when it expires"),
])
def test_negative_numbers_say_what_happens(field: str, message: str) -> None:
    findings = _lint({field: -5})
    assert _one(findings, "TL110").message == message
    assert [f.code for f in findings if f.severity is not Severity.INFO] == ["TL110"]


def test_unknown_field_next_to_the_real_one_changes_nothing() -> None:
    found = _one(_lint({"max_token": 7}), "TL206")
    assert found.message == ("unknown field 'max_token' in rule 0: the service ignores it "
                             "silently. (max_tokens is also set, so this line changes nothing.)")


def test_ttl_exactly_the_time_to_fill_is_fine_one_second_less_is_not() -> None:
    assert "TL205" not in {f.code for f in _lint({"redis_expired_seconds": 120})}
    found = _one(_lint({"redis_expired_seconds": 119}), "TL205")
    assert (found.rule_index, found.field) == (0, "redis_expired_seconds")


def test_whole_document_codes() -> None:
    null = parse_rules_text("null", "n.json")
    assert [_row(f) for f in lint(null)] == [("TL112", "warning", None, None, 1, 1)]
    empty = parse_rules_text("\n  []", "e.json")
    assert [_row(f) for f in lint(empty)] == [("TL114", "warning", None, None, 2, 3)]
    manifest = "\n---\n".join(
        f"kind: ConfigMap\nmetadata: {{name: m{i}}}\ndata:\n  RATE_LIMIT_CONFIG: '[]'"
        for i in range(2))
    codes = [_row(f) for f in lint(parse_rules_text(manifest, "m.yaml"))]
    # TL113 points at the second value (its quote), TL114 at the first array's "[".
    assert codes == [("TL113", "warning", None, None, 9, 22),
                     ("TL114", "warning", None, None, 4, 23)]


def test_unreadable_rules_become_one_located_tl100() -> None:
    with pytest.raises(RuleError) as info:
        parse_rules_text('[\n  {"max_tokens": 1,}\n]', "x.json", fmt="json")
    report = failed_report(info.value)
    assert [_row(f) for f in report.findings] == [("TL100", "error", None, None, 2, 20)]


def test_shadowed_by_several_rules_together_names_them_all() -> None:
    findings = _lint({"rate_limit_key_regex": "^a"}, {"rate_limit_key_regex": "^[^a]"},
                     {"rate_limit_key_regex": "x"})
    assert _one(findings, "TL301").message == (
        "rule 2 ('x') is shadowed: every key it matches is taken first by rules 0, 1 (e.g. 'x' "
        "takes rule 1), so it never applies")


def test_a_regex_matching_nothing_never_applies() -> None:
    found = _one(_lint({"rate_limit_key_regex": "a^"}), "TL301")
    assert found.message == "rule 0's regex 'a^' matches no key at all: the rule never applies"


def test_equivalent_regexes_written_differently_are_duplicates() -> None:
    found = _one(_lint({"rate_limit_key_regex": "vip"}, {"rate_limit_key_regex": "v(ip)+"}),
                 "TL302")
    assert "a different regex, 'vip', for the same keys" in found.message


def test_a_catch_all_silences_tl305_and_unsupported_syntax_is_skipped() -> None:
    findings = _lint({"rate_limit_key_regex": "(?m)^vip"}, {"rate_limit_key_regex": ".*"})
    codes = [f.code for f in findings]
    assert "TL305" not in codes
    assert _one(findings, "TL307").message == (
        "regex '(?m)^vip': shadowing and overlap analysis skipped for this rule (it uses the "
        "(?m) flag)")


def test_case_insensitive_rules_are_analysed() -> None:
    findings = _lint({"rate_limit_key_regex": "(?i)^vip"}, {"rate_limit_key_regex": "^VIP-1"})
    assert _one(findings, "TL301").message == (
        "rule 1 ('^VIP-1') is shadowed: every key it matches is taken first by rule 0 (e.g. "
        "'VIP-1' takes rule 0), so it never applies")


def test_client_key_collision_is_shown_with_verified_keys() -> None:
    found = _one(lint(load_rules(SAMPLES / "rules.json")), "TL306")
    assert found.message.endswith(
        "e.g. 'subscriber' takes rule 1 (100 tokens/min), and collides with another key's "
        "state: 'subscriber_last_fill_time' is checked against rule 1 and its balance is the "
        "key where 'subscriber' keeps its last refill time")


def test_unanchored_match_example_for_the_documentation_rule() -> None:
    found = next(f for f in lint(load_rules(SAMPLES / "rules.json")) if f.code == "TL304")
    assert found.message == ("regex 'regular-user.*' is searched anywhere in the key, not "
                             "matched whole: it also takes 'not-regular-user'")
    assert found.hint == ("Start it with ^ if the key must begin with the match, e.g. "
                          "'^regular-user.*'.")


def test_rules_that_are_not_objects_take_no_part_in_the_analysis() -> None:
    text = '["oops", {"rate_limit_key_regex": "^a$", "max_tokens": 5, "tokens_per_fill": 5,' \
           ' "fill_interval_second": 1, "redis_expired_seconds": 9}]'
    codes = [f.code for f in lint(parse_rules_text(text, "x.json"))]
    assert "TL301" not in codes and codes.count("TL102") == 1


def test_require_valid_refuses_error_findings() -> None:
    with pytest.raises(RulesRejected) as info:
        require_valid(load_rules(MISTAKES))
    assert [f.code for f in info.value.findings] == [
        "TL108", "TL109", "TL110", "TL103", "TL104", "TL105", "TL106", "TL107", "TL102"]


def test_figures_of_the_documentation_rule() -> None:
    found = [f for f in lint(load_rules(SAMPLES / "rules.json")) if f.code == "TL308"]
    assert found[0].message == (
        "rule 0: sustained up to 100 tokens/min (144,000/day); a new key starts with 50 tokens; "
        "burst up to 200; refills from empty to full in 2 min; the bucket expires 5 min after "
        "its last refill (then it restarts, debt forgiven)")


WASM_MANIFEST = """\
apiVersion: extensions.istio.io/v1alpha1
kind: WasmPlugin
metadata: {name: llm-token-ratelimit}
spec:
  pluginConfig:
    rateLimitKeys: ["{{request.headers.user-type}}"]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: limits}
data:
  RATE_LIMIT_CONFIG: '[{"rate_limit_key_regex": "^vip$", "max_tokens": 10,
    "tokens_per_fill": 5, "fill_interval_second": 1, "redis_expired_seconds": 10}]'
"""


def test_wasmplugin_keys_from_a_header_are_named_where_they_are_set() -> None:
    found = _one(lint(parse_rules_text(WASM_MANIFEST, "m.yaml")), "TL306")
    assert _row(found) == ("TL306", "info", None, None, 6, 21)
    assert found.message == (
        "the plug-in's rateLimitKeys '{{request.headers.user-type}}' builds the key from what "
        "the client sends, so the key is the client's choice: a client that sets it picks its "
        "own rule, e.g. 'vip' takes rule 0 (300 tokens/min)")


def test_wasmplugin_keys_from_trusted_attributes_need_no_warning() -> None:
    trusted = WASM_MANIFEST.replace("request.headers.user-type", "source.principal")
    assert "TL306" not in [f.code for f in lint(parse_rules_text(trusted, "m.yaml"))]


def _rule_then_catch_all(regex: str) -> list[Finding]:
    rules = [{"rate_limit_key_regex": regex, "max_tokens": 10, "tokens_per_fill": 5,
              "fill_interval_second": 60, "redis_expired_seconds": 600},
             {"rate_limit_key_regex": ".*", "max_tokens": 10, "tokens_per_fill": 5,
              "fill_interval_second": 60, "redis_expired_seconds": 600}]
    return [f for f in lint(parse_rules_text(json.dumps(rules), "x.json")) if f.code == "TL304"]


def test_a_prefix_rule_is_told_to_say_so_not_to_become_an_exact_match() -> None:
    (found,) = _rule_then_catch_all("^team-")
    assert found.message == ("regex '^team-' is searched anywhere in the key, not matched "
                             "whole: it also takes 'team-other'")
    assert found.hint == ("A prefix rule? Write '^team-.*' to say so (the same keys, and no "
                          "TL304); add $ only if the key must end where the match ends.")
    assert "'^team-$'" not in found.hint
    assert _rule_then_catch_all("^team-.*") == []  # the hint's own regex is not flagged


def test_a_suffix_rule_is_told_to_say_so() -> None:
    (found,) = _rule_then_catch_all("-team1$")
    assert found.message.endswith("it also takes 'not-team1'")
    assert found.hint.startswith("A suffix rule? Write '^.*-team1$' to say so")
    assert _rule_then_catch_all("^.*-team1$") == []


def test_no_unanchored_finding_whose_only_example_holds_a_newline() -> None:
    # '^tenant-0000-.*' also "takes" 'tenant-0000-\n' (. stops at a newline), but no request
    # key holds one: it is matched whole in practice.
    assert _rule_then_catch_all("^tenant-0000-.*") == []
    (found,) = _rule_then_catch_all("^tenant-0000-")
    assert found.message.endswith("it also takes 'tenant-0000-other'")


def test_disjoint_rules_are_not_compared_pair_by_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,000 tenant rules took 100 s when each rule was compared with every earlier one; a rule
    # that shares no key with the union of the earlier ones needs no pairwise look at all.
    from tokenlimit.rules import coverage

    calls: list[int] = []
    real = coverage._Study.overlap

    def counted(self: Any, item: Any, other: Any) -> Any:
        calls.append(1)
        return real(self, item, other)

    monkeypatch.setattr(coverage._Study, "overlap", counted)
    tenants = [{"rate_limit_key_regex": f"^tenant-{i:03d}-", "max_tokens": 10,
                "tokens_per_fill": 5, "fill_interval_second": 60, "redis_expired_seconds": 600}
               for i in range(200)]
    found = lint(parse_rules_text(json.dumps(tenants), "t.json"))
    assert calls == []
    assert sum(f.code == "TL304" for f in found) == 200
    # An overlapping rule is still compared with the earlier ones, and its overlap found.
    overlapping = [*tenants[:3], {**tenants[0], "rate_limit_key_regex": "tenant-001"}]
    found = lint(parse_rules_text(json.dumps(overlapping), "t.json"))
    assert len(calls) == 3
    # 'tenant-001' is unanchored: it also overlaps the other tenants' prefixes.
    assert [f.message for f in found if f.code == "TL303"] == [
        f"rule 3 ('tenant-001') and rule {i} ('^tenant-00{i}-') both match keys such as "
        f"{key!r}; such a key takes rule {i} (the first match wins)"
        for i, key in ((0, "tenant-000-tenant-001"), (1, "tenant-001-"),
                       (2, "tenant-002-tenant-001"))]
