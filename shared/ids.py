"""Identifiers: time-ordered, so that a later id sorts after an earlier one, and unguessable.

The random part comes from the operating system's CSPRNG: a visitor id is a bearer
credential, so it must not be predictable from ids seen before. One ``os.urandom`` call per id
costs about 0.2 µs more than slicing a pre-read block (measured), nothing next to a redirect,
so there is no buffer to guard against threads and forks.
"""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """32 hex digits: 48 bits of Unix milliseconds, then 80 random bits (UUIDv7-like)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
