"""The simulator's names that the CLI offers, without numpy (command start-up stays light).

``tokenlimit.sim.algorithms`` builds ``ALGORITHMS`` from ``SEMANTICS``; the CLI's help texts and
option checks read the names from here.
"""

from __future__ import annotations

# Each replay semantics' name and one-line summary, in the order the CLI lists them.
SEMANTICS: dict[str, str] = {
    "asm": "the ASM service exactly (whole-interval refills, TTL resets)",
    "asm-reserve": "serve --mode reserve exactly: asm, each admitted check reserves --estimate",
    "token-bucket": "continuous refill, starts full, charged at end",
    "token-bucket-prepaid": "a check must cover the key's mean charge, settled at end",
    "gcra": "generic cell rate algorithm (tokens/rate, burst = max_tokens)",
    "sliding-window": "at most max_tokens reported in any window of W seconds",
    "fixed-window": "at most max_tokens per aligned W-second window",
    "leaky-bucket": "a meter of capacity max_tokens leaking at F/I",
}
