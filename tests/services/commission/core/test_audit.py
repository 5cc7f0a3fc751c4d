"""The audit log's pure rules: what an entry holds, that no secret reaches it, which fields
changed, and who may read which entries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.commission.core.audit import (
    REDACTED,
    Actor,
    AuditEntry,
    Origin,
    Role,
    Scope,
    changed_fields,
    entry,
    may_read,
    readable_by,
    redact,
)

T0 = datetime(2026, 12, 5, tzinfo=UTC)
ORIGIN = Origin("203.0.113.9", "curl/8", "req-1")


def make(**kw: Any) -> AuditEntry:
    args: dict[str, Any] = {
        "at": T0,
        "actor": Actor(Role.STORE, "s1"),
        "origin": ORIGIN,
        "kind": "program.update",
        "subject": "store:s1/program",
        "tenant": "store:s1",
        "before": {"default_rate": Decimal("0.06")},
        "after": {"default_rate": Decimal("0.07")},
    }
    return entry(**{**args, **kw})


class TestEntries:
    def test_an_entry_holds_before_after_and_the_fields_that_changed(self) -> None:
        e = make()
        assert e.before == {"default_rate": "0.06"}
        assert e.after == {"default_rate": "0.07"}
        assert e.changed == ("default_rate",)
        assert e.origin == ORIGIN

    def test_a_creation_changes_every_field_of_the_new_state(self) -> None:
        assert make(before=None, after={"b": 1, "a": 2}).changed == ("a", "b")

    def test_a_naive_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match="UTC"):
            make(at=datetime(2026, 12, 5))

    @pytest.mark.parametrize("kind", ["program", "program.", ".update", "a.b.c"])
    def test_a_kind_is_subject_dot_verb(self, kind: str) -> None:
        with pytest.raises(ValueError, match="kind"):
            make(kind=kind)

    def test_no_float_reaches_the_log(self) -> None:
        with pytest.raises(TypeError, match="float"):
            make(after={"rate": 0.07})

    def test_a_user_agent_is_kept_to_its_bound(self) -> None:
        e = make(origin=Origin("::1", "x" * 10_000, None))
        assert e.origin.user_agent == "x" * 512


class TestNoSecrets:
    def test_keys_and_secrets_are_redacted_at_any_depth(self) -> None:
        e = make(
            before=None,
            after={
                "api_key": "als_live",
                "webhook_secret": "whs",
                "nested": [{"secret": "s", "admin_token": "t", "name": "ok"}],
            },
        )
        assert e.after == {
            "api_key": REDACTED,
            "webhook_secret": REDACTED,
            "nested": [{"secret": REDACTED, "admin_token": REDACTED, "name": "ok"}],
        }
        assert "als_live" not in repr(e)
        assert "whs" not in repr(e)

    def test_a_rotated_secret_is_named_changed_and_shown_on_neither_side(self) -> None:
        e = make(before={}, after={}, rotated=("webhook_secret",))
        assert e.changed == ("webhook_secret",)
        assert e.before == e.after == {"webhook_secret": REDACTED}

    def test_a_url_loses_its_user_info_and_query(self) -> None:
        e = make(before=None, after={"url": "https://u:pw@hooks.example/x?token=abc&a=1"})
        assert e.after == {"url": f"https://{REDACTED}@hooks.example/x?{REDACTED}"}

    @given(
        st.recursive(
            st.none() | st.text(max_size=5) | st.integers(),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(
                    st.sampled_from(["api_key", "name", "secret", "x_password", "a"]), inner
                )
            ),
            max_leaves=10,
        )
    )
    def test_no_secret_field_keeps_a_value(self, value: Any) -> None:
        def secrets(v: Any) -> list[Any]:
            if isinstance(v, dict):
                return [
                    x
                    for k, w in v.items()
                    for x in ([w] if k != "name" and k != "a" else secrets(w))
                ]
            if isinstance(v, list):
                return [x for w in v for x in secrets(w)]
            return []

        assert all(s in (None, REDACTED) for s in secrets(redact(value)))


class TestChanged:
    def test_only_differing_fields(self) -> None:
        assert changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 4}) == ("b", "c")

    def test_a_deletion_names_every_field_of_the_old_state(self) -> None:
        assert changed_fields({"a": 1}, None) == ("a",)


class TestWhoReadsWhat:
    ENTRIES = (
        make(actor=Actor(Role.ADMIN, "admin"), tenant="store:s1", kind="store.create"),
        make(actor=Actor(Role.STORE, "s1"), tenant="store:s1"),
        make(actor=Actor(Role.STORE, "s2"), tenant="store:s2"),
        make(actor=Actor(Role.FINANCE, "f1"), tenant="store:s2", kind="statement.close"),
        make(actor=Actor(Role.FINANCE, "f1"), tenant="affiliate:a1", kind="payout.create"),
    )

    def visible(self, scope: Scope) -> list[int]:
        return [i for i, e in enumerate(self.ENTRIES) if may_read(scope, e)]

    def test_the_admin_reads_every_entry(self) -> None:
        assert self.visible(readable_by(Role.ADMIN, "admin")) == [0, 1, 2, 3, 4]

    def test_finance_reads_the_entries_of_finance_actions(self) -> None:
        assert self.visible(readable_by(Role.FINANCE, "f2")) == [3, 4]

    def test_a_store_reads_the_entries_about_its_own_data_only(self) -> None:
        assert self.visible(readable_by(Role.STORE, "s1")) == [0, 1]
        assert self.visible(readable_by(Role.STORE, "s2")) == [2, 3]

    def test_an_affiliate_reads_its_own(self) -> None:
        assert self.visible(readable_by(Role.AFFILIATE, "a1")) == [4]
