"""Program rules in the pure core: each refusal is a class of its own carrying its status
and code, the record's view of a state, and every kind of change declared once as a route."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from services.commission.core import errors
from services.commission.core.program import (
    COUPON_OPS,
    PARTNER_OPS,
    OpKind,
    ProgramHistory,
    ProgramOp,
    state_json,
)
from services.commission.program.endpoints import CHANGES, router

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class TestRefusals:
    @pytest.mark.parametrize(
        ("ops", "refusal"),
        [
            ([ProgramOp(OpKind.JOIN, T0), ProgramOp(OpKind.JOIN, T0)], errors.AlreadyJoined),
            ([ProgramOp(OpKind.EXIT, T0)], errors.NotJoined),
            (
                [ProgramOp(OpKind.JOIN, T0), ProgramOp(OpKind.EXIT, T0 + timedelta(days=1))],
                errors.ExitTooEarly,
            ),
            (
                [ProgramOp(OpKind.JOIN, T0 + timedelta(days=1)), ProgramOp(OpKind.EXIT, T0)],
                errors.OutOfOrder,
            ),
            ([ProgramOp(OpKind.JOIN, T0, rate=Decimal("0.95"))], errors.InvalidRate),
            (
                [ProgramOp(OpKind.JOIN, T0), ProgramOp(OpKind.ATTRIBUTION_WINDOW, T0, days=31)],
                errors.InvalidWindow,
            ),
        ],
    )
    def test_each_case_is_its_own_class(
        self, ops: list[ProgramOp], refusal: type[errors.ProgramError]
    ) -> None:
        history = ProgramHistory(tuple(ops[:-1]))
        with pytest.raises(refusal) as err:
            history.append(ops[-1])
        assert err.value.code == refusal.code
        assert err.value.status_code == refusal.status_code
        assert err.value.message

    def test_codes_are_distinct(self) -> None:
        cases = [
            c
            for c in vars(errors).values()
            if isinstance(c, type) and issubclass(c, errors.ProgramError)
        ]
        leaves = [c for c in cases if not any(o is not c and issubclass(o, c) for o in cases)]
        assert len({c.code for c in leaves}) == len(leaves)


class TestRecord:
    def test_the_state_as_the_record_keeps_it(self) -> None:
        history = ProgramHistory(
            (
                ProgramOp(OpKind.JOIN, T0, rate=Decimal("0.05")),
                ProgramOp(OpKind.MAIN_PRODUCT, T0, key="p", rate=None),
                ProgramOp(OpKind.CATEGORY_RATE, T0, key="c", rate=Decimal("0.1")),
            )
        )
        assert state_json(history.current()) == {
            "joined": True,
            "joined_at": T0.isoformat(),
            "exited_at": None,
            "default_rate": "0.05",
            "category_rates": {"c": "0.1"},
            "main_products": {"p": None},
            "window_days": None,
            "coupon_policy": "off",
            "consent": "not_required",
            "lock_days": 60,
            "enrollment": "open",
            "incentives": {
                "new_buyer": {"extra_rate": "0"},
                "tiers": {},
                "caps": {"per_order": {}, "per_affiliate_month": {}},
            },
        }

    def test_consent_is_a_setting_of_the_program_in_force_from_its_time(self) -> None:
        from datetime import timedelta

        from services.commission.core.errors import NotJoined
        from shared.privacy import Consent

        with pytest.raises(NotJoined):
            ProgramHistory().append(ProgramOp(OpKind.CONSENT, T0, consent=Consent.REQUIRED))
        later = T0 + timedelta(hours=1)
        history = ProgramHistory(
            (
                ProgramOp(OpKind.JOIN, T0),
                ProgramOp(OpKind.CONSENT, later, consent=Consent.REQUIRED),
            )
        )
        assert history.state_at(T0).consent is Consent.NOT_REQUIRED
        assert history.state_at(later).consent is Consent.REQUIRED
        assert state_json(history.current())["consent"] == "required"


class TestRouteTable:
    def test_every_kind_of_change_has_a_route_and_each_route_is_declared_once(self) -> None:
        # codes and partner decisions have routes of their own
        assert {c.kind for c in CHANGES} == set(OpKind) - COUPON_OPS - PARTNER_OPS
        routes = {
            (m, getattr(r, "path", "")) for r in router.routes for m in getattr(r, "methods", ())
        }
        assert {
            ("PUT", "/v1/stores/{store_id}/coupons/{code}"),
            ("DELETE", "/v1/stores/{store_id}/coupons/{code}"),
            ("GET", "/v1/stores/{store_id}/coupons"),
        } <= routes
        assert len({(c.method, c.path) for c in CHANGES}) == len(CHANGES)
        assert len({c.name for c in CHANGES}) == len(CHANGES)
