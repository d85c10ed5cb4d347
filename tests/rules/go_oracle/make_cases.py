"""Build the corpus of configurations, regexes and (regex, key) pairs, and ask Go for verdicts.

Run once, by hand, where a Go toolchain is at hand (see README.md); the tests read only the
written ``tests/rules/go_verdicts.json`` and never need Go.

    python make_cases.py GOROOT ORACLE_BINARY > ../go_verdicts.json
"""

from __future__ import annotations

import bz2
import json
import re
import subprocess
import sys
from pathlib import Path

_SIMPLE = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "f": b"\f", "v": b"\v",
           "\\": b"\\", '"': b'"', "'": b"'", "0": b"\0"}


def go_unquote(text: str) -> str | None:
    """A Go double-quoted literal (without quotes) as text; ``None`` unless valid UTF-8."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "\\":
            out += ch.encode()
            i += 1
            continue
        esc = text[i + 1]
        if esc == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        elif esc in "uU":
            width = 4 if esc == "u" else 8
            out += chr(int(text[i + 2:i + 2 + width], 16)).encode("utf-8", "surrogatepass")
            i += 2 + width
        elif esc in "01234567":
            out.append(int(text[i + 1:i + 4], 8))
            i += 4
        else:
            out += _SIMPLE[esc]
            i += 2
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        return None


def search_blocks(lines: list[str],
                  every: int = 1) -> tuple[list[str], list[tuple[str, str]]]:
    """Regexes and (regex, string) pairs from RE2's search test files (every nth regex)."""
    regexes: list[str] = []
    pairs: list[tuple[str, str]] = []
    strings: list[str] = []
    mode = ""
    seen = 0
    for line in lines:
        if line in ("strings", "regexps"):
            if line == "strings":
                strings = []
            mode = line
            continue
        if not line.startswith('"'):
            continue
        value = go_unquote(line[1:-1])
        if value is None:
            continue
        if mode == "strings":
            strings.append(value)
        else:
            seen += 1
            if seen % every:
                continue
            regexes.append(value)
            pairs.extend((value, s) for s in strings)
    return regexes, pairs


def dat_cases(path: Path) -> tuple[list[str], list[tuple[str, str]]]:
    regexes, pairs = [], []
    for line in path.read_text(encoding="latin-1").splitlines():
        fields = [f for f in line.split("\t") if f]
        if len(fields) < 3 or line.startswith(("NOTE", "#", "{", "}")):
            continue
        pattern, subject = fields[1], fields[2]
        if pattern == "SAME" or not pattern.isascii():
            continue
        subject = "" if subject == "NULL" else subject
        regexes.append(pattern)
        pairs.append((pattern, subject))
    return regexes, pairs


def parse_test_regexes(path: Path) -> list[str]:
    text = path.read_text()
    found: list[str] = []
    for literal in re.findall(r"^\t\{(`[^`]*`|\"(?:[^\"\\]|\\.)*\"),", text, re.M):
        value = literal[1:-1] if literal[0] == "`" else go_unquote(literal[1:-1])
        if value is not None:
            found.append(value)
    block = text[text.index("var invalidRegexps"):text.index("func TestParseInvalidRegexps")]
    for literal in re.findall(r"^\t(`[^`]*`|\"(?:[^\"\\]|\\.)*\"),", block, re.M):
        value = literal[1:-1] if literal[0] == "`" else go_unquote(literal[1:-1])
        if value is not None:
            found.append(value)
    found += ["(" * 1000 + ")" * 1000, "(?:" * 1000 + ")*" * 1000,
              "(" + "(xx?)" * 1000 + "){1000}", "(xx?){1000}" * 1000]
    return found


def edge_regexes() -> list[str]:
    """The classes of the issue: repeat counts, nesting, names, program size, tables, \\B."""
    out = ["a{1000000000}", "x{1,9876543210}", "a{999999999}", "a{99999999}", "a{0001}",
           "a{1000}", "a{1001}", "a{1000,}", "a{,1000}", "(a{10}){100}", "(a{10}){101}",
           "(?P<é>a)", "(?<é>a)", "(?P<a1_>x)", "(?P<名>x)", "(?P<x>a)(?P<x>b)",
           "\\pL{500}", "(?:" + "|".join(f"x{i}{{1000}}" for i in range(1000)) + ")",
           "\\p{Han}", "\\P{Han}", "[\\p{Han}]", "\\p{Greek}\\p{Lu}", "(?i)\\p{Lu}", "\\pN",
           "\\p{Kawi}", "\\p{Nag_Mundari}", "\\p{Unknown}", "\\pZ", "\\p{^Greek}", "\\PL",
           "\\B", "\\b", "a\\Bé", "é\\B", "\\Bé", "\\bé", "x\\b", "(?i)k",
           "(?i)\u017f", "(?i)[k-l]", "(?i)\u03c3", "(?i)ǅ",
           "\\C", "a\\Cb", "\\Q\\C\\E", "(?=a)", "(a)\\1", "a++", "a*?",
           "(?U)a+", "(?m)^a$", "(?s).", "(?-s).", "(?i-s:a.)", "(?i:", "(?)", "(?-)",
           "[[:word:]]", "[[:^alpha:]]", "[[:foo:]]", "[\\d-z]", "[a-\\d]", "\\x{10FFFF}",
           "\\x{110000}", "\\x{}", "\\x1", "\\08", "\\8", "[^\\x00-\\x{10FFFF}]", "a|",
           "|", "()", "(|a)", "x*y*z*", "\\z", "$", "^", "\\A", "(?m)$", "\\Qa.b\\E+",
           "[]a]", "[^]a]", "[a-]", "a{", "a{1", "a{1,", "{1}", "a{-1}", "a**", "a*+",
           "\\d\\D\\s\\S\\w\\W", "\\pLu", "\\p{L}", "\\p{Lu", "\\p"]
    # nesting: Go counts captures and repetition operators, not (?:...) alone
    for n in (999, 1000, 1001):
        out += ["(" * n + "a" + ")" * n, "(?:" * n + "a" + ")" * n,
                "(?:" * n + "a" + ")*" * n, "(?:a" * n + ")+" * n,
                "(?:(?:" * n + ")?)" * n]
    out += ["a{1000}" * 3355, "a{1000}" * 3356, "\\pL" * 27000, "[\\pL\\pN]{3}"]
    return out


def edge_pairs() -> list[tuple[str, str]]:
    pairs = [("\\B", "aéa"), ("\\B", "aa"), ("\\B", "éé"), ("\\B", "é"), ("a\\Bé", "aé"),
             ("\\b", "é"), ("\\bé", "aé"), ("é\\B", "éé"), ("x\\b", "xé"), ("\\B\\B", "日本"),
             ("^\\B$", ""), ("\\B", ""), ("\\b", ""),
             ("\\p{Han}", "\U0002ebf0"), ("\\p{Han}", "\U0002ebe0"), ("\\p{Han}", "中"),
             ("\\P{Han}", "\U0002ebf0"), ("\\pL", "\U0002ebf0"), ("\\p{Lo}", "\U0002ebf0"),
             ("[^\\pL]", "\U0002ebf0"), ("\\p{Kawi}", "\U00011f00"), ("\\pN", "\U0001d2c0"),
             ("(?i)k", "\u212a"), ("(?i)s", "\u017f"), ("(?i)\u03c3", "\u03c2"), ("(?i)ǅ", "ǆ"),
             ("(?i)[k-l]", "\u212a"), ("(?i)\\p{Lu}", "a"), ("(?i)ß", "ẞ"), ("(?i)ᲀ", "в"),
             ("\\w", "é"), ("[[:word:]]", "é"), ("\\s", "\u00a0"), ("\\d", "٣"),
             (".", "\n"), ("(?s).", "\n"), ("^a$", "a\n"), ("(?m)^a$", "b\na\n"),
             ("a$", "a\n"), ("\\z", ""), ("x{0}", ""), ("\\x{10FFFF}", "\U0010ffff"),
             ("[^a]", "\U0010ffff"), ("(?i)[^k]", "\u212a"), ("a|b", "c"),
             ("\\pL{500}", "é" * 500), ("\\pL{500}", "é" * 499)]
    return pairs


def configs() -> list[bytes]:
    rule = b'{"rate_limit_key_regex": %s, "max_tokens": 10, "tokens_per_fill": 5, ' \
        b'"fill_interval_second": 1, "redis_expired_seconds": 60}'

    def one(regex: bytes) -> bytes:
        return b"[" + rule % regex + b"]"

    deep = [b'[' * 10000 + b']' * 10000, b'[' * 10001 + b']' * 10001,
            b'[{"x": ' + b'[' * 9998 + b']' * 9998 + b'}]',
            b'[{"x": ' + b'[' * 9999 + b']' * 9999 + b'}]',
            b'[{"x": ' + b'{"a":' * 9998 + b'1' + b'}' * 9998 + b'}]',
            b'[' * 600 + b']' * 600, b'[' + b'{"a":[' * 400 + b']}' * 400 + b']']
    out = [
        one(b'"\\ud83d\\ude00"'), one(b'"\\ud800"'), one(b'"\\udc00\\ud800x"'),
        one(b'"\\ud800\\u0041"'), one(b'"a\\ud83d"'),
        b'[{"\\ud800x": 1, "rate_limit_key_regex": "a"}]',
        b'[{"rate_limit_key_regex": "a", "\\udfff": "\\ud800"}]',
        b'\xef\xbb\xbf' + one(b'"a"'), b'\xef\xbb\xbf[]', b'[]\xef\xbb\xbf',
        one(b'"a\xffb"'), one(b'"\xc3"'), one(b'"\xed\xa0\x80"'), one(b'"\xf4\x90\x80\x80"'),
        one(b'"\xe2\x82"'), b'[{"rate_limit_key_regex": "a", "x\xff": 1}]',
        b'[{"rate_limit_key_regex": "a", "x": "\xfe\xff"}]', b'[\xff]', b'\xff',
        b'[{"rate_limit_key_regex\xff": "a"}]',
        b'[null]', b'[1]', b'["x"]', b'[[]]', b'[true]', b'[{}]', b'null', b'[]', b'{}', b'1',
        b'"x"', b'', b' ', b'[null, {"rate_limit_key_regex": "a"}]',
        one(b'"a{1000000000}"'), one(b'"x{1,9876543210}"'), one(b'"(?P<\xc3\xa9>a)"'),
        one(b'"(?P<\\u00e9>a)"'), one(b'"\\\\pL{500}"'), one(b'"\\\\C"'), one(b'"(?=a)"'),
        one(b'"' + b'(' * 1001 + b')' * 1001 + b'"'), one(b'"' + b'(' * 1000 + b')' * 1000 + b'"'),
        one(b'"' + b'(?:' * 1001 + b'a' + b')' * 1001 + b'"'),
        one(b'"\\\\B"'), one(b'"\\\\p{Han}"'), one(b'"\\\\p{Kawi}"'),
        b'[{"RATE_LIMIT_KEY_REGEX": "a", "MAX_TOKENS": 1}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": 1, "max_tokens": 2}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": "1", "max_tokens": 2}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": 9223372036854775807}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": 9223372036854775808}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": -9223372036854775808}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": 1.0}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": 1e3}]',
        b'[{"rate_limit_key_regex": "a", "max_tokens": null}]',
        b'[{"rate_limit_key_regex": 1}]', b'[{"rate_limit_key_regex": null}]',
        b'[{"max_tokens": 5}]', b'[{"ma\xe2\x84\xaax_tokens": 5}]',
        b'[{"\xe2\x84\xaa": 5}]', b'[{"rate_limit_key_regex": "a"}, 1]',
        b'[{"rate_limit_key_regex": "a",}]', b'[{"rate_limit_key_regex": "a"}]x',
        b'[{"rate_limit_key_regex": "\\x"}]', b'[{"rate_limit_key_regex": "\t"}]',
        b'[{"rate_limit_key_regex": "a\\u0000b"}]', b'[{"a": 01}]', b'[{"a": -}]',
        b'[{"a": 1}] [2]', b'\t\n\r [ ]\n',
    ]
    return out + deep


def main() -> None:
    goroot, oracle = Path(sys.argv[1]), sys.argv[2]
    data = goroot / "src/regexp/testdata"
    regexes, pairs = search_blocks((data / "re2-search.txt").read_text().splitlines())
    with bz2.open(data / "re2-exhaustive.txt.bz2", "rt") as stream:
        exhaustive = stream.read().splitlines()
    # every 60th regex of the exhaustive file keeps the corpus small and still varied
    ex_regexes, ex_pairs = search_blocks(exhaustive, every=60)
    regexes += ex_regexes
    pairs += ex_pairs
    for name in ("basic.dat", "nullsubexpr.dat", "repetition.dat"):
        more_regexes, more_pairs = dat_cases(data / name)
        regexes += more_regexes
        pairs += more_pairs
    regexes += parse_test_regexes(goroot / "src/regexp/syntax/parse_test.go")
    regexes += edge_regexes()
    pairs += edge_pairs()
    regexes = list(dict.fromkeys(regexes + [regex for regex, _ in pairs]))
    pairs = list(dict.fromkeys(pairs))
    cases = {"regexes": regexes, "pairs": [list(p) for p in pairs], "configs": None}
    import base64
    cases["configs"] = [base64.b64encode(c).decode() for c in configs()]
    first = subprocess.run([oracle, "verdicts"], input=json.dumps(cases).encode(),
                           capture_output=True, check=False)
    first.check_returncode()
    result = json.loads(first.stdout)
    index = {v["regex"]: i for i, v in enumerate(result["regexes"])}
    compact = {
        "go": result["go"], "unicode": result["unicode"],
        "about": "Go's verdicts, written by tests/rules/go_oracle/make_cases.py; see README.md",
        "regexes": [[v["regex"], v["error"]] for v in result["regexes"]],
        "pairs": [[index[v["regex"]], v["key"], int(v["match"])] for v in result["pairs"]],
        "configs": [[v["config"], v["starts"], v["error"],
                     [[r[k] for k in ("rate_limit_key_regex", "max_tokens", "tokens_per_fill",
                                      "fill_interval_second", "redis_expired_seconds")]
                      for r in v["rules"] or []] if v["rules"] is not None else None]
                    for v in result["configs"]],
    }
    json.dump(compact, sys.stdout, ensure_ascii=True, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
