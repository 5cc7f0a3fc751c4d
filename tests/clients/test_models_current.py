"""The client's generated models are what the services' current routes give: a route or schema
changed without ``python -m deploy.clientgen`` fails here."""

from __future__ import annotations

import copy
import re
from pathlib import Path

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
