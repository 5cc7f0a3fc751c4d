"""The storefront signature's check (``X-Alliance-Signature``): any header text is judged,
never raised on."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from shared.secrets import signature_header, verify_signature

SECRET = "whsec_test"
NOW = 1_800_000_000
BODY = b'{"events": []}'


class TestSignatureHeaderText:
    def test_a_valid_signature_is_accepted_in_either_hex_case(self) -> None:
        header = signature_header(SECRET, NOW, BODY)
        assert verify_signature([SECRET], header, BODY, NOW) is None
        t, _, v1 = header.partition(",v1=")
        assert verify_signature([SECRET], f"{t},v1={v1.upper()}", BODY, NOW) is None

    def test_a_non_ascii_signature_is_refused_not_raised_on(self) -> None:
        assert verify_signature([SECRET], f"t={NOW},v1=é", BODY, NOW) == "malformed"

    def test_non_ascii_digits_and_overlong_timestamps_are_malformed(self) -> None:
        valid = signature_header(SECRET, NOW, BODY).partition(",")[2]
        assert verify_signature([SECRET], f"t=١٨٠٠٠٠٠٠٠٠,{valid}", BODY, NOW) == "malformed"
        assert verify_signature([SECRET], f"t={'9' * 5000},{valid}", BODY, NOW) == "malformed"

    @given(st.text())
    def test_any_header_text_is_judged_without_raising(self, header: str) -> None:
        assert verify_signature([SECRET], header, BODY, NOW) in {"malformed", "stale", "mismatch"}

    @given(st.text())
    def test_any_v1_text_beside_a_fresh_timestamp_is_judged_without_raising(self, v1: str) -> None:
        assert verify_signature([SECRET], f"t={NOW},v1={v1}", BODY, NOW) in {
            "malformed",
            "mismatch",
        }
