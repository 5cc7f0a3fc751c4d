"""The Python client's typed models, generated from the three services' OpenAPI documents.

``python -m deploy.clientgen`` writes ``clients/python/src/alliance_client/models/<service>.py``
for the tracker, attribution and commission apps (each built by its own ``create_app``); with
``--check`` it writes nothing and exits 1 when a checked-in module differs from what the
current routes give (``tests/clients/test_models_current.py`` runs that check).

A small generator on purpose: the documents use a handful of JSON Schema shapes (objects,
``anyOf`` with null, arrays, maps, string enums, dates), and each becomes a pydantic model or
a type alias. Decimal numbers (money, rates) are :class:`~decimal.Decimal`, never float.
The output goes through ``ruff format`` so the checked-in files pass the format check as
written.
"""

from __future__ import annotations

import argparse
import keyword
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SERVICES: Mapping[str, str] = {
    "tracker": "services.tracker.app",
    "attribution": "services.attribution.app",
    "commission": "services.commission.app",
}
ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "clients" / "python" / "src" / "alliance_client"
MODELS = PACKAGE / "models"
#: attribute names a pydantic field may not take (they are the model's own)
_RESERVED = frozenset(dir(BaseModel))


@contextmanager
def _dev_environment() -> Iterator[None]:
    """No ``ALLIANCE_*`` variable of the caller's shell but ``ALLIANCE_ENV=dev``: the documents
    are those of the default settings, whoever generates them."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("ALLIANCE_")}
    for k in saved:
        del os.environ[k]
    os.environ["ALLIANCE_ENV"] = "dev"
    try:
        yield
    finally:
        os.environ.pop("ALLIANCE_ENV", None)
        os.environ.update(saved)


def openapi(service: str) -> dict[str, Any]:
    """The OpenAPI document of ``service``, from its app factory (nothing is started)."""
    import importlib

    from shared.config import Settings

    with _dev_environment():
        module = importlib.import_module(SERVICES[service])
        app = module.create_app(Settings())
        doc: dict[str, Any] = app.openapi()
    return doc


@dataclass
class _Module:
    """What one generated module needs: its definitions and the names each depends on."""

    defs: dict[str, str] = field(default_factory=dict)
    deps: dict[str, set[str]] = field(default_factory=dict)
    imports: set[str] = field(default_factory=set)


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _annotation(schema: Mapping[str, Any], mod: _Module, deps: set[str]) -> str:
    """The Python type of a JSON Schema ``schema``; names it refers to go to ``deps``."""
    if "$ref" in schema:
        name = _ref_name(schema["$ref"])
        deps.add(name)
        return name
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _annotation(schema["allOf"][0], mod, deps)
    if "anyOf" in schema or "oneOf" in schema:
        members = [_annotation(s, mod, deps) for s in schema.get("anyOf") or schema["oneOf"]]
        if "Decimal" in members:  # a decimal accepted as a number or a string
            members = [m for m in members if m not in ("str", "Decimal")]
            members.insert(0, "Decimal")
        unique = list(dict.fromkeys(members))
        if "None" in unique:  # nullable: None last
            unique = [m for m in unique if m != "None"] + ["None"]
        if "Any" in unique:
            return "Any"
        return " | ".join(unique)
    if "const" in schema:
        mod.imports.add("Literal")
        return f"Literal[{schema['const']!r}]"
    if "enum" in schema:
        mod.imports.add("Literal")
        return "Literal[" + ", ".join(repr(v) for v in schema["enum"]) + "]"
    kind = schema.get("type")
    if isinstance(kind, list):
        return _annotation({"anyOf": [{**schema, "type": k} for k in kind]}, mod, deps)
    if kind == "string":
        fmt = schema.get("format")
        if fmt == "date-time":
            mod.imports.add("datetime")
            return "datetime"
        if fmt == "date":
            mod.imports.add("date")
            return "date"
        return "str"
    if kind == "integer":
        return "int"
    if kind == "number":
        mod.imports.add("Decimal")
        return "Decimal"
    if kind == "boolean":
        return "bool"
    if kind == "null":
        return "None"
    if kind == "array":
        items = schema.get("items")
        if not items:
            mod.imports.add("Any")
            return "list[Any]"
        return f"list[{_annotation(items, mod, deps)}]"
    if kind == "object" or "additionalProperties" in schema:
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping) and extra:
            return f"dict[str, {_annotation(extra, mod, deps)}]"
        mod.imports.add("Any")
        return "dict[str, Any]"
    mod.imports.add("Any")
    return "Any"


def _docstring(text: str | None, indent: str) -> str:
    if not text:
        return ""
    text = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines: list[str] = []
    for paragraph in text.splitlines():
        lines += textwrap.wrap(paragraph, 92 - len(indent)) or [""]
    if len(lines) == 1:
        return f'{indent}"""{lines[0]}"""\n'
    body = "\n".join(f"{indent}{line}" if line else "" for line in lines[1:])
    return f'{indent}"""{lines[0]}\n{body}\n{indent}"""\n'


def _field_name(prop: str) -> str:
    name = "".join(c if c.isalnum() or c == "_" else "_" for c in prop)
    if not name or name[0].isdigit():
        name = f"f_{name}"
    if keyword.iskeyword(name) or name in _RESERVED or name.startswith("model_"):
        name += "_"
    return name


def _default(value: Any) -> str:
    return repr(value)


def _model(name: str, schema: Mapping[str, Any], mod: _Module) -> None:
    deps: set[str] = set()
    out = [f"class {name}(ApiModel):\n", _docstring(schema.get("description"), "    ")]
    required = set(schema.get("required", ()))
    props: Mapping[str, Any] = schema.get("properties", {})
    if not props:
        out.append("    pass\n" if not schema.get("description") else "")
    for prop, sub in props.items():
        attr = _field_name(prop)
        kind = _annotation(sub, mod, deps)
        args: list[str] = []
        if attr != prop:
            args.append(f"alias={prop!r}")
        if prop not in required:
            if "default" in sub:
                args.insert(0, f"default={_default(sub['default'])}")
            else:
                if not kind.endswith("| None") and kind != "Any":
                    kind += " | None"
                args.insert(0, "default=None")
        if args == ["default=None"] or (len(args) == 1 and args[0].startswith("default=")):
            out.append(f"    {attr}: {kind} = {args[0].removeprefix('default=')}\n")
        elif args:
            out.append(f"    {attr}: {kind} = Field({', '.join(args)})\n")
        else:
            out.append(f"    {attr}: {kind}\n")
    mod.defs[name] = "".join(out)
    mod.deps[name] = deps - {name}


def _alias(name: str, schema: Mapping[str, Any], mod: _Module) -> None:
    deps: set[str] = set()
    kind = _annotation(schema, mod, deps)
    mod.imports.add("TypeAlias")
    doc = schema.get("description")
    comment = f"#: {' '.join(doc.split())}\n" if doc else ""
    mod.defs[name] = f"{comment}{name}: TypeAlias = {kind}\n"
    mod.deps[name] = deps - {name}


def _define(name: str, schema: Mapping[str, Any], mod: _Module) -> None:
    if schema.get("type") == "object" and "properties" in schema:
        _model(name, schema, mod)
    else:
        _alias(name, schema, mod)


def _inline_bodies(doc: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The request bodies a route documents inline (not as a component), when they are named
    objects: the tracker's signed routes describe their raw body this way. Their ``$defs``
    too."""
    for ops in doc.get("paths", {}).values():
        for op in ops.values():
            content = op.get("requestBody", {}).get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            if "$ref" in schema or schema.get("type") != "object" or "properties" not in schema:
                continue
            yield from schema.get("$defs", {}).items()
            yield schema["title"], schema


def _operations(doc: Mapping[str, Any]) -> str:
    rows = []
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            rows.append(f"    ({method.upper()!r}, {path!r}): {op.get('operationId', '')!r},\n")
    return (
        "#: every route of the service: (method, path template) → its OpenAPI operation id\n"
        "OPERATIONS: Final[Mapping[tuple[str, str], str]] = {\n" + "".join(rows) + "}\n"
    )


def render(service: str, doc: Mapping[str, Any]) -> str:
    """The source of ``models/<service>.py`` for the OpenAPI document ``doc``."""
    mod = _Module()
    schemas: dict[str, Mapping[str, Any]] = dict(doc.get("components", {}).get("schemas", {}))
    for name, schema in _inline_bodies(doc):
        schemas.setdefault(name, schema)
    for name in sorted(schemas):
        _define(name, schemas[name], mod)
    graph = TopologicalSorter({n: sorted(mod.deps[n]) for n in sorted(mod.defs)})
    order = list(graph.static_order())
    typing_names = sorted({"Final", *(mod.imports & {"Any", "Literal", "TypeAlias"})})
    head = [
        f'"""Models of the {service} service\'s API (OpenAPI {doc["info"]["version"]}).\n\n'
        "Generated by ``python -m deploy.clientgen`` from the service's own OpenAPI document: do\n"
        'not edit by hand (a test fails when this file is not what the routes give)."""\n\n',
        "from __future__ import annotations\n\n",
        "from collections.abc import Mapping\n",
    ]
    dt = sorted(mod.imports & {"date", "datetime"})
    if dt:
        head.append(f"from datetime import {', '.join(dt)}\n")
    if "Decimal" in mod.imports:
        head.append("from decimal import Decimal\n")
    head.append(f"from typing import {', '.join(typing_names)}\n\n")
    body = "".join(mod.defs.values())
    if "Field(" in body:
        head.append("from pydantic import Field\n\n")
    head.append("from alliance_client._base import ApiModel\n\n")
    parts = ["".join(head), *(mod.defs[n] for n in order), _operations(doc)]
    return _ruff_format("\n\n".join(parts))


def _ruff_format(source: str) -> str:
    """``source`` with its imports sorted and formatted, as the repository's ruff wants."""
    ruff = str(Path(sys.executable).with_name("ruff"))
    stdin = ["--stdin-filename", str(MODELS / "generated.py"), "-"]
    for command in (
        [ruff, "check", "--select", "I", "--fix", "--quiet", *stdin],
        [ruff, "format", *stdin],
    ):
        source = subprocess.run(
            command, input=source, capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    return source


def generated() -> dict[Path, str]:
    """Every generated file and its content, from the current routes."""
    return {MODELS / f"{s}.py": render(s, openapi(s)) for s in SERVICES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy.clientgen", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated().items():
        current = path.read_text() if path.exists() else None
        if current == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(text)
    for path in stale:
        verb = "stale" if args.check else "wrote"
        print(f"{verb}: {path.relative_to(ROOT)}")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
