"""Starting the service: choosing a store, serving in the foreground or in a thread, reloading.

``running_service`` (a context manager that serves in a background thread and yields the base
URL) is what tests and other tokenlimit commands use; ``serve_forever`` is the command's loop,
with SIGHUP and a polled ``--rules`` file for reloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO

from tokenlimit.errors import ConfigError, StoreError, TokenlimitError
from tokenlimit.eventloop import LoopThread
from tokenlimit.rules import Finding, LoadedRules, Severity, require_valid
from tokenlimit.rules.model import Rule
from tokenlimit.service.app import RateLimitApp, ServiceOptions
from tokenlimit.service.backends import BACKENDS as BACKENDS  # re-exported
from tokenlimit.service.backends import BackendKind as BackendKind  # re-exported
from tokenlimit.service.backends import redis_db_index
from tokenlimit.service.http import HttpServer, Limits
from tokenlimit.service.stores.base import Clock, Store
from tokenlimit.service.stores.memory import MemoryStore
from tokenlimit.service.stores.redispy import RedisUrl, redis_url_settings

RedisClient = Literal["auto", "builtin", "redis-py"]


@dataclass(frozen=True, slots=True)
class BackendConfig:
    """Where bucket state lives. ``timeout``: seconds before a Redis call counts as failed.
    ``client``: ``auto`` uses the built-in pipelined connection for plain ``redis://`` and
    redis-py for TLS, sockets, ACL users and Sentinel; ``redis-py`` forces redis-py (the
    benchmark compares the two)."""

    kind: BackendKind = "memory"
    host: str = "127.0.0.1"
    port: int = 6379
    password: str | None = field(default=None, repr=False)
    db: int = 0
    timeout: float = 1.0
    url: RedisUrl | None = field(default=None, repr=False)
    client: RedisClient = "auto"
    # Memory backend: bytes its keys may take (--max-memory-mb).
    memory_limit: int | None = field(default=64 << 20, repr=False)

    def describe(self) -> str:
        """For the start-up line: never the password."""
        if self.kind == "memory":
            return "memory (state in this process only; set REDIS_ADDRESS or --redis-url to share)"
        if self.url is not None:
            return f"{self.kind} at {self.url.location()}"
        auth = " with password" if self.password else ""
        return f"{self.kind} at {self.host}:{self.port} db {self.db}{auth}"


def backend_config(kind: str | None = None, redis_url: str | None = None,
                   environ: Mapping[str, str] | None = None,
                   timeout: float = 1.0, client: RedisClient = "auto") -> BackendConfig:
    """The backend from the options, else from the example's environment variables.

    ``REDIS_ADDRESS`` (host:port), ``REDIS_PASSWORD``, ``REDIS_DB_INDEX`` (read as the service
    reads it: ``redis_db_index``). No option and no ``REDIS_ADDRESS``: the memory store.

    >>> backend_config(environ={"REDIS_ADDRESS": "10.0.0.5:6380", "REDIS_DB_INDEX": "x"})
    BackendConfig(kind='redis', host='10.0.0.5', port=6380, db=0, timeout=1.0, client='auto')
    """
    env = os.environ if environ is None else environ
    if kind is not None and kind not in BACKENDS:
        raise ConfigError(f"--backend: choose one of {', '.join(BACKENDS)}, not {kind!r}")
    settings: RedisUrl | None = None
    if redis_url is not None:
        settings = redis_url_settings(redis_url)
        host, port, password, db = settings.host, settings.port, settings.password, settings.db
    elif env.get("REDIS_ADDRESS"):
        host, port = _parse_address(env["REDIS_ADDRESS"], "REDIS_ADDRESS")
        password = env.get("REDIS_PASSWORD") or None
        db = redis_db_index(env.get("REDIS_DB_INDEX"))
    else:
        if kind in ("redis", "redis-cluster"):
            raise ConfigError(f"--backend {kind} needs --redis-url or REDIS_ADDRESS")
        return BackendConfig("memory", timeout=timeout)
    chosen: BackendKind = "redis" if kind in (None, "redis") else kind
    if chosen == "memory":
        return BackendConfig("memory", timeout=timeout)
    if chosen == "redis-cluster" and settings is not None and settings.scheme != "redis":
        raise ConfigError("--backend redis-cluster: give a redis://[USER:PASSWORD@]HOST:PORT URL "
                          "of one node (TLS, unix sockets and Sentinel are for --backend redis)")
    return BackendConfig(chosen, host, port, password, db, timeout, settings, client)


def _parse_address(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{what}: expected host:port, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def build_store(backend: BackendConfig, rules: Sequence[Rule], clock: Clock | None = None) -> Store:
    """The store for ``backend`` (Redis stores connect lazily, on first use)."""
    if backend.kind == "memory":
        return MemoryStore(rules, clock, backend.memory_limit)
    needs_redis_py = backend.url is not None and backend.url.needs_redis_py
    if backend.kind == "redis" and (backend.client == "redis-py" or needs_redis_py):
        from tokenlimit.service.stores.redis import RedisStore
        from tokenlimit.service.stores.redispy import RedisPyNode

        settings = backend.url or RedisUrl("redis", backend.host, backend.port, backend.db,
                                           password=backend.password)
        return RedisStore(rules, clock=clock, nodes=RedisPyNode(settings, backend.timeout))
    if backend.kind == "redis":
        from tokenlimit.service.stores.redis import RedisStore

        return RedisStore(rules, backend.host, backend.port, password=backend.password,
                          db=backend.db, timeout=backend.timeout, clock=clock)
    from tokenlimit.service.stores.cluster import ClusterStore

    return ClusterStore(rules, backend.host, backend.port, password=backend.password,
                        timeout=backend.timeout, clock=clock,
                        username=backend.url.username if backend.url else None)


def listen_failure(exc: BaseException) -> str:
    """Why binding failed, in the OS's words ("Address already in use"), without asyncio's
    repetition of the address."""
    if isinstance(exc, OSError) and exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc)


def json_logger(stream: TextIO | None = None) -> Callable[..., None]:
    """Structured logs: one JSON object per line, ``ts`` and ``event`` first."""

    def log(event: str, **fields: Any) -> None:
        record = {"ts": round(time.time(), 3), "event": event, **fields}
        out = stream or sys.stderr
        out.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        out.flush()

    return log


@dataclass
class RunningService:
    """A service serving in a background thread (see ``running_service``)."""

    url: str
    port: int
    app: RateLimitApp
    loop: asyncio.AbstractEventLoop
    backend_error: str | None = None  # why the backend did not answer a ping at start

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Swap the rules (bucket state kept), from any thread; in force when this returns."""
        app = self.app

        async def swap() -> None:
            app.set_rules(tuple(rules))

        asyncio.run_coroutine_threadsafe(swap(), self.loop).result(10)


PING_TIMEOUT = 3.0  # seconds a background service waits for its backend's first answer


@contextlib.contextmanager
def running_service(
    rules: Sequence[Rule] | LoadedRules,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    options: ServiceOptions | None = None,
    backend: BackendConfig | None = None,
    clock: Clock | None = None,
    log: Callable[..., None] | None = None,
) -> Iterator[RunningService]:
    """Serve in a background thread; yields a ``RunningService`` whose ``url`` has no slash.

    ``port=0`` picks a free port. The thread, its loop and its connections end on exit.
    """
    rule_list = rules.rules if isinstance(rules, LoadedRules) else tuple(rules)
    store = build_store(backend or BackendConfig(), rule_list, clock)
    app = RateLimitApp(store, rule_list, options, log=log or (lambda *a, **k: None))
    server = HttpServer(app, max_body=app.options.max_body)
    thread = LoopThread("tokenlimit-serve")
    bound: list[int] = []
    unanswered: list[str] = []

    async def main(ready: Callable[[], None], stop: asyncio.Event) -> None:
        bound.append(await server.start(host, port))
        try:  # not fatal (the service answers errors until the backend answers)
            await asyncio.wait_for(store.ping(), PING_TIMEOUT)
        except StoreError as exc:
            unanswered.append(str(exc))
        except TimeoutError:
            unanswered.append(f"no answer from the backend within {PING_TIMEOUT:g} s")
        ready()
        await stop.wait()
        await server.close()
        await store.close()

    try:
        thread.start(main)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {listen_failure(exc)}") from None
    except TimeoutError:
        raise ConfigError(f"cannot listen on {host}:{port}: timeout") from None
    assert thread.loop is not None
    url_host = f"[{host}]" if ":" in host else host
    try:
        yield RunningService(f"http://{url_host}:{bound[0]}", bound[0], app, thread.loop,
                             unanswered[0] if unanswered else None)
    finally:
        thread.stop(10)


def check_rules(loaded: LoadedRules) -> list[Finding]:
    """Refuse rules with error findings (``RulesRejected``); the other findings otherwise."""
    return [f for f in require_valid(loaded) if f.severity is not Severity.INFO]


def log_findings(log: Callable[..., None], findings: list[Finding]) -> None:
    """One ``rule_warning`` line per warning, so an operator sees what validate would say."""
    for finding in findings:
        log("rule_warning", code=finding.code, rule=finding.rule_index,
            where=str(finding.location) if finding.location else None, message=finding.message)


async def serve_forever(
    app: RateLimitApp,
    host: str,
    port: int,
    *,
    reload: Callable[[], LoadedRules] | None = None,
    watch: Path | None = None,
    log: Callable[..., None],
    stop_after: float | None = None,
    reuse_port: bool = False,
    limits: Limits | None = None,
    stop_grace: float = 5.0,
) -> None:
    """Serve until SIGINT/SIGTERM (or ``stop_after`` seconds); SIGHUP reloads the rules.

    On stop: accept no more connections, answer every request already read (within
    ``stop_grace`` seconds), then close.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.set_exception_handler(lambda _, context: _loop_trouble(app, context))

    def do_reload(reason: str) -> None:
        if reload is None:
            return
        try:
            loaded = reload()
            warnings = check_rules(loaded)
        except TokenlimitError as exc:
            log("reload_refused", reason=reason, error=" ".join(str(exc).split()),
                kept_rules=len(app.rules))
            return
        app.set_rules(loaded.rules)
        log("reloaded", reason=reason, rules=len(loaded.rules))
        log_findings(log, warnings)

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):
        loop.add_signal_handler(signal.SIGHUP, do_reload, "SIGHUP")
    server = HttpServer(app, max_body=app.options.max_body, limits=limits, log=log)
    bound = await server.start(host, port, reuse_port=reuse_port)
    # Start-up objects (modules, rules, compiled regexes) never die: keep them out of the
    # collector's full passes, which otherwise show up as latency spikes.
    gc.freeze()
    log("listening", host=host, port=bound, backend=app.store.name, mode=app.options.mode,
        shadow=app.options.shadow, fail=app.options.fail, rules=len(app.rules))
    try:  # not fatal (the example starts without Redis too), but worth one line
        await app.store.ping()
    except StoreError as exc:
        log("backend_unreachable", error=str(exc))
    watcher = asyncio.create_task(_watch(watch, do_reload, stop)) if watch else None
    try:
        await asyncio.wait_for(stop.wait(), stop_after)
    except TimeoutError:
        pass
    finally:
        if watcher is not None:
            watcher.cancel()
        unanswered = await server.close(stop_grace)
        await app.store.close()
        log("stopped", unanswered=unanswered)


def _loop_trouble(app: RateLimitApp, context: dict[str, Any]) -> None:
    """What the event loop reports (accept failing for lack of file descriptors, a transport
    error): one line per kind and second, never a traceback and never the peer's data."""
    exc = context.get("exception")
    error = f"{type(exc).__name__}: {exc}" if exc is not None else None
    app.log_noisy("loop_error", message=str(context.get("message", ""))[:200],
                  error=error[:300] if error else None)


async def _watch(path: Path, reload: Callable[[str], None], stop: asyncio.Event) -> None:
    def stamp() -> tuple[float, int] | None:
        try:
            info = path.stat()
        except OSError:
            return None
        return info.st_mtime, info.st_size

    seen = stamp()
    while not stop.is_set():
        await asyncio.sleep(1.0)
        now = stamp()
        if now != seen and now is not None:
            seen = now
            reload(f"{path} changed")
