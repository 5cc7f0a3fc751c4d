"""Identifiers: time-ordered, so that a later id sorts after an earlier one."""

from __future__ import annotations

import os
import time


def new_id() -> str:
    """32 hex digits: 48 bits of Unix milliseconds, then 80 random bits (UUIDv7-like)."""
    return f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
