"""Bounding replays for conformance: every decision the rules allow for an observed run.

The service ran each check at an unknown instant inside the window the generator saw, and
decides with whole seconds. What a check's instant changes is which second it falls in
(refills, bucket creation) and its order against other events. A replay here goes key by key
(one key per request) and follows every placement that matters: a check whose window lies in
one second is placed at one end of it (both ends are replayed, for expiry deadlines); a check
whose window straddles a second boundary forks the replay, one branch taking it at the start
of its window, the other at the end, and branches that reach the same state merge again.

Reports are placed at one end of their windows (the caller replays both) and never before
their own check's window ends. The balance a check sees is then adjusted for reports whose
order against it is unknown: counted when bounding from below, left out when bounding from
above (a report moves a balance by at most its tokens, since refills are capped and resets
forget debt). ``MAX_BRANCHES`` bounds the work: beyond it, the key's later checks are
reported as undecidable rather than guessed.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tokenlimit.bucket.keyspace import LAST_FILL_SUFFIX, AsmKeyspace
from tokenlimit.bucket.limiter import AsmLimiter
from tokenlimit.load.observation import Observation
from tokenlimit.rules.model import Rule

MAX_BRANCHES = 64
_REPORT, _CHECK = 0, 1
_FIXED, _EARLY, _LATE = 0, 1, 2


@dataclass(frozen=True, slots=True)
class Window:
    """An interval of Unix seconds in which something happened at the service."""

    lo: float
    hi: float

    @property
    def straddles(self) -> bool:
        """The window holds a whole-second boundary (the service's ``now`` may be either)."""
        return math.floor(self.lo) != math.floor(self.hi)


@dataclass(slots=True)
class CheckBounds:
    """What the replays found for one check: outcomes and adjusted balances."""

    outcomes: set[str] = field(default_factory=set)
    balances: list[int | None] = field(default_factory=list)
    undecidable: bool = False


INF = math.inf


class _Branch:
    """One possible history of a key: its keyspace, the straddling checks it has deferred,
    and the interval in which its stored entries expire (``None``: nothing with a TTL).

    Expiry is decided here, not by ``AsmKeyspace``: entries with a TTL are stored with an
    infinite deadline, and before each event the branch asks whether the event's window lies
    before, after, or across the interval of possible deadlines (across: it forks).
    """

    __slots__ = ("deadline", "deferred", "limiter")

    def __init__(self, limiter: AsmLimiter, deferred: frozenset[int],
                 deadline: tuple[float, float] | None = None) -> None:
        self.limiter = limiter
        self.deferred = deferred
        self.deadline = deadline

    def fork(self, deferred: frozenset[int] | None = None) -> _Branch:
        clone = copy.copy(self.limiter)  # shares the compiled rules
        space = AsmKeyspace()
        space.values = dict(self.limiter.keyspace.values)
        space.expires_at = dict(self.limiter.keyspace.expires_at)
        clone.keyspace = space
        return _Branch(clone, self.deferred if deferred is None else deferred, self.deadline)

    def signature(self, key: str) -> tuple[object, ...]:
        space = self.limiter.keyspace
        last = key + LAST_FILL_SUFFIX
        return (space.values.get(key), space.expires_at.get(key), space.values.get(last),
                space.expires_at.get(last), self.deadline, self.deferred)

    def expire(self, key: str) -> None:
        """The entries with a TTL are gone (Redis expired them)."""
        space = self.limiter.keyspace
        for name in (key, key + LAST_FILL_SUFFIX):
            if space.expires_at.get(name) == INF:
                space.values.pop(name, None)
                del space.expires_at[name]
        self.deadline = None

    def settle(self, key: str, when: float, window: Window) -> None:
        """After a check: entries it wrote expire ``ttl`` after an instant in ``window``."""
        space = self.limiter.keyspace
        written = space.expires_at.get(key)
        if written is None or written == INF:
            return
        ttl = written - when
        self.deadline = (window.lo + ttl, window.hi + ttl)
        for name in (key, key + LAST_FILL_SUFFIX):
            if name in space.expires_at:
                space.expires_at[name] = INF


def _split_on_expiry(key: str, branches: list[_Branch], window: Window) -> list[_Branch]:
    """Branches in which the key is certainly alive or certainly expired during ``window``."""
    out: list[_Branch] = []
    for b in branches:
        if b.deadline is None:
            out.append(b)
            continue
        first, last = b.deadline
        alive = window.lo <= last  # alive up to and including the deadline
        expired = window.hi > first
        if alive and expired:
            gone = b.fork()
            gone.expire(key)
            out += [b, gone]
        elif expired:
            b.expire(key)
            out.append(b)
        else:
            out.append(b)
    return out


def bounding_replay(rules: Sequence[Rule], obs: Sequence[Observation], checks: Sequence[Window],
                    reports: dict[int, Window], uncertain: Sequence[Sequence[int]], *,
                    check_late: bool, report_late: bool) -> list[CheckBounds]:
    """One replay (reports early or late; fixed checks at the start or end of their window)."""
    out = [CheckBounds() for _ in obs]
    template = AsmLimiter(rules)
    by_key: dict[str, list[int]] = {}
    for i, o in enumerate(obs):
        by_key.setdefault(o.key, []).append(i)
    placed = {m: max(w.hi if report_late else w.lo, math.nextafter(checks[m].hi, math.inf))
              for m, w in reports.items()}
    for key, members in by_key.items():
        events: list[tuple[float, int, int, int]] = []
        for i in members:
            w = checks[i]
            if w.straddles:
                events.append((w.lo, _CHECK, _EARLY, i))
                events.append((w.hi, _CHECK, _LATE, i))
            else:
                events.append((w.hi if check_late else w.lo, _CHECK, _FIXED, i))
            if i in placed:
                events.append((placed[i], _REPORT, _FIXED, i))
        events.sort()
        _replay_key(key, _fresh(template), events, obs, checks, reports, placed, uncertain,
                    report_late, out)
    return out


def _fresh(template: AsmLimiter) -> AsmLimiter:
    limiter = copy.copy(template)
    limiter.keyspace = AsmKeyspace()
    return limiter


def _replay_key(key: str, limiter: AsmLimiter, events: list[tuple[float, int, int, int]],
                obs: Sequence[Observation], checks: Sequence[Window], reports: dict[int, Window],
                placed: dict[int, float], uncertain: Sequence[Sequence[int]], report_late: bool,
                out: list[CheckBounds]) -> None:
    branches = [_Branch(limiter, frozenset())]
    overflow = False
    for when, kind, tag, i in events:
        if kind == _REPORT:
            w = reports[i]
            branches = _split_on_expiry(key, branches, Window(max(w.lo, checks[i].lo), w.hi))
            for b in branches:
                b.limiter.report([key], obs[i].tokens, when)
            branches = _merge(key, branches)
        elif overflow:
            out[i].undecidable = True
            continue
        elif tag == _FIXED:
            branches = _split_on_expiry(key, branches, checks[i])
            for b in branches:
                _check(b, i, when, checks[i], obs, placed, uncertain, report_late, out)
            branches = _merge(key, branches)
        elif tag == _EARLY:
            w = checks[i]
            early = Window(w.lo, min(w.hi, math.nextafter(float(math.floor(w.hi)), -INF)))
            waiting = [b.fork(b.deferred | {i}) for b in branches]
            branches = _split_on_expiry(key, branches, early)
            for b in branches:
                _check(b, i, when, early, obs, placed, uncertain, report_late, out)
            branches = _merge(key, branches + waiting)
        else:
            w = checks[i]
            late = Window(max(w.lo, float(math.floor(w.hi))), w.hi)
            ready = [b for b in branches if i in b.deferred]
            rest = [b for b in branches if i not in b.deferred]
            ready = _split_on_expiry(key, ready, late)
            for b in ready:
                b.deferred = b.deferred - {i}
                _check(b, i, when, late, obs, placed, uncertain, report_late, out)
            branches = _merge(key, rest + ready)
        if len(branches) > MAX_BRANCHES:
            overflow = True


def _merge(key: str, branches: list[_Branch]) -> list[_Branch]:
    if len(branches) == 1:
        return branches
    seen: dict[tuple[object, ...], _Branch] = {}
    for b in branches:
        seen.setdefault(b.signature(key), b)
    return list(seen.values())


def _check(b: _Branch, i: int, when: float, window: Window, obs: Sequence[Observation],
           placed: dict[int, float], uncertain: Sequence[Sequence[int]], report_late: bool,
           out: list[CheckBounds]) -> None:
    result = b.limiter.check([obs[i].key], when)
    b.settle(obs[i].key, when, window)
    bounds = out[i]
    bounds.outcomes.add(result.outcome)
    if result.remaining is None or result.outcome == "error":
        bounds.balances.append(None)
        return
    balance = result.remaining
    for m in uncertain[i]:
        before = placed[m] <= when  # at one instant reports go first
        if report_late and not before:
            balance -= obs[m].tokens  # may precede the check: count it (lower bound)
        elif not report_late and before:
            balance += obs[m].tokens  # may follow the check: leave it out (upper bound)
    bounds.balances.append(balance)
