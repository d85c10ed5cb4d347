"""Which field of a gateway's log holds each trace field: ``--from PRESET`` and ``--map``.

A ``FieldMap`` names, for one log format, the field of the request's start (``ts``: Unix
seconds or milliseconds, or ISO-8601 text), of its rate-limit key, of its duration (or of its
end time), of its token counts, id and HTTP status. A dotted name (``ai.proxy.usage.prompt_token``)
reaches into nested objects, or into a field that holds a JSON object as text (Envoy prints
a plug-in's filter state so: Higress's ``ai_log``). Lines whose status is 429 were limited
when recorded: they stay in the trace as demand, with their usage unknown (imputed like any
request without usage).

>>> parse_map("ts=started_at:ms,key=consumer.username", PRESETS["kong"]).ts
'started_at'
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from tokenlimit.errors import ConfigError

UNITS = ("s", "ms")


@dataclass(frozen=True, slots=True)
class FieldMap:
    """The log field behind each trace field (``None``: the log has none)."""

    ts: str
    key: str
    ts_unit: str = "s"  # for a numeric ts; ISO-8601 text is recognised by its type
    latency: str | None = None
    latency_unit: str = "s"
    end: str | None = None  # the request's end time, when the log has no duration
    prompt_tokens: str | None = None
    completion_tokens: str | None = None
    total_tokens: str | None = None
    id: str | None = None
    status: str | None = None
    # An object (or its JSON text) holding the fields the log has no field of their name for.
    within: str | None = None

    def sources(self) -> dict[str, str]:
        """Trace field -> log field, for the fields this map names."""
        return {f.name: value for f in fields(self)
                if not f.name.endswith("_unit") and f.name != "within"
                and isinstance(value := getattr(self, f.name), str)}


PRESETS: dict[str, FieldMap] = {
    # ASM / Istio JSON access logs: Envoy's standard fields plus ASM's LLM observability fields.
    "asm": FieldMap(ts="start_time", key="authority", latency="duration", latency_unit="ms",
                    prompt_tokens="request_prompt_tokens",
                    completion_tokens="request_completion_tokens", id="request_id",
                    status="response_code"),
    # Higress ai-statistics: input_token, output_token, llm_service_duration (as text) inside
    # the access log's ai_log (%FILTER_STATE(wasm.ai_log:PLAIN)%, a JSON object as text), or
    # printed as fields of their own.
    "higress": FieldMap(ts="start_time", key="authority", latency="llm_service_duration",
                        latency_unit="ms", prompt_tokens="input_token",
                        completion_tokens="output_token", id="request_id",
                        status="response_code", within="ai_log"),
    # Envoy AI Gateway: an access log that prints the llmRequestCosts metadata keys.
    "envoy-ai-gateway": FieldMap(ts="start_time", key="x-user-id", latency="duration",
                                 latency_unit="ms", prompt_tokens="llm_input_token",
                                 completion_tokens="llm_output_token",
                                 total_tokens="llm_total_token", id="request_id",
                                 status="response_code"),
    # LiteLLM spend logs (LiteLLM_SpendLogs rows, exported as JSON Lines, CSV or Parquet).
    "litellm": FieldMap(ts="startTime", key="api_key", end="endTime",
                        prompt_tokens="prompt_tokens", completion_tokens="completion_tokens",
                        total_tokens="total_tokens", id="request_id"),
    # Kong AI Gateway audit logs (a logging plugin's JSON, with the AI Proxy plugin's usage:
    # ai.proxy in Kong's current docs, ai.<plug-in name> (ai-proxy, ai-proxy-advanced) in
    # those of 3.6 to 3.9).
    "kong": FieldMap(ts="started_at", ts_unit="ms", key="consumer.username",
                     latency="latencies.request", latency_unit="ms",
                     prompt_tokens="ai.*.usage.prompt_token",
                     completion_tokens="ai.*.usage.completion_token",
                     total_tokens="ai.*.usage.total_tokens", id="request.id",
                     status="response.status"),
}
PRESETS["istio"] = PRESETS["asm"]

_MAPPABLE = ("ts", "key", "latency", "end", "prompt_tokens", "completion_tokens",
             "total_tokens", "id", "status")
# Read, without a preset, from the log's columns of the same names unless --map names others.
_CANONICAL = ("latency", "prompt_tokens", "completion_tokens", "total_tokens", "id", "status")


def parse_map(text: str, base: FieldMap | None = None) -> FieldMap:
    """``ts=FIELD[:s|ms],key=FIELD,latency=FIELD[:s|ms],...`` over ``base`` (a preset).

    ``ConfigError`` for an unknown trace field, a missing ``=``, a unit other than s or ms,
    or (without a preset) a map without ``ts`` and ``key``.
    """
    given: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value:
            raise ConfigError(f"--map {part!r}: expected TRACE_FIELD=LOG_FIELD")
        if name not in _MAPPABLE:
            raise ConfigError(f"--map {part!r}: {name!r} is not one of {', '.join(_MAPPABLE)}")
        field, _, unit = value.partition(":")
        if unit:
            if name not in ("ts", "latency") or unit not in UNITS:
                raise ConfigError(f"--map {part!r}: a unit (s or ms) is for ts and latency")
            given[f"{name}_unit"] = unit
        given[name] = field
    if base is None:
        missing = [n for n in ("ts", "key") if n not in given]
        if missing:
            raise ConfigError(f"--map needs {' and '.join(missing)} (or --from PRESET)")
        # The trace fields not named are read from columns of their own names, where the
        # log has them (a trace export with ISO-8601 times keeps its latency and usage).
        same = {n: n for n in _CANONICAL if not (n == "latency" and "end" in given)}
        return FieldMap(**{**same, **given})
    return replace(base, **given)


def field_map(preset: str | None, mapping: str | None) -> FieldMap | None:
    """The map ``--from`` and ``--map`` give together (``None`` when neither is given)."""
    if preset is None and mapping is None:
        return None
    base = None
    if preset is not None:
        if preset not in PRESETS:
            raise ConfigError(f"--from {preset!r}: choose one of {', '.join(sorted(PRESETS))}")
        base = PRESETS[preset]
    if mapping is None:
        assert base is not None
        return base
    return parse_map(mapping, base)
