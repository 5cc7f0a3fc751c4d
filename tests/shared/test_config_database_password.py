"""ALLIANCE_DATABASE_PASSWORD: a password kept apart from the URL (an operator's Secret) goes
into it escaped, so that no character of it can change the URL's meaning."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from shared.config import Settings

URL = "postgresql+asyncpg://alliance@db.internal:5432/alliance?ssl=require"


@given(st.text(min_size=1, max_size=40).filter(lambda p: "\x00" not in p))
def test_any_password_reaches_the_driver_unchanged_and_the_rest_of_the_url_stays(
    password: str,
) -> None:
    settings = Settings(database_url=URL, database_password=password)
    url = make_url(settings.database_url)
    assert url.password == password
    assert (url.username, url.host, url.port, url.database) == (
        "alliance",
        "db.internal",
        5432,
        "alliance",
    )
    assert dict(url.query) == {"ssl": "require"}
    # what asyncpg.connect is given
    engine = create_async_engine(settings.database_url)
    _, kwargs = engine.dialect.create_connect_args(engine.url)
    assert kwargs["password"] == password
    assert kwargs["host"] == "db.internal"


def test_the_urls_own_password_is_replaced_and_an_empty_variable_is_unset() -> None:
    replaced = Settings(database_url="postgresql+asyncpg://u:old@h/d", database_password="new")
    assert make_url(replaced.database_url).password == "new"
    kept = Settings(database_url="postgresql+asyncpg://u:old@h/d", database_password="")
    assert kept.database_url == "postgresql+asyncpg://u:old@h/d"


def test_the_password_is_not_in_the_settings_repr() -> None:
    settings = Settings(database_url=URL, database_password="s3cret@/:x")
    assert "s3cret" not in repr(settings.database_password)


@pytest.mark.parametrize("password", ["p@ss", "a/b:c", "100%", "#?&="])
def test_characters_that_mean_something_in_a_url_are_escaped(password: str) -> None:
    url = make_url(Settings(database_url=URL, database_password=password).database_url)
    # unescaped, "@", "/", ":", "#" or "?" would move the host, port or database
    assert (url.password, url.host, url.port, url.database) == (
        password,
        "db.internal",
        5432,
        "alliance",
    )
