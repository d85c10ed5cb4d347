"""The multi-key check, written once: keys in order, the first limited key ends the check.

A ``/ratelimit`` call carries several keys. The service runs the check script for each key
that matches a rule, in list order; keys that match no rule are skipped and store nothing. The
first key whose balance is not above 0 ends the check with a deny (later keys are neither
created nor refilled). A script error for a key is logged and the check goes on with the next
key; the answer is then an error (400), even when a later key would have denied.

``multi_key_check`` holds that logic as a generator, so that it serves both kinds of caller:
it yields a ``ScriptCall`` for each key to run, receives the ``KeyCheck`` (or the
``ScriptError``) and returns the ``CheckResult``. ``run_check`` drives it with a plain
function (the in-memory model), ``run_check_async`` with a coroutine (the Redis stores).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Sequence
from dataclasses import dataclass

from tokenlimit.bucket.script import KeyCheck, ScriptError
from tokenlimit.bucket.types import Outcome
from tokenlimit.rules.model import Rule
from tokenlimit.rules.regex import RuleMatcher


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The answer to one ``/ratelimit`` call.

    ``rule``: for a deny, the rule of the limited key; otherwise the rule of the first key that
    matched one (``None`` when no key is limited by any rule). ``remaining``: the balance of
    that key after the check. ``retry_after``: for a deny, whole seconds until the next refill.
    """

    outcome: Outcome
    limited_key: str | None = None
    rule: int | None = None
    remaining: int | None = None
    retry_after: int | None = None

    @property
    def description(self) -> str:
        """The service's ``description`` text."""
        if self.outcome == "deny":
            return f"{self.limited_key} is being rate-limited"
        return "ok"


@dataclass(frozen=True, slots=True)
class ScriptCall:
    """Run the check script for ``key``, which takes rule number ``index``."""

    key: str
    index: int
    rule: Rule


CheckSteps = Generator[ScriptCall, "KeyCheck | ScriptError", CheckResult]


def multi_key_check(matcher: RuleMatcher, keys: Sequence[str]) -> CheckSteps:
    """The check of ``keys``: yields each script to run, returns the decision."""
    first_rule: int | None = None
    remaining: int | None = None
    failed = False
    for key in keys:
        index = matcher.index_for(key)
        if index is None:
            continue
        rule = matcher.rules[index]
        answer = yield ScriptCall(key, index, rule)
        if isinstance(answer, ScriptError):
            failed = True  # the service logs it and goes on with the next key
            continue
        if answer.balance <= 0:
            if failed:
                return CheckResult("error")
            return CheckResult("deny", key, index, answer.balance, answer.retry_after(rule))
        if first_rule is None:
            first_rule, remaining = index, answer.remaining
    if failed:
        return CheckResult("error")
    return CheckResult("allow", None, first_rule, remaining)


def run_check(matcher: RuleMatcher, keys: Sequence[str],
              script: Callable[[ScriptCall], KeyCheck]) -> CheckResult:
    """``multi_key_check`` with ``script`` run for each key (it may raise ``ScriptError``)."""
    steps = multi_key_check(matcher, keys)
    try:
        call = next(steps)
        while True:
            answer: KeyCheck | ScriptError
            try:
                answer = script(call)
            except ScriptError as exc:
                answer = exc
            call = steps.send(answer)
    except StopIteration as done:
        result: CheckResult = done.value
        return result


async def run_check_async(matcher: RuleMatcher, keys: Sequence[str],
                          script: Callable[[ScriptCall], Awaitable[KeyCheck]]) -> CheckResult:
    """``run_check`` for a script that is a coroutine (a store behind the network)."""
    steps = multi_key_check(matcher, keys)
    try:
        call = next(steps)
        while True:
            answer: KeyCheck | ScriptError
            try:
                answer = await script(call)
            except ScriptError as exc:
                answer = exc
            call = steps.send(answer)
    except StopIteration as done:
        result: CheckResult = done.value
        return result
