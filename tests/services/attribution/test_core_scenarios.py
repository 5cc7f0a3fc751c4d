"""Every worked example (tests/scenarios), replayed through the pure core, to the cent."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.attribution.core import OrderRef, decide
from tests.scenarios import PureReplay, as_expected, load, scenario_files


@pytest.mark.parametrize("path", scenario_files(), ids=lambda p: p.stem)
def test_scenario_matches_expected_figures(path: Path) -> None:
    scenario = load(path)
    replay = PureReplay()
    for event in scenario["events"]:
        replay.apply(event)
    for expected in scenario["expected"]:
        order_id = expected["order_id"]
        facts = replay.orders[order_id]
        ref = OrderRef(order_id, facts.store_id, replay.visitors[order_id], facts.placed_at)
        decision = decide(ref, replay.clicks)
        got = as_expected(
            replay.result(order_id), decision.click.click_id if decision.click else None
        )
        assert got == expected, f"{path.stem}/{order_id}"
