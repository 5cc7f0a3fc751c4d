"""The client's generated models are what the services' current routes give: a route or schema
changed without ``python -m deploy.clientgen`` fails here."""

from __future__ import annotations

import copy
import importlib
import re
import sys
from pathlib import Path
from typing import Any, ClassVar

import pytest

from alliance_client.models import attribution, commission, tracker
from deploy import clientgen

CLIENTS = clientgen.PACKAGE / "clients.py"
OPERATIONS = {
    **tracker.OPERATIONS,
    **attribution.OPERATIONS,
    **commission.OPERATIONS,
}


@pytest.fixture(scope="module")
def generated() -> dict[Path, str]:
    return clientgen.generated()


def test_the_checked_in_models_are_those_of_the_current_routes(
    generated: dict[Path, str],
) -> None:
    assert set(generated) == {clientgen.MODELS / f"{s}.py" for s in clientgen.SERVICES}
    stale = [p.name for p, text in generated.items() if p.read_text() != text]
    assert not stale, f"run `python -m deploy.clientgen`: {stale} are stale"
    assert clientgen.main(["--check"]) == 0


def test_a_changed_route_or_schema_changes_the_models() -> None:
    doc = clientgen.openapi("tracker")
    before = clientgen.render("tracker", doc)
    changed = copy.deepcopy(doc)
    changed["components"]["schemas"]["LinkResponse"]["properties"]["campaign"] = {"type": "string"}
    assert "campaign: str | None = None" in clientgen.render("tracker", changed)
    moved = copy.deepcopy(doc)
    moved["paths"]["/v2/links"] = moved["paths"].pop("/v1/links")
    assert "/v2/links" in clientgen.render("tracker", moved)
    assert before == clientgen.render("tracker", doc)  # deterministic


def test_every_route_the_clients_call_exists() -> None:
    """Each ``send("<METHOD>", "<path template>"`` of the clients is a route of a service."""
    calls = re.findall(r'send\(\s*"([A-Z]+)",\s*"([^"]+)"', CLIENTS.read_text())
    calls += re.findall(r'_program\(\s*"([A-Z]+)",\s*"([^"]+)"', CLIENTS.read_text())
    assert len(calls) > 30
    missing = sorted({c for c in calls if c not in OPERATIONS})
    assert not missing, missing
    paths = {path for _, path in OPERATIONS}
    templates = set(re.findall(r'"(/v1/[^"]*)"', CLIENTS.read_text()))
    assert not templates - paths, sorted(templates - paths)


class TestTheModelsReadTheApi:
    def test_decimals_are_decimal_and_times_aware(self) -> None:
        req = commission.RateRequest.model_validate({"rate": "0.06"})
        assert str(req.rate) == "0.06"
        assert req.model_dump(mode="json") == {"rate": "0.06"}
        view = commission.PayoutRequest.model_validate(
            {"affiliate_id": "a", "up_to": "2026-03-01T00:00:00Z"}
        )
        assert view.up_to.utcoffset() is not None

    def test_a_field_the_api_adds_later_is_kept(self) -> None:
        health = tracker.Health.model_validate({"status": "ok", "region": "eu"})
        assert health.status == "ok"
        assert health.model_extra == {"region": "eu"}

    def test_a_missing_required_field_is_refused(self) -> None:
        from pydantic import ValidationError

        with pytest.raises(ValidationError):
            tracker.LinkResponse.model_validate({"code": "x"})


class TestTheGenerator:
    """Each JSON Schema shape the documents use becomes the Python type it means."""

    DOC: ClassVar[dict[str, Any]] = {
        "info": {"version": "1"},
        "paths": {"/v1/things/{id}": {"get": {"operationId": "get_thing"}}},
        "components": {
            "schemas": {
                "Colour": {"type": "string", "enum": ["red", "green"]},
                "Thing": {
                    "type": "object",
                    "description": 'A thing with """quotes""" and a \\ backslash.',
                    "required": ["id", "from", "rate", "at", "colour", "tags", "parts"],
                    "properties": {
                        "id": {"type": "integer"},
                        "from": {"type": "string", "format": "date"},
                        "rate": {"anyOf": [{"type": "number"}, {"type": "string"}]},
                        "at": {"type": "string", "format": "date-time"},
                        "colour": {"$ref": "#/components/schemas/Colour"},
                        "tags": {"type": "object", "additionalProperties": {"type": "string"}},
                        "parts": {"type": "array", "items": {"$ref": "#/components/schemas/Part"}},
                        "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        "size": {"type": "integer", "default": 3},
                        "json": {"type": "boolean"},
                    },
                },
                "Part": {"type": "object", "properties": {"n": {"type": "integer"}}},
            }
        },
    }

    def test_shapes_become_types_and_the_module_reads_json(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        source = clientgen.render("things", self.DOC)
        assert "Colour: TypeAlias = Literal['red', 'green']" in source.replace('"', "'")
        assert "rate: Decimal" in source
        assert "from_: date = Field(alias='from')" in source.replace('"', "'")
        assert "note: str | None = None" in source
        assert "size: int = 3" in source
        assert "json_: bool | None = Field(default=None, alias='json')" in source.replace('"', "'")
        assert source.index("class Part(") < source.index("class Thing(")  # used after defined
        (tmp_path / "things_models.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        things = importlib.import_module("things_models")
        thing = things.Thing.model_validate_json(
            '{"id": 1, "from": "2026-03-01", "rate": "0.06", "at": "2026-03-01T12:00:00Z",'
            ' "colour": "red", "tags": {"a": "b"}, "parts": [{"n": 2}], "json": true}'
        )
        assert str(thing.rate) == "0.06"
        assert thing.from_.isoformat() == "2026-03-01"
        assert thing.at.utcoffset() is not None
        assert thing.parts[0].n == 2
        assert thing.json_ is True
        assert thing.model_dump(mode="json", by_alias=True)["from"] == "2026-03-01"
        assert things.OPERATIONS == {("GET", "/v1/things/{id}"): "get_thing"}
        monkeypatch.delitem(sys.modules, "things_models")
