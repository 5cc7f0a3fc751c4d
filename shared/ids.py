"""Identifiers: time-ordered, so that a later id sorts after an earlier one."""

from __future__ import annotations

import os
import random
import time

# Seeded once from the OS: ids must be unique and unguessable enough to be unforgeable in
# practice, and os.urandom per id costs a syscall on the click path.
_random = random.Random(os.urandom(32))


def new_id() -> str:
    """32 hex digits: 48 bits of Unix milliseconds, then 80 random bits (UUIDv7-like)."""
    return f"{time.time_ns() // 1_000_000:012x}{_random.getrandbits(80):020x}"
