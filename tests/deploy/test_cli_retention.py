"""`alliance retention run`, and the start-up refusal of unsafe retention settings (exit 2,
a clear message, no traceback) by every command, the services' included."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from deploy.cli import main
from shared.config import Settings, get_settings


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield None
    get_settings.cache_clear()


@pytest.mark.parametrize("command", [["commission"], ["attribution"], ["retention", "run"]])
def test_a_retention_shorter_than_the_topics_is_refused_at_start(
    command: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLIANCE_RETENTION_TOPIC_HOURS", "240")
    monkeypatch.setenv("ALLIANCE_RETENTION_IDEMPOTENCY_DAYS", "10")
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "ALLIANCE_RETENTION_IDEMPOTENCY_DAYS=10 is shorter than the topics' retention" in err
    assert "at least 11 days" in err
    assert "Traceback" not in err


def test_clicks_kept_less_than_two_windows_and_the_grace_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLIANCE_RETENTION_CLICKS_DAYS", "30")
    assert main(["retention", "run"]) == 2
    assert "ALLIANCE_RETENTION_CLICKS_DAYS=30 is shorter than twice" in capsys.readouterr().err


@pytest.mark.integration
async def test_retention_run_makes_the_days_ahead_and_says_what_it_did(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ALLIANCE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ALLIANCE_RETENTION_PARTITIONS_AHEAD_DAYS", "9")
    assert await asyncio.to_thread(main, ["retention", "run"]) == 0
    out = capsys.readouterr().out
    # the migration made a week ahead; two more days for each of the three tables
    assert out.startswith("retention: created 6 partitions, dropped 0")
    get_settings.cache_clear()
    assert await asyncio.to_thread(main, ["retention", "run"]) == 0
    assert capsys.readouterr().out.startswith("retention: created 0 partitions")
