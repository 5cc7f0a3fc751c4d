"""The pure rules of issue 9: CSV cells, landing URL templates, production secrets and the
tracker's view of rotated keys."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.tracker.directory import Directory
from shared.config import (
    DEV_ADMIN_TOKEN,
    DEV_LINK_KEYS,
    DEV_SECRET_KEY,
    InsecureSettings,
    Settings,
)
from shared.csvsafe import FORMULA_START, csv_text, neutralise
from shared.events import AffiliateEntry
from shared.secrets import hash_key
from shared.urls import landing_template_problem


class TestCsvCells:
    @pytest.mark.parametrize(
        ("cell", "exported"),
        [
            ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
            ("+1", "'+1"),
            ("-1.50", "'-1.50"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("1.50", "1.50"),
            ("a=b", "a=b"),
            ("", ""),
            (None, None),
            (3, 3),
            (-3, "'-3"),
            ("'=already", "'=already"),
        ],
    )
    def test_a_cell_that_starts_like_a_formula_gets_a_quote(
        self, cell: object, exported: object
    ) -> None:
        assert neutralise(cell) == exported

    @given(st.text())
    def test_no_exported_cell_starts_like_a_formula(self, cell: str) -> None:
        out = neutralise(cell)
        assert not out.startswith(FORMULA_START)
        # nothing is lost: one quote in front, or the cell as it was
        assert out == cell or out == "'" + cell

    @given(st.lists(st.tuples(st.text(), st.text()), max_size=5))
    def test_a_csv_document_reads_back_neutralised(self, rows: list[tuple[str, str]]) -> None:
        text = csv_text(["a", "b"], ({"a": a, "b": b} for a, b in rows))
        back = list(csv.DictReader(io.StringIO(text, newline="")))
        assert [(r["a"], r["b"]) for r in back] == [(neutralise(a), neutralise(b)) for a, b in rows]


class TestLandingTemplates:
    @pytest.mark.parametrize(
        "template",
        [
            "https://shop.example/item/{product_id}",
            "http://shop.example/item?id={product_id}&ref=x",
            "https://shop.example",
            "https://shop.example:8443/p/{product_id}.html",
            "HTTPS://SHOP.EXAMPLE/{product_id}",
        ],
    )
    def test_an_http_url_with_one_placeholder_in_path_or_query_is_accepted(
        self, template: str
    ) -> None:
        assert landing_template_problem(template) is None

    @pytest.mark.parametrize(
        "template",
        [
            "ftp://shop.example/{product_id}",
            "javascript:alert(1)//{product_id}",
            "//shop.example/{product_id}",
            "https:///{product_id}",
            "https://{product_id}.example/",
            "https://shop.example/#{product_id}",
            "https://shop.example/{product_id}{product_id}",
            "https://shop.example/{store_id}",
            "https://shop.example/{0}",
            "https://shop.example/{",
            "https://shop.example/}",
            "https://a@shop.example/",
            "https://shop.example:0/",
            "https://shop.example:x/",
            "https://[::1/",
            "https://shop.example/\n",
            "https://shop.example/a b",
            "https://shöp.example/",
        ],
    )
    def test_anything_else_is_refused(self, template: str) -> None:
        assert landing_template_problem(template)

    @given(st.text(max_size=60))
    def test_an_accepted_template_formats_with_a_product_id(self, tail: str) -> None:
        template = "https://shop.example/" + tail
        if landing_template_problem(template) is None:
            url = template.format(product_id="p1")
            assert url.startswith("https://shop.example/")
            assert url.isascii()
            assert url.isprintable()


GOOD = {"admin_token": "a" * 32, "secret_key": "b" * 32, "link_keys": "k1:" + "c" * 32}
DEV = {"admin_token": DEV_ADMIN_TOKEN, "secret_key": DEV_SECRET_KEY, "link_keys": DEV_LINK_KEYS}


def settings(env: str, **secrets: str) -> Settings:
    """Settings with exactly these secrets, whatever the environment holds."""
    return Settings().model_copy(update={"env": env, **DEV, **secrets})


class TestProductionSecrets:
    def test_development_accepts_the_development_defaults(self) -> None:
        settings("dev").check_production()

    def test_production_names_every_weak_secret(self) -> None:
        with pytest.raises(InsecureSettings) as refused:
            settings("production").check_production()
        assert len(refused.value.problems) == 3
        for variable in ("ALLIANCE_ADMIN_TOKEN", "ALLIANCE_SECRET_KEY", "ALLIANCE_LINK_KEYS"):
            assert variable in str(refused.value)

    def test_production_is_the_default(self) -> None:
        assert Settings.model_fields["env"].default == "production"

    def test_production_starts_with_long_secrets(self) -> None:
        settings("production", **GOOD).check_production()

    @pytest.mark.parametrize(
        ("field", "value", "variable"),
        [
            ("admin_token", "a" * 31, "ALLIANCE_ADMIN_TOKEN"),
            ("secret_key", "", "ALLIANCE_SECRET_KEY"),
            (
                "link_keys",
                "k2:" + "c" * 32 + ",k1:dev-only-link-key-change-me",
                "ALLIANCE_LINK_KEYS",
            ),
            ("link_keys", "k2:" + "c" * 32 + ",k1:", "ALLIANCE_LINK_KEYS"),
        ],
    )
    def test_one_weak_secret_is_named(self, field: str, value: str, variable: str) -> None:
        problems = settings("production", **{**GOOD, field: value}).production_problems()
        assert len(problems) == 1
        assert problems[0].startswith(variable)


class TestTrustedProxies:
    """ALLIANCE_FORWARDED_ALLOW_IPS=* lets a client behind an appending proxy choose its own
    address (uvicorn then takes the header's leftmost entry): refused in production."""

    @pytest.mark.parametrize("value", ["*", "10.0.0.0/8,*", " * "])
    def test_production_refuses_to_trust_any_peer(self, value: str) -> None:
        with pytest.raises(InsecureSettings) as refused:
            settings("production", **GOOD, forwarded_allow_ips=value).check_production()
        (problem,) = refused.value.problems
        assert problem.startswith("ALLIANCE_FORWARDED_ALLOW_IPS is '*'")

    def test_production_starts_with_listed_proxies(self) -> None:
        listed = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fd00::/8"
        settings("production", **GOOD, forwarded_allow_ips=listed).check_production()

    def test_development_may_trust_any_peer(self) -> None:
        settings("dev", forwarded_allow_ips="*").check_production()


def _affiliate(affiliate_id: str, key: str) -> bytes:
    entry = AffiliateEntry(
        event_id=f"affiliate:{affiliate_id}:{key}",
        affiliate_id=affiliate_id,
        name=affiliate_id,
        key_hash=hash_key(key),
        updated_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return entry.model_dump_json().encode()


class TestDirectoryKeys:
    def test_a_newer_entry_drops_the_affiliates_old_key(self) -> None:
        directory = Directory()
        directory.apply_directory(_affiliate("a1", "old"))
        directory.apply_directory(_affiliate("a2", "other"))
        directory.apply_directory(_affiliate("a1", "new"))
        assert directory.affiliate_keys == {hash_key("new"): "a1", hash_key("other"): "a2"}

    def test_replaying_the_same_entry_keeps_the_key(self) -> None:
        directory = Directory()
        directory.apply_directory(_affiliate("a1", "k"))
        directory.apply_directory(_affiliate("a1", "k"))
        assert directory.affiliate_keys == {hash_key("k"): "a1"}
