"""Logs: the standard library's logging, one line per record, JSON or text, never a secret.

:func:`configure` is the one place a process sets logging up (the three services and the
``alliance`` command): ``ALLIANCE_LOG_FORMAT`` (``json``, or ``text`` for a terminal; by
default JSON in production and text in development) and ``ALLIANCE_LOG_LEVEL``.

A JSON line holds ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message``,
``service``, then what is known of the work in hand (``request_id``, ``event_id``,
``order_id``, ``consumer``: :func:`bound`; ``trace_id`` and ``span_id`` while a span is
recording, :mod:`shared.tracing`), and ``exc`` (the traceback) when there is one.

Every message and traceback goes through :class:`Redactor` before it is written: API keys,
webhook secrets, bearer tokens, signatures, passwords (in URLs and in ``name=value`` pairs),
cookie values and public client addresses are replaced; a visitor id named as such (the
visitor cookie, ``v:<id>``, a ``visitor_id`` field) becomes a keyed pseudonym, the same for
one visitor within a deployment, so that lines of one visitor can be told apart without
anyone learning the id.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import logging
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, TYPE_CHECKING, Any, Final, Literal

import orjson

if TYPE_CHECKING:
    from shared.config import Settings

LogFormat = Literal["json", "text"]

#: what is known of the work in hand (request, event, order, consumer), added to every line
_BOUND: ContextVar[Mapping[str, str]] = ContextVar(
    "alliance_log_fields", default=MappingProxyType({})
)
#: the fields :func:`bound` accepts, in the order a line shows them
FIELDS: Final = ("request_id", "event_id", "order_id", "consumer", "store_id", "affiliate_id")
#: the fields whose value is a visitor id: written as a pseudonym, never as it is
_VISITOR_FIELDS: Final = frozenset({"visitor_id"})

#: (trace id, span id) of the span recording now, or None: set by :mod:`shared.tracing`
#: when traces are on (the formatter pays nothing for them otherwise)
trace_ids: Callable[[], tuple[str, str] | None] | None = None

REDACTED: Final = "[redacted]"
#: marks the handler :func:`configure` installed (a second call replaces it)
_OURS: Final = "alliance_log_handler"
IP_REDACTED: Final = "[ip]"


@contextlib.contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    """Within the block, every log line of this task carries ``fields`` (None: left out)
    besides those bound around it."""
    given = {k: v for k, v in fields.items() if v is not None}
    token = _BOUND.set({**_BOUND.get(), **given})
    try:
        yield
    finally:
        _BOUND.reset(token)


def bind(**fields: str | None) -> None:
    """Bind ``fields`` for the rest of the current task (an ASGI request runs in its own
    context, so a middleware may bind for the request without a block)."""
    given = {k: v for k, v in fields.items() if v is not None}
    _BOUND.set({**_BOUND.get(), **given})


# -- redaction ---------------------------------------------------------------------------------

_SECRET_NAMES = (
    r"password|passwd|pwd|secret|token|api[_-]?key|apikey|authorization|cookie|set-cookie|"
    r"signature|x-alliance-signature|sasl_password|secret_key|admin_token"
)
_RULES: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    # API keys (shared.secrets.new_api_key): a kind prefix and 43 urlsafe characters
    (re.compile(r"\b(als|ala|alf)_[A-Za-z0-9_\-]{16,}"), r"\1_" + REDACTED),
    # webhook secrets (shared.secrets.webhook_secret)
    (re.compile(r"\bwhsec_[A-Za-z0-9_\-]+"), "whsec_" + REDACTED),
    # a signature header's v1 values (and any other hex MAC named so)
    (re.compile(r"\b(v1|sha256|sig)=[0-9A-Fa-f]{16,}"), r"\1=" + REDACTED),
    # a URL's password: scheme://user:password@host
    (re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/?#\s@]*:)[^@\s/]+@"), r"\1" + REDACTED + "@"),
    # Authorization: Bearer <token> / Basic <credentials>
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    # name=value and "name": "value" pairs whose name says secret
    (
        re.compile(
            r"(?i)((?:" + _SECRET_NAMES + r")[\"']?\s*[:=]\s*[\"']?)(?!\[redacted\])"
            r"([^\s\"',;&)}\]]+)"
        ),
        r"\1" + REDACTED,
    ),
)
#: the visitor cookie's value as the tracker mints it (shared.visitors: ``<id>.<tag>``)
_SEALED_VISITOR: Final = re.compile(r"\b([0-9a-f]{32})\.[A-Za-z0-9_\-]{22}(?![A-Za-z0-9_\-])")
#: a visitor id named as one: ``v:<id>`` (the tracker's flood keys), ``visitor_id=<id>``,
#: ``alliance_vid=<cookie>``
_NAMED_VISITOR: Final = re.compile(
    r"(\bv:|\bvisitor_id[\"']?\s*[:=]\s*[\"']?|\balliance_vid=)([A-Za-z0-9._:@\-]{1,200})"
)
_IPV4: Final = re.compile(r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w.])")
#: a candidate IPv6 address (checked by :mod:`ipaddress`: ``12:30:45`` is no address)
_IPV6: Final = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")


#: the networks of infrastructure (the brokers', the database's, the pods'), kept readable:
#: loopback, RFC 1918, link-local, unspecified, IPv6 unique-local
_INFRASTRUCTURE: Final = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "169.254.0.0/16",
        "0.0.0.0/32",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
    )
)


def _public_address(text: str) -> bool:
    """An address that may be a client's: any outside :data:`_INFRASTRUCTURE` (documentation
    and carrier-grade NAT ranges included)."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not any(ip.version == n.version and ip in n for n in _INFRASTRUCTURE)


class Redactor:
    """Removes secrets and personal data from a log text. Pure and idempotent: redacting a
    redacted text changes nothing. ``secret_key`` keys the visitor pseudonyms (the
    deployment's ``ALLIANCE_SECRET_KEY``); ``known`` are literal secrets of this process (the
    admin token, the secret key, the SASL and database passwords), replaced wherever they
    appear."""

    def __init__(self, secret_key: str = "", known: tuple[str, ...] = ()) -> None:
        self._key = hmac.digest(secret_key.encode(), b"logs:visitor", "sha256")
        # the longest first: a secret that contains another is replaced whole
        self._known = sorted({k for k in known if len(k) >= 8}, key=len, reverse=True)

    def pseudonym(self, visitor_id: str) -> str:
        """``vis-`` and 16 hex characters of HMAC-SHA256 of the id: stable within a
        deployment, irreversible without its secret key."""
        mac = hmac.new(self._key, visitor_id.encode(), hashlib.sha256).hexdigest()
        return "vis-" + mac[:16]

    def __call__(self, text: str) -> str:
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        text = _SEALED_VISITOR.sub(lambda m: self.pseudonym(m.group(1)), text)
        text = _NAMED_VISITOR.sub(
            lambda m: (
                m.group(1)
                + (m.group(2) if _is_pseudonym(m.group(2)) else self.pseudonym(m.group(2)))
            ),
            text,
        )
        for pattern, replacement in _RULES:
            text = pattern.sub(replacement, text)
        text = _IPV4.sub(lambda m: IP_REDACTED if _public_address(m.group()) else m.group(), text)
        if ":" in text:
            text = _IPV6.sub(
                lambda m: IP_REDACTED if _public_address(m.group()) else m.group(), text
            )
        return text

    def field(self, name: str, value: str) -> str:
        return self.pseudonym(value) if name in _VISITOR_FIELDS else self(value)


def _is_pseudonym(value: str) -> bool:
    return value.startswith("vis-") and len(value) == 20


# -- formatters --------------------------------------------------------------------------------


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module's docstring for the fields).
    Never raises for an odd record: a message whose arguments do not fit is written as its
    template and arguments."""

    def __init__(self, service: str, redactor: Redactor) -> None:
        super().__init__()
        self.service = service
        self.redact = redactor

    def fields(self, record: logging.LogRecord) -> dict[str, str]:
        try:
            message = record.getMessage()
        except Exception:  # a caller's bad format: keep what there is
            message = f"{record.msg!r} % {record.args!r}"
        line: dict[str, str] = {
            "time": _iso(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": self.redact(message),
            "service": self.service,
        }
        for name, value in _BOUND.get().items():
            line[name] = self.redact.field(name, str(value))
        for name in ("visitor_id", *FIELDS):  # extra={...} of the call
            given = record.__dict__.get(name)
            if given is not None:
                line[name] = self.redact.field(name, str(given))
        if trace_ids is not None and (ids := trace_ids()) is not None:
            line["trace_id"], line["span_id"] = ids
        if record.exc_info:
            line["exc"] = self.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exc"] = self.redact(record.exc_text)
        if record.stack_info:
            line["stack"] = self.redact(record.stack_info)
        return line

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(self.fields(record)).decode()


class TextFormatter(JsonFormatter):
    """The development format: ``<time> <level> <logger> <message>`` and the bound fields as
    ``name=value``, redacted alike; a traceback on the lines after."""

    def format(self, record: logging.LogRecord) -> str:
        line = self.fields(record)
        head = f"{line.pop('time')} {line.pop('level')} {line.pop('logger')} {line.pop('message')}"
        line.pop("service")
        exc = line.pop("exc", None)
        stack = line.pop("stack", None)
        tail = "".join(f" {k}={v}" for k, v in line.items())
        return "\n".join(part for part in (head + tail, exc, stack) if part)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record (a test runner swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        pass


def default_format(env: str) -> LogFormat:
    """JSON in production (a log collector reads it), text in development (a person does)."""
    return "json" if env == "production" else "text"


def configure(
    service: str,
    *,
    fmt: LogFormat,
    level: str = "INFO",
    redactor: Redactor | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Make the root logger write ``fmt`` lines of ``level`` and above to ``stream``
    (standard error by default), replacing the stream handler it had (another call's, or
    :func:`logging.basicConfig`'s); returns the handler.
    Uvicorn's loggers propagate to it (their own handlers are removed)."""
    formatter_type = JsonFormatter if fmt == "json" else TextFormatter
    handler: logging.StreamHandler[Any] = (
        logging.StreamHandler(stream) if stream is not None else _Stderr()
    )
    handler.setFormatter(formatter_type(service, redactor or Redactor()))
    setattr(handler, _OURS, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        # ours from an earlier call, or the default one of basicConfig; a test runner's
        # capturing handlers stay
        if getattr(old, _OURS, False) or type(old) is logging.StreamHandler:
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler


def settings_secrets(settings: Settings) -> tuple[str, ...]:
    """The literal secrets of a deployment's settings, for :class:`Redactor`'s ``known``."""
    known = [settings.secret_key, settings.admin_token]
    for secret in (
        settings.database_password,
        settings.kafka_sasl_password,
        settings.metrics_token,
    ):
        if secret is not None:
            known.append(secret.get_secret_value())
    known += [pair.partition(":")[2] for pair in settings.link_keys.split(",")]
    return tuple(k for k in known if k)


def configure_from(
    settings: Settings, service: str, stream: IO[str] | None = None
) -> logging.Handler:
    """:func:`configure` as the settings say (``ALLIANCE_LOG_FORMAT``,
    ``ALLIANCE_LOG_LEVEL``), redacting the deployment's own secrets too."""
    return configure(
        service,
        fmt=settings.log_format or default_format(settings.env),
        level=settings.log_level,
        redactor=Redactor(settings.secret_key, settings_secrets(settings)),
        stream=stream,
    )
