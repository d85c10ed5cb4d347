"""Where each character of a YAML string's value stands in the manifest that holds it.

``RATE_LIMIT_CONFIG`` is JSON inside a YAML string: a finding at an offset of that JSON is
reported at the manifest's own line and column. Block scalars (``|``) keep their lines;
quoted and plain scalars fold lines into spaces (as ``kubectl get -o yaml`` wraps a long
value) and hold escapes (``''``, ``\\"``, ``\\u00e9``); a folded block (``>``) or a value decoded
from elsewhere (a Secret's base64) points at its start.
"""

from __future__ import annotations

import yaml

from tokenlimit.rules.gojson import Locator, text_locator


def scalar_locator(scalar: yaml.ScalarNode, text: str) -> Locator:
    """Map offsets inside a YAML string's value to lines and columns of the manifest."""
    start_line, start_col = scalar.start_mark.line, scalar.start_mark.column
    value = str(scalar.value)
    if scalar.style == "|":
        lines = text.splitlines()
        indent = 0
        for raw in lines[start_line + 1:]:
            if raw.strip():
                indent = len(raw) - len(raw.lstrip(" "))
                break
        inner = text_locator(value)

        def locate_block(offset: int) -> tuple[int, int]:
            line, column = inner(offset)
            return start_line + 1 + line, indent + column

        return locate_block
    if scalar.style in (None, '"', "'"):
        # Quoted and plain scalars: escapes ('' and \") and lines folded into spaces (as
        # `kubectl get -o yaml` wraps a long value) shift every later character.
        sources = _flow_scalar_sources(text, scalar.start_mark.index, scalar.style, len(value))
        if sources is not None:
            whole = text_locator(text)

            def locate_flow(offset: int) -> tuple[int, int]:
                return whole(sources[min(offset, len(sources) - 1)])

            return locate_flow

    def locate_start(offset: int) -> tuple[int, int]:
        return start_line + 1, start_col + 1

    return locate_start


_BREAKS = "\r\n"
_BLANKS = " \t"
# Escapes of a double-quoted scalar and the number of characters that follow the backslash.
_ESCAPE_LENGTH = {"x": 3, "u": 5, "U": 9}


def _flow_scalar_sources(text: str, start: int, style: str | None,
                         length: int) -> list[int] | None:
    """For each character of a flow scalar's value, the index in ``text`` it comes from
    (``None`` when the text does not fold as expected). ``start`` is the scalar's first
    character (its opening quote, if any)."""
    out: list[int] = []
    i = start + (0 if style is None else 1)
    end = len(text)
    while len(out) < length and i < end:
        ch = text[i]
        if style == "'" and ch == "'":
            if text[i + 1:i + 2] != "'":
                return None
            out.append(i)
            i += 2
        elif style == '"' and ch == "\\":
            after = text[i + 1:i + 2]
            if after in ("\r", "\n"):
                i = _skip_folded(text, i + 1, out, escaped=True)
            else:
                out.append(i)
                i += 1 + _ESCAPE_LENGTH.get(after, 1)
        elif ch in _BLANKS:
            run = i
            while run < end and text[run] in _BLANKS:
                run += 1
            if run < end and text[run] in _BREAKS:
                i = run  # blanks before a line break are folded away
            else:
                out.extend(range(i, run))
                i = run
        elif ch in _BREAKS:
            i = _skip_folded(text, i, out, escaped=False)
        else:
            out.append(i)
            i += 1
    return out if len(out) == length and out else None


def _skip_folded(text: str, i: int, out: list[int], *, escaped: bool) -> int:
    """Past a line break at ``i`` and the indentation and blank lines after it: a blank line
    is a newline of the value; with none, the break is one space (none when escaped)."""
    at = i
    newlines = 0
    while True:
        i += 2 if text[i:i + 2] == "\r\n" else 1
        while i < len(text) and text[i] in _BLANKS:
            i += 1
        if i < len(text) and text[i] in _BREAKS:
            out.append(i)
            newlines += 1
            continue
        break
    if not newlines and not escaped:
        out.append(at)
    return i
