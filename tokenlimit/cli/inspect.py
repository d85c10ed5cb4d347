"""``tokenlimit inspect``: why is this key limited right now, read from a live Redis."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated
from urllib.parse import quote

import typer

from tokenlimit.cli.options import ConfigJsonOption, FromEnvOption, RulesOption, read_rules
from tokenlimit.rules import RuleMatcher, require_valid
from tokenlimit.rules.figures import duration
from tokenlimit.rules.gomatch import go_string
from tokenlimit.service.backends import redis_db_index

if TYPE_CHECKING:  # rich loads when a table is printed
    from rich.console import Console, Group

    from tokenlimit.rules.model import Rule
    from tokenlimit.service.inspection import KeyState
    from tokenlimit.service.redis_reader import BucketReader

FORMATS = ("text", "json")


def _utc(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _until(at: float | None, now: float, *, never: str = "-") -> str:
    if at is None:
        return never
    wait = at - now
    return "now" if wait <= 0 else f"in {duration(max(1, round(wait)))}"


def _cells(state: KeyState, now: float) -> list[str]:
    rule = "-" if state.rule is None else f"{state.rule} {state.regex}"
    adds = "-" if state.refill_adds is None else f"{state.refill_adds:+,}"
    ttl = "-" if state.ttl_seconds is None else f"{state.ttl_seconds:,.3f} s"
    refill = ("-" if state.next_refill_at is None
              else "at the next check" if state.next_refill_at <= int(now)
              else _until(state.next_refill_at, now))
    # No balance and not admitted: checks fail (another type's entry), there is no "when".
    never = "never" if state.balance is not None else "-"
    again = "now" if state.admitted else _until(state.admitted_again_at, now, never=never)
    return [state.key, rule, "-" if state.balance is None else f"{state.balance:,}",
            _utc(state.last_fill), refill, adds, ttl, again, state.state]


def format_states(states: Sequence[KeyState], now: float, where: str) -> Group:
    """The text report: one row per key."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    noun = "key" if len(states) == 1 else "keys"
    # Text, never markup: keys and regexes are anyone's ('user[/]', '[red]x').
    table = Table(title=Text(f"{where} at {_utc(now)} UTC: {len(states)} {noun}"),
                  title_justify="left")
    for i, name in enumerate(("key", "rule", "balance", "last refill (UTC)", "next refill",
                              "refill adds", "TTL", "admitted again", "state")):
        table.add_column(name, justify="right" if i in (2, 5, 6) else "left")
    for state in states:
        table.add_row(*(Text(cell) for cell in _cells(state, now)))
    return Group(table)


def _check_database(url: str) -> None:
    """A database in the URL's path must be a number: redis-py reads any other path (a typo
    such as /db1) as database 0, and the table would show another database's keys."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() == "unix":
        return
    path = rest.split("?", 1)[0].split("#", 1)[0].partition("/")[2]
    if not path or (path.isascii() and path.isdigit()):
        return
    if "@" in path:  # a '/' in the password ended the host part early; never show it
        raise typer.BadParameter("a '/' before the '@' ends the host part: percent-encode "
                                 "it in the password as %2F", param_hint="--redis-url")
    raise typer.BadParameter(f"the database in the path must be a number, not {path!r} "
                             "(redis://HOST:PORT/DB)", param_hint="--redis-url")


def _redis_url(url: str | None) -> str:
    """--redis-url, else the example's REDIS_ADDRESS / REDIS_PASSWORD / REDIS_DB_INDEX."""
    if url is not None:
        return url
    address = os.environ.get("REDIS_ADDRESS")
    if not address:
        return "redis://127.0.0.1:6379/0"
    password = os.environ.get("REDIS_PASSWORD")
    db = redis_db_index(os.environ.get("REDIS_DB_INDEX"))
    # Percent-encoded: a password holding @, /, : or # would otherwise end the URL's user
    # part early, and the rest be read as the host ("p@ss" connected to host "ss").
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{address}/{db}"


def inspect(
    keys: Annotated[list[str] | None, typer.Argument(
        metavar="[KEY]...", help="Keys to show (as the plug-in renders them); default: SCAN.")]
    = None,
    rules_source: RulesOption = None,
    config_json: ConfigJsonOption = None,
    from_env: FromEnvOption = False,
    redis_url: Annotated[str | None, typer.Option(
        metavar="URL", help="redis://[[USER]:PASSWORD@]HOST:PORT/DB, rediss:// for TLS; "
        "default: REDIS_ADDRESS, REDIS_PASSWORD and REDIS_DB_INDEX as the service reads "
        "them, else redis://127.0.0.1:6379/0.")] = None,
    cluster: Annotated[bool, typer.Option(
        help="A Redis Cluster with serve's hash-tagged layout ({KEY}).")] = False,
    match: Annotated[str | None, typer.Option(
        metavar="GLOB", help="SCAN for keys matching this glob (default * without KEYs).")]
    = None,
    top: Annotated[int | None, typer.Option(
        min=1, help="Only the N most indebted keys (lowest balances) of the scan.")] = None,
    limit: Annotated[int, typer.Option(
        min=1, help="Stop scanning after this many keys.")] = 100_000,
    watch: Annotated[bool, typer.Option(help="Refresh the table until Ctrl-C.")] = False,
    interval: Annotated[float, typer.Option(
        min=0.1, help="Seconds between refreshes with --watch.")] = 2.0,
    count: Annotated[int | None, typer.Option(
        min=1, help="With --watch: stop after this many refreshes.")] = None,
    now: Annotated[float | None, typer.Option(
        metavar="UNIX_SECONDS", help="Judge the buckets at this time instead of the Redis "
        "server's TIME (for a service run with an injected clock).")] = None,
    output_format: Annotated[str, typer.Option("--format", "-f", help="text or json.")]
    = "text",
) -> None:
    """Show what a live deployment's Redis holds for keys, and what it means now.

    For each key: the rule it takes, its balance, the last refill, when the next refill comes
    and what it adds, the TTL, and when a check will be admitted again. Reads only (GET,
    PEXPIRETIME, TIME, SCAN), never KEYS, never writes.

    Example: tokenlimit inspect --rules rules.json --redis-url redis://127.0.0.1:6379/0 --top 5
    """
    if output_format not in FORMATS:
        raise typer.BadParameter(f"choose one of {', '.join(FORMATS)}", param_hint="--format")
    if sum((rules_source is not None, config_json is not None, from_env)) != 1:
        raise typer.BadParameter("give exactly one of --rules SOURCE, --config-json or "
                                 "--from-env", param_hint="--rules")
    if keys and (match is not None or top is not None):
        raise typer.BadParameter("give KEYs or --match/--top, not both", param_hint="--match")
    if count is not None and not watch:
        raise typer.BadParameter("only with --watch", param_hint="--count")
    if watch and output_format == "json":
        raise typer.BadParameter("--watch draws a table; drop --format json",
                                 param_hint="--watch")
    if redis_url is not None:
        _check_database(redis_url)
    loaded = read_rules(rules_source, config_json, from_env)
    require_valid(loaded)
    from tokenlimit.service.redis_reader import BucketReader, RedisTarget, watch_rounds

    target = RedisTarget(_redis_url(redis_url), cluster)
    reader = BucketReader(target)
    try:
        if not watch:
            states, at = _states(reader, loaded.rules, keys or [], match, top, limit, now)
            if output_format == "json":
                typer.echo(json.dumps({"redis": _shown(target.url), "now": at,
                                       "keys": [s.to_dict() for s in states]}, indent=2))
            else:
                _console().print(format_states(states, at, _shown(target.url)))
            return
        from rich.live import Live

        console = _console()
        # On a terminal the table is redrawn in place; into a pipe or file each refresh is
        # appended (a Live display would show nothing until it stops).
        live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        with live if live is not None else contextlib.nullcontext(), \
                contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how a watch ends
            for round_number in watch_rounds(count):
                if round_number:
                    time.sleep(interval)
                states, at = _states(reader, loaded.rules, keys or [], match, top, limit, now)
                table = format_states(states, at, _shown(target.url))
                if live is not None:
                    live.update(table, refresh=True)
                else:
                    console.print(table)
                    console.file.flush()
    finally:
        reader.close()


def _console() -> Console:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 180)


def _shown(url: str) -> str:
    from tokenlimit.service.redis_reader import redacted_url

    return redacted_url(url)


def _states(reader: BucketReader, rules: Sequence[Rule], keys: Sequence[str],
            match: str | None, top: int | None, limit: int,
            now: float | None) -> tuple[list[KeyState], float]:
    from tokenlimit.service.inspection import NOT_UTF8, key_state

    matcher = RuleMatcher(rules)
    now_ms = reader.now_ms() if now is None else round(now * 1000)
    # A KEY given that is not UTF-8 reaches the service inside JSON, where Go reads each bad
    # byte as U+FFFD: read the key the service keeps.
    names = [go_string(key) for key in keys] or reader.scan(match or "*", limit)
    states = []
    for stored in reader.read(names):
        index = None if stored.problem == NOT_UTF8 else matcher.index_for(stored.key)
        rule = None if index is None else matcher.rules[index]
        states.append(key_state(stored, index, rule, now_ms))
    if top is not None:
        states = sorted((s for s in states if s.balance is not None),
                        key=lambda s: (s.balance or 0, s.key))[:top]
    return states, now_ms / 1000


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
