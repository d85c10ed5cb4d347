"""The automata agree with RE2 on every key: the shadowing and overlap verdicts rest on it."""

from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tokenlimit.rules.automata import Alphabet, TooLarge, char_sets, full_dfa, search_dfa
from tokenlimit.rules.products import find_word
from tokenlimit.rules.re2syntax import Unsupported, parse_re2
from tokenlimit.rules.regex import compile_go_regex

ATOMS = ["a", "b", "-", ".", "[ab]", "[^a]", "[a-c]", r"\d", r"\w", r"\s", r"\W", "^", "$",
         r"\A", r"\z", "(?s:.)", "[[:alpha:]]", r"[^\d-]", r"\x41", r"\-", r"\Qa.\E", "a{2}",
         "(?i:k)", "(?i:[a-c])", r"(?i:\W)", "(?i:[^s])", "(?i:[[:upper:]])", r"(?i:\x41)", "K"]
QUANTIFIERS = ["", "", "", "*", "+", "?", "{1,2}", "{0,}", "*?", "{2}"]


@st.composite
def regexes(draw: st.DrawFn, depth: int = 0) -> str:
    if depth >= 2 or draw(st.booleans()):
        parts = draw(st.lists(st.sampled_from(ATOMS), min_size=0, max_size=4))
        body = "".join(p if p in ("^", "$", r"\A", r"\z") else p + draw(
            st.sampled_from(QUANTIFIERS)) for p in parts)
        return body
    left = draw(regexes(depth + 1))
    right = draw(regexes(depth + 1))
    group = draw(st.sampled_from(["({})", "(?:{})", "(?P<n{}>{})"]))
    inner = f"{left}|{right}" if draw(st.booleans()) else left
    wrapped = group.format(depth, inner) if "P<" in group else group.format(inner)
    return wrapped + draw(st.sampled_from(QUANTIFIERS))


KEYS = st.text(alphabet="ab-x\n0 A.kKsS\u212a\u017f", max_size=7)


@settings(max_examples=500, deadline=None)
@given(regexes(), st.lists(KEYS, min_size=1, max_size=12))
def test_search_and_full_automata_agree_with_re2(pattern: str, keys: list[str]) -> None:
    try:
        compiled = compile_go_regex(pattern)
    except ValueError:
        assume(False)
    tree = parse_re2(pattern)
    alphabet = Alphabet(char_sets(tree))
    try:
        search, full = search_dfa(tree, alphabet), full_dfa(tree, alphabet)
    except TooLarge:
        assume(False)  # the linter reports TL307 for these
    for key in keys:
        assert search.accepts(key, alphabet) == (compiled.search(key) is not None), key
        assert full.accepts(key, alphabet) == (compiled.fullmatch(key) is not None), key


@settings(max_examples=150, deadline=None)
@given(regexes(), regexes())
def test_a_witness_of_difference_is_confirmed_by_re2(first: str, second: str) -> None:
    try:
        one, two = compile_go_regex(first), compile_go_regex(second)
    except ValueError:
        assume(False)
    trees = [parse_re2(first), parse_re2(second)]
    alphabet = Alphabet(s for t in trees for s in char_sets(t))
    try:
        dfas = [search_dfa(t, alphabet) for t in trees]
    except TooLarge:
        assume(False)
    word = find_word(dfas, alphabet, lambda a: a[1] and not a[0])
    if word is not None:
        assert two.search(word) is not None and one.search(word) is None


@pytest.mark.parametrize("pattern,reason", [
    (r"\bword", "the escape \\b"), (r"\p{Greek}", "the escape \\p"),
    ("(?i)vipé", "(?i) with non-ASCII letters"), ("(?m)^a", "the (?m) flag"),
    (r"\C", "the escape \\C"),
    ("[[:nope:]]", "unknown POSIX class 'nope'"),
])
def test_syntax_without_a_plain_language_is_refused(pattern: str, reason: str) -> None:
    with pytest.raises(Unsupported) as info:
        parse_re2(pattern)
    assert str(info.value) == reason


def test_re2_braces_that_are_not_repetitions_are_literal() -> None:
    # RE2 reads a{,3} as the text "a{,3}", unlike Python's re.
    tree = parse_re2("a{,3}")
    alphabet = Alphabet(char_sets(tree))
    full = full_dfa(tree, alphabet)
    assert full.accepts("a{,3}", alphabet) and not full.accepts("aaa", alphabet)


def test_shortest_examples_are_readable() -> None:
    trees = [parse_re2("regular-user.*"), parse_re2("subscriber.*")]
    alphabet = Alphabet(s for t in trees for s in char_sets(t))
    dfas = [search_dfa(t, alphabet) for t in trees]
    assert find_word(dfas, alphabet, lambda a: a[0] and a[1]) == "subscriberegular-user"
    assert find_word(dfas, alphabet, lambda a: not any(a)) == ""
    assert find_word([dfas[0]], alphabet, lambda a: a[0]) == "regular-user"


TRICKY = ["[]a]", "[a-]", "[-a]", r"\x{263a}", r"\101", "(?s)a.b", "(?s:a).b", "a(?s).",
          "(?U)a+", "(?-s:.)", r"[^\n]", r"\.", "x{0}", "(a|)", "()", "a||b", "$^", "^$", "a^",
          "$a", "(?:^|-)vip(?:-|$)", "[[:^digit:]]", "a{,3}", "a{2,1000}", r"[\d\-x]", "é+",
          r"\Q*\E+", "(a*)*", "(?:a+)?", "(?:a|b?)+", "(()|(.*aaa)*)", "(.*a)*b", "(a*b*)*c",
          "[^\x00-\U0010ffff]", ""]


@pytest.mark.parametrize("pattern", TRICKY)
def test_tricky_syntax_agrees_with_re2(pattern: str) -> None:
    compiled = compile_go_regex(pattern)
    tree = parse_re2(pattern)
    alphabet = Alphabet(char_sets(tree))
    search, full = search_dfa(tree, alphabet), full_dfa(tree, alphabet)
    keys = ["", "a", "]", "-", "x-vip", "vip-1", "☺", "A", "a\nb", "axb", "aaa", "a{,3}", "é",
            "-vip-", "x", "5", "*", "**", ".", "\n"]
    for key in keys:
        assert search.accepts(key, alphabet) == (compiled.search(key) is not None), key
        assert full.accepts(key, alphabet) == (compiled.fullmatch(key) is not None), key
