"""Light constants of the gateway package (option defaults need them without httptools)."""

from __future__ import annotations

LOOPBACK = "127.0.0.1"
