"""Rules reloaded from a changed --rules file or on SIGHUP keep bucket state; bad files don't
replace good rules."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import REPO, free_port
from tests.service.helpers import allowed, check, report


def _rules(regex: str, fill_interval: int = 3600) -> str:
    return json.dumps([{"rate_limit_key_regex": regex, "max_tokens": 100,
                        "tokens_per_fill": 100, "fill_interval_second": fill_interval,
                        "redis_expired_seconds": 7200}])


def _wait_for_event(log: Path, event: str, count: int, deadline: float) -> list[dict[str, object]]:
    while True:
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        matching = [r for r in records if r["event"] == event]
        if len(matching) >= count:
            return matching
        assert time.monotonic() < deadline, f"no {event!r} in time; log: {records}"
        time.sleep(0.05)


def test_reload_on_file_change_and_sighup_keeps_state(tmp_path: Path) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(_rules("team-.*"))
    log = tmp_path / "log"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_ADDRESS",
                                                            "RATE_LIMIT_CONFIG")}
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "tokenlimit", "serve", "--rules", str(rules), "--port",
             str(port), "--stop-after", "60"], cwd=REPO, env=env, stdout=out,
            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        _wait_for_event(log, "listening", 1, deadline)
        with httpx.Client() as client:
            assert allowed(check(client, url, ["team-a"]))
            assert report(client, url, ["team-a"], 100).status_code == 200
            assert not allowed(check(client, url, ["team-a"]))

            time.sleep(0.02)  # a later modification time than the first version's
            rules.write_text(_rules("team.*"))  # same limits, new regex: state must survive
            reloaded = _wait_for_event(log, "reloaded", 1, deadline)
            assert reloaded[0]["reason"] == f"{rules} changed"
            assert not allowed(check(client, url, ["team-a"]))  # still spent: state kept

            rules.write_text(_rules("team.*", fill_interval=0) + "\n")  # an error finding
            refused = _wait_for_event(log, "reload_refused", 1, deadline)
            assert "TL108 fill_interval_second is 0" in str(refused[0]["error"])
            assert refused[0]["kept_rules"] == 1
            assert not allowed(check(client, url, ["team-a"]))  # old rules still in force

            rules.write_text(_rules("other-.*"))
            _wait_for_event(log, "reloaded", 2, deadline)
            assert allowed(check(client, url, ["team-a"]))  # no rule matches any more
            os.kill(process.pid, signal.SIGHUP)
            events = _wait_for_event(log, "reloaded", 3, deadline)
            assert [e["reason"] for e in events] == [
                f"{rules} changed", f"{rules} changed", "SIGHUP"]
    finally:
        process.terminate()
        process.wait(10)
    assert process.returncode == 0
