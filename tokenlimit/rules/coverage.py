"""Which keys each rule really takes: shadowing, duplicates, overlaps, unanchored matches.

Decided on the regexes themselves with automata (``rules.automata``), never by sampling; every
example key shown is checked again with the real RE2 matcher first. A regex whose syntax the
automata do not cover gets an info finding (TL307) and is left out; the conclusions that
remain stay true (a rule covered by the analysed earlier rules is covered by all of them).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from tokenlimit.rules.automata import Alphabet, Dfa, TooLarge, char_sets, full_dfa
from tokenlimit.rules.automata import search_dfa as _search_dfa
from tokenlimit.rules.figures import figures_of, number
from tokenlimit.rules.findings import Finding, Severity
from tokenlimit.rules.model import REGEX_FIELD, Location, Rule
from tokenlimit.rules.products import empty_dfa, find_word, union
from tokenlimit.rules.re2syntax import Regex, Unsupported, parse_re2
from tokenlimit.rules.regex import RuleMatcher, compile_go_regex

W, N = Severity.WARNING, Severity.INFO
LAST_FILL_SUFFIX = "_last_fill_time"
# Envoy attributes a client writes itself (headers, path, query, host).
_CLIENT_SET = re.compile(r"request\.(headers|path|url_path|query|host)\b")


@dataclass(frozen=True, slots=True)
class _Analysed:
    rule: Rule
    search: Dfa
    full: Dfa


class _Disagreement(Exception):
    """RE2 does not confirm an example the automata produced: trust RE2, skip the rule."""


def analyse_regexes(rules: Sequence[Rule], where: Location | None,
                    templates: Sequence[tuple[str, Location]] = ()) -> list[Finding]:
    """Cross-rule findings for ``rules`` (all of which RE2 compiles), in list order.

    ``templates``: the plug-in's rateLimitKeys when the manifest holds its WasmPlugin.
    """
    if not rules:
        return []
    findings: list[Finding] = []
    trees: list[tuple[Rule, Regex]] = []
    first_with: dict[str, Rule] = {}
    for rule in rules:
        if rule.regex in first_with:  # the same text: a duplicate whatever its syntax
            findings.append(_duplicate(rule, first_with[rule.regex]))
            continue
        first_with[rule.regex] = rule
        try:
            trees.append((rule, parse_re2(rule.regex)))
        except (Unsupported, RecursionError) as exc:
            findings.append(_skipped(rule, f"it uses {exc}"))
    alphabet = Alphabet(s for _, tree in trees for s in char_sets(tree))
    analysed: list[_Analysed] = []
    for rule, tree in trees:
        try:
            analysed.append(_Analysed(rule, _search_dfa(tree, alphabet), full_dfa(tree, alphabet)))
        except TooLarge as exc:
            findings.append(_skipped(rule, str(exc)))
    study = _Study(rules, analysed, alphabet)
    for position, item in enumerate(analysed):
        try:
            findings.extend(study.rule_findings(position, item))
            study.taken = union(study.taken, item.search, alphabet)
        except _Disagreement as exc:
            findings.append(_skipped(item.rule, f"RE2 and the automaton disagree on {exc}"))
        except TooLarge as exc:
            findings.append(_skipped(item.rule, str(exc)))
    # Nothing proven either way: say nothing rather than guess.
    with contextlib.suppress(TooLarge, _Disagreement):
        findings.extend(study.global_findings(where, templates))
    return findings


def unanchored_hint(regex: str) -> str:
    """TL304's hint: say a prefix (or suffix) rule out loud; never turn it into an exact match.

    >>> unanchored_hint("^team-").split("; ")[0]
    "A prefix rule? Write '^team-.*' to say so (the same keys, and no TL304)"
    >>> unanchored_hint("-team$").split("; ")[0]
    "A suffix rule? Write '^.*-team$' to say so (the same keys, and no TL304)"
    >>> unanchored_hint("gold|silver")
    "Start it with ^ if the key must begin with the match, e.g. '^(?:gold|silver)'."
    """
    plain = "|" not in regex
    ends = regex.endswith("$") and not regex.endswith("\\$")
    if plain and regex.startswith("^") and not ends:
        return (f"A prefix rule? Write {regex + '.*'!r} to say so (the same keys, and no "
                "TL304); add $ only if the key must end where the match ends.")
    if plain and ends and not regex.startswith("^"):
        return (f"A suffix rule? Write {'^.*' + regex!r} to say so (the same keys, and no "
                "TL304); add ^ only if the key must begin where the match begins.")
    grouped = f"(?:{regex})" if not plain else regex
    return f"Start it with ^ if the key must begin with the match, e.g. {'^' + grouped!r}."


def _skipped(rule: Rule, why: str) -> Finding:
    return Finding(
        "TL307", N,
        f"regex {rule.regex!r}: shadowing and overlap analysis skipped for this rule ({why})",
        "The rule still works in the service; check its overlaps with `--key` examples.",
        rule.index, REGEX_FIELD, rule.location_of(REGEX_FIELD))


def _duplicate(rule: Rule, first: Rule) -> Finding:
    same = "the same regex" if first.regex == rule.regex else (
        f"a different regex, {first.regex!r}, for the same keys")
    return Finding(
        "TL302", W,
        f"rule {rule.index} ({rule.regex!r}) matches exactly the keys rule {first.index} "
        f"matches ({same}): rule {first.index} comes first, so rule {rule.index} never "
        "applies",
        f"Remove rule {rule.index}, or merge its numbers into rule {first.index}.",
        rule.index, REGEX_FIELD, rule.location_of(REGEX_FIELD))


class _Study:
    def __init__(self, rules: Sequence[Rule], analysed: list[_Analysed],
                 alphabet: Alphabet) -> None:
        self.rules = tuple(rules)
        self.analysed = analysed
        self.alphabet = alphabet
        self.matcher = RuleMatcher(rules)
        self.shadowed: set[int] = set()
        # The keys the analysed rules so far take, as one minimal automaton: checking a rule
        # against it is a product of two automata, not of all the earlier ones.
        self.taken = empty_dfa(alphabet)

    def taken_by(self, key: str) -> int | None:
        """The original index of the rule the service picks for ``key``."""
        position = self.matcher.index_for(key)
        return None if position is None else self.rules[position].index

    @staticmethod
    def matches(rule: Rule, key: str) -> bool:
        return compile_go_regex(rule.regex).search(key) is not None

    def confirm(self, ok: bool, key: str) -> None:
        if not ok:
            raise _Disagreement(repr(key))

    def rule_findings(self, position: int, item: _Analysed) -> list[Finding]:
        rule = item.rule
        earlier = self.analysed[:position]
        if find_word([item.search, self.taken], self.alphabet,
                     lambda a: a[0] and not a[1]) is None:
            # Shadowed; a duplicate is the special case of one earlier rule with the same keys.
            self.shadowed.add(rule.index)
            for other in earlier:
                same = other.rule.regex == rule.regex or find_word(
                    [other.search, item.search], self.alphabet, lambda a: a[0] != a[1]) is None
                if same:
                    return [_duplicate(rule, other.rule)]
            return [self.shadow(item, earlier)]
        if find_word([item.search], self.alphabet, lambda a: not a[0]) is None:
            return []  # a catch-all: overlapping every earlier rule is its purpose
        found: list[Finding | None] = []
        if find_word([item.search, self.taken], self.alphabet,
                     lambda a: a[0] and a[1]) is not None:
            # Some earlier rule shares a key with this one: find which. Checking the union of
            # the earlier rules first keeps disjoint rules (tenants, tiers) linear, not
            # quadratic, in the number of rules.
            found = [self.overlap(item, other) for other in earlier]
        found.append(self.unanchored(item))
        return [f for f in found if f is not None]

    def shadow(self, item: _Analysed, earlier: list[_Analysed]) -> Finding:
        rule = item.rule
        example = find_word([item.search], self.alphabet, lambda a: a[0])
        if example is None:
            message = (f"rule {rule.index}'s regex {rule.regex!r} matches no key at all: "
                       "the rule never applies")
        else:
            taken = self.taken_by(example)
            self.confirm(self.matches(rule, example) and taken is not None
                         and taken < rule.index, example)
            covering = [o.rule.index for o in earlier if find_word(
                [item.search, o.search], self.alphabet, lambda a: a[0] and not a[1]) is None]
            if not covering:  # no single rule covers it: name every rule that takes a share
                covering = [o.rule.index for o in earlier if find_word(
                    [o.search, item.search], self.alphabet, lambda a: a[0] and a[1]) is not None]
            names = ", ".join(str(index) for index in covering)
            rules_word = "rule" if len(covering) == 1 else "rules"
            message = (f"rule {rule.index} ({rule.regex!r}) is shadowed: every key it matches "
                       f"is taken first by {rules_word} {names} (e.g. {example!r} takes rule "
                       f"{taken}), so it never applies")
        return Finding(message=message, code="TL301", severity=W,
                       hint="Move the rule before the rules that cover it, or remove it.",
                       rule_index=rule.index, field=REGEX_FIELD,
                       location=rule.location_of(REGEX_FIELD))

    def overlap(self, item: _Analysed, other: _Analysed) -> Finding | None:
        key = find_word([other.search, item.search], self.alphabet, lambda a: a[0] and a[1])
        if key is None:
            return None
        rule, first = item.rule, other.rule
        taken = self.taken_by(key)
        self.confirm(self.matches(rule, key) and self.matches(first, key)
                     and taken is not None and taken <= first.index, key)
        return Finding(
            "TL303", N,
            f"rule {rule.index} ({rule.regex!r}) and rule {first.index} ({first.regex!r}) "
            f"both match keys such as {key!r}; such a key takes rule {taken} (the first "
            "match wins)",
            "Anchor the regexes (^...$) or order the rules so the intended one comes first.",
            rule.index, REGEX_FIELD, rule.location_of(REGEX_FIELD))

    def unanchored(self, item: _Analysed) -> Finding | None:
        rule = item.rule
        # Only keys a request can carry: '^tenant-.*' also "takes" 'tenant-\n', but no header
        # holds a newline, so it is matched whole in practice.
        extra = find_word([item.search, item.full], self.alphabet, lambda a: a[0] and not a[1],
                          printable=True)
        if extra is None:
            return None
        whole = find_word([item.full], self.alphabet, lambda a: a[0], printable=True)
        pattern = compile_go_regex(rule.regex)
        candidates = []
        if whole is not None:
            head = "not" if whole[:1] in ("-", "_", ".") else "not-"
            tail = "0" if whole[-1:].isdigit() else (
                "other" if whole[-1:] in ("-", "_", ".") else "-other")
            candidates = [head + whole, whole + tail]
        key = next((c for c in candidates if pattern.search(c) is not None
                    and pattern.fullmatch(c) is None), extra)
        self.confirm(pattern.search(key) is not None and pattern.fullmatch(key) is None, key)
        return Finding(
            "TL304", N,
            f"regex {rule.regex!r} is searched anywhere in the key, not matched whole: it also "
            f"takes {key!r}",
            unanchored_hint(rule.regex),
            rule.index, REGEX_FIELD, rule.location_of(REGEX_FIELD))

    def global_findings(self, where: Location | None,
                        templates: Sequence[tuple[str, Location]]) -> list[Finding]:
        found = []
        nothing = find_word([self.taken], self.alphabet, lambda a: not a[0])
        if nothing is not None:
            key = next((c for c in ("anonymous", "guest", nothing)
                        if self.matcher.index_for(c) is None), None)
            if key is not None:
                found.append(Finding(
                    "TL305", N,
                    f"no catch-all rule: a key that matches no rule, such as "
                    f"{key!r}{' (the empty key)' if not key else ''}, is never limited; "
                    "checks store nothing for it, but each usage report for it writes a Redis "
                    "key with no TTL (a slow leak)",
                    "Add a last rule with the regex '.*' (or '') and a budget for everyone else.",
                    None, None, where))
        found.extend(self.client_keys(where, templates))
        return found

    def client_keys(self, where: Location | None,
                    templates: Sequence[tuple[str, Location]]) -> list[Finding]:
        opening = ("keys come from request attributes (the plug-in's rateLimitKeys, e.g. "
                   "{{request.headers.user-type}}); when that is a header the client sends, the "
                   "key is the client's choice")
        if templates:
            chosen = [(t, loc) for t, loc in templates if _CLIENT_SET.search(t)]
            if not chosen:
                return []  # every key comes from attributes the mesh sets, not the client
            template, where = chosen[0]
            opening = (f"the plug-in's rateLimitKeys {template!r} builds the key from what the "
                       "client sends, so the key is the client's choice")
        ranked = [((f.tokens_per_minute, f.burst_tokens), item) for item in self.analysed
                  if (f := figures_of(item.rule)) is not None and item.rule.index not in
                  self.shadowed]
        detail = ""
        if ranked:
            (rate, _), best = max(ranked, key=lambda pair: pair[0])
            key = find_word([best.full], self.alphabet, lambda a: a[0])
            if key and self.taken_by(key) == best.rule.index:
                detail = (f": a client that sets it picks its own rule, e.g. {key!r} takes "
                          f"rule {best.rule.index} ({number(rate)} tokens/min)")
                twin = key + LAST_FILL_SUFFIX
                taken = self.taken_by(twin)
                if taken is not None:
                    detail += (f", and collides with another key's state: {twin!r} is checked "
                               f"against rule {taken} and its balance is the key where "
                               f"{key!r} keeps its last refill time")
        return [Finding(
            "TL306", N, opening + detail,
            "Set the header in a trusted layer (gateway or auth filter) that overwrites what "
            "clients send, or key on an authenticated identity.",
            None, None, where)]
