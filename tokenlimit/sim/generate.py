"""Synthetic traces: tiers of users with their own arrival process and token distributions.

Everything is drawn from one seeded numpy generator, so a spec and a seed give the same file
byte for byte. Times are rounded to milliseconds (ties at one instant happen, as in logs).

>>> spec = TraceSpec(duration=60.0, tiers=(Tier("gold", users=2, rate=1.0),), seed=3)
>>> trace = generate_trace(spec)
>>> (len(trace) > 30, sorted(set(trace.key_names)))
(True, ['gold-00000', 'gold-00001'])
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from tokenlimit.errors import ConfigError
from tokenlimit.sim.trace_table import Trace

ARRIVALS = ("poisson", "bursty", "diurnal")
MAX_USERS = 10_000_000
MAX_REQUESTS = 100_000_000
MAX_START = 10_000_000_000.0


@dataclass(frozen=True, slots=True)
class Tier:
    """One class of users; keys are ``<name>-00000`` ... (``users`` of them).

    ``rate``: mean requests/s of the whole tier. ``arrival``: ``poisson`` (independent),
    ``bursty`` (bursts of ``burst_size`` requests on average, spread over ``burst_spread`` s),
    ``diurnal`` (Poisson whose rate follows a day: ``1 + diurnal_amplitude * cos`` peaking at
    ``peak_hour`` UTC). ``skew``: Zipf exponent of user popularity (0: uniform). Tokens are
    log-normal with the given means and ``sigma``; latency is ``latency_base`` plus
    completion tokens / ``tokens_per_second``.
    """

    name: str
    users: int = 10
    rate: float = 1.0
    arrival: str = "poisson"
    burst_size: float = 8.0
    burst_spread: float = 1.0
    diurnal_amplitude: float = 0.8
    peak_hour: float = 14.0
    skew: float = 0.0
    prompt_mean: float = 400.0
    completion_mean: float = 250.0
    sigma: float = 0.7
    latency_base: float = 0.3
    tokens_per_second: float = 60.0

    def check(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("a tier needs a name")
        for item in fields(self):
            value = getattr(self, item.name)
            if item.name in ("name", "arrival"):
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"tier {self.name!r}: field {item.name!r}: expected a number, "
                                  f"got {value!r}")
            if not math.isfinite(value):
                raise ConfigError(f"tier {self.name!r}: field {item.name!r}: must be a finite "
                                  f"number, got {value!r}")
        if not isinstance(self.users, int) or not 1 <= self.users <= MAX_USERS:
            raise ConfigError(f"tier {self.name!r}: field 'users': a whole number from 1 to "
                              f"{MAX_USERS:,}, got {self.users!r}")
        if self.users < 1 or self.rate < 0 or self.arrival not in ARRIVALS:
            raise ConfigError(f"tier {self.name!r}: users >= 1, rate >= 0 and arrival one of "
                              f"{', '.join(ARRIVALS)}")
        if self.burst_size < 1 or self.burst_spread < 0 or not 0 <= self.diurnal_amplitude <= 1:
            raise ConfigError(f"tier {self.name!r}: burst_size >= 1, burst_spread >= 0, "
                              "0 <= diurnal_amplitude <= 1")
        if self.tokens_per_second <= 0 or self.sigma < 0 or self.latency_base < 0:
            raise ConfigError(f"tier {self.name!r}: tokens_per_second > 0, sigma >= 0, "
                              "latency_base >= 0")


DEFAULT_TIERS = (
    Tier("regular-user", users=20, rate=0.4, arrival="poisson", completion_mean=120.0),
    Tier("subscriber", users=5, rate=0.1, arrival="bursty", completion_mean=150.0),
)


@dataclass(frozen=True, slots=True)
class TraceSpec:
    """What to generate: ``duration`` seconds from ``start`` (Unix seconds)."""

    duration: float = 3600.0
    start: float = 1_700_000_000.0
    seed: int = 0
    tiers: tuple[Tier, ...] = field(default=DEFAULT_TIERS)


SPEC_FIELDS = frozenset({"duration", "start", "seed", "tiers"})


def spec_from_mapping(data: Mapping[str, Any], source: str) -> TraceSpec:
    """A spec from parsed YAML: ``duration``, ``start``, ``seed`` and a list of ``tiers``."""
    known = {f.name for f in fields(Tier)}
    unknown_top = sorted(str(name) for name in set(data) - SPEC_FIELDS)
    if unknown_top:  # a misspelt duration was silently the default hour
        raise ConfigError(f"{source}: unknown field {unknown_top[0]!r} "
                          f"(known: {', '.join(sorted(SPEC_FIELDS))})")
    try:
        tiers = []
        listed = data.get("tiers") or []
        if not isinstance(listed, list):
            raise ConfigError(f"{source}: field 'tiers': expected a list of tiers")
        for index, raw in enumerate(listed):
            where = f"{source}: tiers[{index}]"
            if not isinstance(raw, dict):
                raise ConfigError(f"{where}: expected a mapping with name, users, rate, ...")
            unknown = set(raw) - known
            if unknown:
                raise ConfigError(f"{where}: unknown tier field {sorted(unknown)[0]!r} "
                                  f"(known: {', '.join(sorted(known))})")
            tier = Tier(**raw)
            try:
                tier.check()
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            tiers.append(tier)
        spec = TraceSpec(duration=_number(data, "duration", 3600.0, source),
                         start=_number(data, "start", 1_700_000_000.0, source),
                         seed=int(_number(data, "seed", 0, source, whole=True)),
                         tiers=tuple(tiers) or DEFAULT_TIERS)
    except (TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{source}: not a trace spec ({exc})") from exc
    return spec


def _number(data: Mapping[str, Any], name: str, default: float, source: str,
            whole: bool = False) -> float:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            whole and not isinstance(value, int)):
        kind = "a whole number" if whole else "a number"
        hint = ""
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                float(value)  # YAML reads 1e9 as text: it wants a dot and a sign, 1.0e+9
                hint = " (text in YAML: write 1e9 as 1000000000 or 1.0e+9)"
        raise ConfigError(f"{source}: field {name!r}: expected {kind}, got {value!r}{hint}")
    return value if whole else float(value)


def _arrivals(rng: np.random.Generator, tier: Tier, spec: TraceSpec) -> np.ndarray:
    duration = spec.duration
    if tier.arrival == "bursty":
        bursts = rng.poisson(tier.rate * duration / tier.burst_size)
        starts = rng.uniform(0.0, duration, bursts)
        sizes = rng.geometric(1.0 / tier.burst_size, bursts)
        offsets = rng.exponential(tier.burst_spread / max(tier.burst_size, 1.0), sizes.sum())
        times = np.repeat(starts, sizes) + offsets
        return np.asarray(times[times < duration])
    if tier.arrival == "diurnal":
        peak = tier.rate * (1.0 + tier.diurnal_amplitude)
        times = rng.uniform(0.0, duration, rng.poisson(peak * duration))
        hours = ((spec.start + times) % 86400.0) / 3600.0
        level = 1.0 + tier.diurnal_amplitude * np.cos((hours - tier.peak_hour) * math.pi / 12)
        return np.asarray(times[rng.uniform(0.0, peak, times.size) < tier.rate * level])
    return rng.uniform(0.0, duration, rng.poisson(tier.rate * duration))


def _lognormal(rng: np.random.Generator, mean: float, sigma: float, size: int) -> np.ndarray:
    mu = math.log(max(mean, 1e-9)) - sigma * sigma / 2
    return np.maximum(np.rint(rng.lognormal(mu, sigma, size)), 1).astype(np.int64)


def check_spec(spec: TraceSpec) -> None:
    """Raise ``ConfigError`` for a spec that cannot be generated (NaN, negative, too big)."""
    for tier in spec.tiers:
        tier.check()
    if not math.isfinite(spec.duration) or spec.duration <= 0:
        raise ConfigError(f"duration must be a finite number of seconds > 0, got {spec.duration}")
    if not math.isfinite(spec.start) or not 0 <= spec.start <= MAX_START:
        raise ConfigError(f"start must be a Unix time from 0 to {MAX_START:.0f} seconds, "
                          f"got {spec.start}")
    if not 0 <= spec.seed < 2**64:
        raise ConfigError(f"seed must be a whole number from 0 to 2**64-1, got {spec.seed}")
    expected = sum(t.rate * (1.0 + t.diurnal_amplitude if t.arrival == "diurnal" else 1.0)
                   for t in spec.tiers) * spec.duration
    if expected > MAX_REQUESTS:
        raise ConfigError(f"the spec asks for about {expected:,.0f} requests; at most "
                          f"{MAX_REQUESTS:,} are generated (shorten the duration or lower the "
                          "rates)")


def generate_trace(spec: TraceSpec) -> Trace:
    """A synthetic trace in time order (ties keep tier order), one key per request."""
    check_spec(spec)
    rng = np.random.default_rng(spec.seed)
    names: list[str] = []
    parts: list[tuple[np.ndarray, ...]] = []
    for tier in spec.tiers:
        times = _arrivals(rng, tier, spec)
        weights = 1.0 / np.arange(1, tier.users + 1) ** tier.skew
        users = rng.choice(tier.users, size=times.size, p=weights / weights.sum())
        prompt = _lognormal(rng, tier.prompt_mean, tier.sigma, times.size)
        completion = _lognormal(rng, tier.completion_mean, tier.sigma, times.size)
        latency = tier.latency_base + completion / tier.tokens_per_second
        parts.append((times, users + len(names), prompt, completion, latency))
        names.extend(f"{tier.name}-{u:05d}" for u in range(tier.users))
    times, keys, prompt, completion, latency = (np.concatenate(c) for c in zip(*parts,
                                                                            strict=True))
    ts = np.round(spec.start + times, 3)
    order = np.argsort(ts, kind="stable")
    n = int(ts.size)
    return Trace(
        path="<generated>", ts=ts[order], latency=np.round(latency[order], 3),
        prompt_tokens=prompt[order], completion_tokens=completion[order],
        total_tokens=prompt[order] + completion[order],
        key_ptr=np.arange(n + 1, dtype=np.int64), key_index=keys[order].astype(np.int64),
        key_names=tuple(names), imputed=np.zeros(n, dtype=np.bool_))


def with_seed(spec: TraceSpec, seed: int | None) -> TraceSpec:
    return spec if seed is None else replace(spec, seed=seed)
