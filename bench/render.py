"""How long rendering and checking take: `python bench/render.py` prints figures.

Rendering should never be what a CI job waits for; checking core kinds loads Kubernetes'
schemas (kubernetes-validate), which is the slow part, so both are shown separately.
Bounded: a fixed number of repetitions, a few seconds in all.
"""

from __future__ import annotations

import time
from pathlib import Path

from tokenlimit.k8s import (
    ServiceManifestOptions,
    WasmPluginOptions,
    check_texts,
    format_manifests,
    render_all,
)
from tokenlimit.rules import Rule, load_rules

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _per_call(label: str, repeat: int, fn: object) -> None:
    assert callable(fn)
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    elapsed = time.perf_counter() - start
    print(f"{label:<44} {elapsed / repeat * 1000:8.3f} ms/call  ({repeat} calls)")


def main() -> None:
    sample = load_rules(SAMPLES / "rules.json").rules
    many = tuple(Rule(i, f"tenant-{i}.*", 1000, 100, 60, 600) for i in range(500))
    plugin, service = WasmPluginOptions(), ServiceManifestOptions()
    text = format_manifests(render_all(sample, plugin, service))
    _per_call("render all (2 rules) to YAML", 300,
              lambda: format_manifests(render_all(sample, plugin, service)))
    _per_call("render all (500 rules) to YAML", 50,
              lambda: format_manifests(render_all(many, plugin, service)))
    _per_call("check rendered stream (WasmPlugin + core)", 10,
              lambda: check_texts([(text, "<bench>")]))


if __name__ == "__main__":
    main()
