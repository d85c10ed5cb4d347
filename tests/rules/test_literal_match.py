"""Rule regexes that are a plain literal are matched by a string test: the same answer as the
RE2 and Pike-VM paths (which the Go corpus in test_go_corpus.py holds to Go) on any key."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tokenlimit.rules.gomatch import GoPattern

SHAPES = ["{}", "^{}", "{}$", "^{}$", ".*{}", "{}.*", ".*{}.*", "(?s).*{}.*?", "(?:{})",
          "^(?:{})$"]
NOT_LITERAL = ["(?i){}", "^.*{}", "{}.*$", "(?m)^{}", ".+{}", "({})", "{}|x", "\\b{}"]
KEYS = st.text(st.sampled_from(["a", "b", "-", "\n", "é", "\udcff", "\ufffd", "A"]),
               max_size=8)


@settings(max_examples=300, deadline=None)
@given(st.text(st.sampled_from("ab-A"), min_size=1, max_size=3), KEYS, st.data())
def test_a_literal_pattern_answers_as_the_regex_engines_do(literal: str, key: str,
                                                           data: st.DataObject) -> None:
    shape = data.draw(st.sampled_from(SHAPES + NOT_LITERAL))
    pattern = GoPattern(shape.format(literal))
    assert (pattern._literal is not None) == (shape in SHAPES), shape
    slow = GoPattern(shape.format(literal))
    slow._literal = None  # the engines' answer
    assert pattern.matches(key) == slow.matches(key), (shape, literal, key)


def test_the_shapes_rules_are_written_in_take_the_string_test() -> None:
    fast = {p: GoPattern(p)._literal is not None
            for p in ["regular-user.*", "^subscriber-", "tenant-a$", "^exact$", "(?i)vip",
                      "^.*vip", "user-[0-9]+"]}
    assert fast == {"regular-user.*": True, "^subscriber-": True, "tenant-a$": True,
                    "^exact$": True, "(?i)vip": False, "^.*vip": False, "user-[0-9]+": False}
    assert [GoPattern("^a$").matches(k) for k in ("a", "a\n", "\na", "aa")] == [
        True, False, False, False]
