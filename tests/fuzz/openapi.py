"""schemathesis over a service's own OpenAPI, as one principal after another.

Every operation of the schema is fuzzed with data that fits it (positive) and data that does
not (negative), and swept with hostile values (integers beyond 64 bits, times whose offset
leaves the representable range, years past 9999, bare numbers as times, NUL and non-ASCII
characters, forged cursors, deep nesting…) one parameter at a time. Each response must not
be a server error, must have a status the operation documents, and a body that fits the
schema documented for that status. Seeded and bounded, so a run is reproducible and short.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from starlette.types import Scope

from shared.db import encode_cursor
from tests.fuzz.bridge import LoopBridge

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@dataclass(frozen=True)
class Caller:
    """Who fuzzes, and how much: the headers of each request (a bearer key or nothing), path
    values of its own (its store id, its order: without them nearly every case stops at
    ``403``/``404``), a rewrite of the raw request (a store's signature), the cases per
    operation in each generation mode, and whether it sweeps the hostile values."""

    name: str
    headers: dict[str, str] = field(default_factory=dict)
    own: dict[str, str] = field(default_factory=dict)
    rewrite: Callable[[Scope, bytes], Scope] | None = None
    positive: int = 6
    negative: int = 3
    hostile: bool = False


@dataclass
class Findings:
    """What the fuzzing found: one entry per (caller, operation, mode) that failed."""

    failures: list[str] = field(default_factory=list)
    #: (caller, operation, status) → cases answered so
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)

    @property
    def cases(self) -> int:
        return self.statuses.total()

    @property
    def server_errors(self) -> int:
        return sum(n for (_, _, status), n in self.statuses.items() if status >= 500)

    def report(self) -> str:
        return "\n\n".join(self.failures)

    def save(self, name: str, seconds: float) -> None:
        """``tests/artifacts/fuzz-<name>.txt``: the statuses answered, per caller and
        operation, and the totals (what the figures of docs/reliability.md come from)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{caller:10} {op:64} {status} {n}"
            for (caller, op, status), n in sorted(self.statuses.items())
        ]
        lines.append(f"{self.cases} cases, {self.server_errors} 5xx, {seconds:.0f} s")
        (ARTIFACTS / f"fuzz-{name}.txt").write_text("\n".join(lines) + "\n")


def fuzz_schema(bridge: LoopBridge, callers: list[Caller], findings: Findings) -> None:
    """Fuzz every operation of the bridged app's ``/openapi.json`` as each caller. Blocking:
    run it in a worker thread, never on the loop the app runs on."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", bridge)
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    for caller in callers:
        caller_bridge = LoopBridge(bridge.app, bridge.loop, caller.rewrite, bridge.errors)
        for op in operations:
            for mode, examples in (
                (GenerationMode.POSITIVE, caller.positive),
                (GenerationMode.NEGATIVE, caller.negative),
            ):
                if examples:
                    _fuzz_operation(caller_bridge, caller, op, mode, examples, findings)
            if caller.hostile:
                _sweep(caller_bridge, caller, op, schema.raw_schema, findings)


def _pinned(caller: Caller, op: Any) -> dict[str, str]:
    names = {p.name for p in op.path_parameters}
    return {name: value for name, value in caller.own.items() if name in names}


def fuzz_settings(examples: int) -> hypothesis.settings:
    """Bounded and derandomized: the same cases on every run, so CI is reproducible."""
    return hypothesis.settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        report_multiple_bugs=False,
    )


def _call(bridge: LoopBridge, caller: Caller, op: Any, case: Case[Any], f: Findings) -> None:
    response = case.call(app=bridge, headers=caller.headers)
    f.statuses[caller.name, op.label, response.status_code] += 1
    case.validate_response(response, checks=CHECKS, headers=caller.headers)


def _fuzz_operation(
    bridge: LoopBridge,
    caller: Caller,
    op: Any,
    mode: GenerationMode,
    examples: int,
    findings: Findings,
) -> None:
    strategies = [op.as_strategy(generation_mode=mode)]
    if pinned := _pinned(caller, op):
        strategies.append(op.as_strategy(generation_mode=mode, path_parameters=pinned))

    @fuzz_settings(examples)
    @hypothesis.given(case=st.one_of(strategies))
    def run(case: Case[Any]) -> None:
        _call(bridge, caller, op, case, findings)

    try:
        run()
    except Unsatisfiable:
        pass  # nothing to negate: an operation without parameters has no negative case
    except (Exception, FailureGroup) as exc:  # a check's failures come as a group
        findings.failures.append(f"[{caller.name}] {op.label} ({mode.value}): {exc}")


# -- the hostile sweep ------------------------------------------------------------------------

HOSTILE_TEXT = ["", " ", "\x00", "é", "€", "😀", "٣", "１２", "a" * 5000, "%", "{product_id}"]
HOSTILE_INT = [
    "99999999999999999999999",
    "-99999999999999999999999",
    "9223372036854775808",
    "-9223372036854775809",
    "-1",
    "9" * 5000,
    "1e3",
    "٣",
]
#: numbers pydantic alone would read as unix seconds (``?to=0`` was 1970): not times
BARE_NUMBERS = ["0", "1700000000", "-1", "1e3", "0.5", "20260131"]
HOSTILE_TIME = [
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-01-01T00:00:00",
    "2026-02-30T00:00:00Z",
    "10000-01-01T00:00:00Z",
    *BARE_NUMBERS,
]
HOSTILE_DATE = [
    "0001-01-01",
    "9999-12-31",
    "10000-01-01",
    "2026-02-30",
    "0000-01-01",
    *BARE_NUMBERS,
]
HOSTILE_PERIOD = ["10000-01", "0000-00", "9999-12", "1999-12", "٢٠٢٦-٠١", "2026-1"]
#: cursors of 1 to 4 values that decode, each value out of any column's range
HOSTILE_CURSOR = [
    encode_cursor([value] * size)
    for size in (1, 2, 3, 4)
    for value in ("\x00", "99999999999999999999", "1e999999", "NaN", "9999-12-31T23:59:59-23:59")
] + ["W10", "e30", "!!!"]
#: JSON values for body fields (of any declared type)
HOSTILE_JSON: list[object] = [
    None,
    10**30,
    -(10**30),
    2**63,
    1e308,
    -1,
    0.5,
    True,
    [],
    {},
    "\x00",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "1e999999",
    "NaN",
    "a" * 5000,
    [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
]


def _kinds(schema: dict[str, Any]) -> set[str]:
    """The types and formats a parameter's schema allows (``anyOf`` included)."""
    out = {str(schema.get("type", "")), str(schema.get("format", ""))}
    for sub in schema.get("anyOf", []) + schema.get("oneOf", []):
        out |= _kinds(sub)
    return out


def _values(name: str, schema: dict[str, Any]) -> list[str]:
    kinds = _kinds(schema)
    if "cursor" in name:
        return HOSTILE_CURSOR + HOSTILE_INT[:2]
    if "integer" in kinds:
        return HOSTILE_INT
    if "date-time" in kinds:
        return [*HOSTILE_TIME, "", "\x00"]
    if "date" in kinds:
        return [*HOSTILE_DATE, "", "\x00"]
    if name == "period":
        return HOSTILE_PERIOD + HOSTILE_TEXT
    return HOSTILE_TEXT


def _body_fields(raw: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    body = content.get("schema", {})
    if "$ref" in body:
        body = raw["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    return list(body.get("properties", {}))


def _like(base: Case[Any], where: str, name: str, value: object) -> Case[Any]:
    """``base`` with one path parameter, query parameter or body field replaced."""
    path, query = dict(base.path_parameters), dict(base.query or {})
    body: Any = base.body
    if where == "path":
        path[name] = value
    elif where == "query":
        query[name] = value
    else:
        body = {**body, name: value}
    case: Case[Any] = base.operation.Case(
        path_parameters=path,
        headers=dict(base.headers or {}),
        query=query,
        body=body,
        media_type=base.media_type,
    )
    return case


def _hostile_cases(base: Case[Any], raw: dict[str, Any], op: Any) -> Iterator[Case[Any]]:
    operation = raw["paths"][op.path][op.method.lower()]
    for param in operation.get("parameters", []):
        where, name = param["in"], param["name"]
        if where not in ("path", "query"):
            continue  # header values are latin-1: the client cannot even send most of these
        for value in _values(name, param.get("schema", {})):
            if where == "path" and value in ("", "%"):
                continue  # another route, or no URL at all
            yield _like(base, where, name, value)
    if isinstance(base.body, dict):
        for field_name in _body_fields(raw, operation):
            for json_value in HOSTILE_JSON:
                yield _like(base, "body", field_name, json_value)


def _sweep(bridge: LoopBridge, caller: Caller, op: Any, raw: dict[str, Any], f: Findings) -> None:
    """One parameter (or body field) at a time replaced by each hostile value, in a simple
    valid case of the operation (on the caller's own path values)."""
    try:
        base: Case[Any] = hypothesis.find(
            op.as_strategy(path_parameters=_pinned(caller, op) or None),
            lambda _: True,
            settings=fuzz_settings(1),
        )
    except Unsatisfiable:
        return
    failed: set[str] = set()
    for case in _hostile_cases(base, raw, op):
        try:
            _call(bridge, caller, op, case, f)
        except (Exception, FailureGroup) as exc:
            message = str(exc).split("Reproduce with:")[0].strip()
            if message not in failed:  # one report per kind of failure
                failed.add(message)
                f.failures.append(f"[{caller.name}] {op.label} (hostile): {exc}")
