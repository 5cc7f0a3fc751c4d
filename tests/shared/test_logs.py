"""shared/logs.py: the JSON and text lines, the bound fields, and redaction (no secret or
personal datum ever reaches a line)."""

from __future__ import annotations

import io
import logging
import secrets
import string
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from shared import logs
from shared.config import Settings
from shared.logs import REDACTED, JsonFormatter, Redactor, TextFormatter
from shared.secrets import new_api_key, signature_header, webhook_secret
from shared.visitors import VisitorCookies

KEY = "a-deployment-secret-key-of-some-length"
REDACT = Redactor(KEY, ("admin-token-0123456789",))


def record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    rec = logging.LogRecord("services.x", logging.WARNING, __file__, 1, msg, args, exc_info)
    rec.created = 1_764_979_200.5  # 2025-12-06T00:00:00.5Z
    rec.__dict__.update(extra)
    return rec


class TestJsonLine:
    def test_one_line_with_the_fields(self) -> None:
        line = JsonFormatter("tracker", REDACT).format(record("click %s spooled", "c1"))
        assert "\n" not in line
        assert orjson.loads(line) == {
            "time": "2025-12-06T00:00:00.500+00:00",
            "level": "WARNING",
            "logger": "services.x",
            "message": "click c1 spooled",
            "service": "tracker",
        }

    def test_bound_fields_and_extra(self) -> None:
        fmt = JsonFormatter("commission", REDACT)
        with logs.bound(request_id="r1", order_id="o1"), logs.bound(event_id="e1"):
            line = orjson.loads(fmt.format(record("x", store_id="s1")))
        assert (line["request_id"], line["order_id"], line["event_id"]) == ("r1", "o1", "e1")
        assert line["store_id"] == "s1"
        assert "request_id" not in orjson.loads(fmt.format(record("after the block")))

    def test_exception_text(self) -> None:
        line = orjson.loads(JsonFormatter("t", REDACT).format(record("failed", exc=True)))
        assert "RuntimeError: boom" in line["exc"]

    def test_a_bad_format_does_not_raise(self) -> None:
        line = orjson.loads(JsonFormatter("t", REDACT).format(record("%d items", "x")))
        assert "%d items" in line["message"]

    def test_trace_ids_when_a_span_records(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(logs, "trace_ids", lambda: ("a" * 32, "b" * 16))
        line = orjson.loads(JsonFormatter("t", REDACT).format(record("x")))
        assert (line["trace_id"], line["span_id"]) == ("a" * 32, "b" * 16)

    def test_visitor_id_field_is_a_pseudonym(self) -> None:
        line = orjson.loads(JsonFormatter("t", REDACT).format(record("x", visitor_id="v" * 32)))
        assert line["visitor_id"] == REDACT.pseudonym("v" * 32)
        assert line["visitor_id"].startswith("vis-")


class TestTextLine:
    def test_time_level_logger_message_then_fields(self) -> None:
        with logs.bound(request_id="r1"):
            line = TextFormatter("t", REDACT).format(record("hello %s", "you"))
        assert line == "2025-12-06T00:00:00.500+00:00 WARNING services.x hello you request_id=r1"


class TestConfigure:
    @pytest.fixture
    def restored(self) -> Iterator[None]:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        yield
        root.handlers[:] = handlers
        root.setLevel(level)

    @pytest.mark.usefixtures("restored")
    def test_settings_choose_format_and_level_and_the_secrets_are_known(self) -> None:
        out = io.StringIO()
        settings = Settings(
            env="dev", log_format="json", log_level="WARNING", admin_token="tok-" + "z" * 30
        )
        logs.configure_from(settings, "attribution", stream=out)
        logs.configure_from(settings, "attribution", stream=out)  # replaces, never doubles
        logging.getLogger("services.y").info("not written")
        logging.getLogger("services.y").warning("the token is tok-%s", "z" * 30)
        (line,) = out.getvalue().splitlines()
        assert orjson.loads(line)["message"] == f"the token is {REDACTED}"

    def test_default_format(self) -> None:
        assert logs.default_format("production") == "json"
        assert logs.default_format("dev") == "text"


class TestRedactionRules:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("postgresql+asyncpg://alliance:hunter2@db:5432/a", f"//alliance:{REDACTED}@db"),
            ("Authorization: Bearer abc.def", REDACTED),
            ("t=1,v1=" + "ab" * 32, f"v1={REDACTED}"),
            ('{"password": "pw1"}', f'"password": "{REDACTED}"'),
            ("client 8.8.8.8 came", f"client {logs.IP_REDACTED} came"),
            ("client 2001:4860::8888 came", f"client {logs.IP_REDACTED} came"),
        ],
    )
    def test_rule(self, text: str, expected: str) -> None:
        assert expected in REDACT(text)

    def test_infrastructure_addresses_and_times_stay(self) -> None:
        text = "kafka 127.0.0.1:9092 and 10.0.0.7 at 12:30:45"
        assert REDACT(text) == text

    def test_the_pseudonym_is_stable_and_keyed(self) -> None:
        assert REDACT.pseudonym("v1") == REDACT.pseudonym("v1") != Redactor("other").pseudonym("v1")


#: text around a secret: anything printable, secrets' alphabets included
_AROUND = st.text(alphabet=string.printable, max_size=40)
_IDS = st.text(alphabet="0123456789abcdef", min_size=32, max_size=32)


@st.composite
def secret_in_text(draw: st.DrawFn) -> tuple[str, str]:
    """(a log text, the secret or personal datum in it that must never be written)."""
    kind = draw(st.sampled_from(["api_key", "whsec", "sig", "url", "bearer", "pair", "ip", "vid"]))
    rand = draw(st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=40))
    if kind == "api_key":
        secret = new_api_key(draw(st.sampled_from(["store", "affiliate", "finance"])))
        shown = secret
    elif kind == "whsec":
        secret = webhook_secret(KEY, rand, draw(st.integers(1, 9)))
        shown = secret
    elif kind == "sig":
        header = signature_header(rand, draw(st.integers(0, 2**40)), rand.encode())
        secret, shown = header.partition("v1=")[2], header
    elif kind == "url":
        secret = rand
        shown = f"postgresql://user:{rand}@host:5432/db"
    elif kind == "bearer":
        secret, shown = rand, f"Authorization: Bearer {rand}"
    elif kind == "pair":
        name = draw(st.sampled_from(["password", "secret", "token", "api_key", "cookie"]))
        secret, shown = rand, f"{name}={rand}"
    elif kind == "ip":
        octets = draw(st.tuples(*[st.integers(0, 255)] * 3))
        first = draw(st.sampled_from([8, 31, 52, 81, 100, 185, 198, 203]))  # CGNAT, TEST-NETs
        secret = f"{first}.{'.'.join(map(str, octets))}"
        shown = f"client {secret}"
    else:
        visitor = draw(_IDS)
        secret, shown = visitor, VisitorCookies(KEY).seal(visitor)
    before, after = draw(_AROUND), draw(_AROUND)
    assume(secret not in before + after)  # the secret is what was put in, once
    return f"{before} {shown} {after}", secret


class TestNoSecretEverWritten:
    @given(case=secret_in_text())
    def test_never_in_the_message(self, case: tuple[str, str]) -> None:
        text, secret = case
        line = JsonFormatter("t", REDACT).format(record("%s", text))
        assert secret not in line
        assert secret not in orjson.loads(line)["message"]

    @given(case=secret_in_text())
    def test_never_in_a_traceback(self, case: tuple[str, str]) -> None:
        text, secret = case
        try:
            raise ValueError(text)
        except ValueError:
            import sys

            rec = record("failed")
            rec.exc_info = sys.exc_info()
        assert secret not in JsonFormatter("t", REDACT).format(rec)

    @given(text=st.text(max_size=200))
    def test_idempotent(self, text: str) -> None:
        assert REDACT(REDACT(text)) == REDACT(text)

    def test_known_secrets_anywhere(self) -> None:
        token = secrets.token_hex(16)
        redact = Redactor(KEY, (token,))
        assert token not in redact(f"x{token}y")


class TestStandardError:
    def test_lines_go_to_the_standard_error_of_the_moment(
        self, capsys: pytest.CaptureFixture[str]
    ) -> None:
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            logs.configure("cli", fmt="json", level="INFO")
            logging.getLogger("deploy.x").info("migrated")
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
        assert orjson.loads(capsys.readouterr().err.splitlines()[-1])["message"] == "migrated"
