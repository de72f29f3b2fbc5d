"""
Request validation: a decoded JSON object in, a frozen request object out.

Pure functions, no Twisted, nothing resolved.  Every invalid field raises
C{RequestError(400, message)} whose message begins with the field's JSON
name (C{"port must be an integer from 1 to 65535"}); missing required
fields use the reference wording (SPEC.md section 2).  Error messages never
repeat the submitted value, so a password can never leak through one.

Beside each parser is the JSON Schema of its request (L{SCHEMAS}, for the
OpenAPI document), built from the same constants (defaults, limits,
choices).  Every request class gives the web layer what L{ProbeRequest}
names.

Decisions where SPEC.md is silent:

  - JSON C{null} for an optional field means "not given": the default
    applies (for C{tls}, the port 5223 rule too).  For a required field,
    C{null} and C{""} count as missing.  Any other value of the wrong JSON
    type is an error naming the field.
  - Integers must be JSON integers: C{true}/C{false} are rejected, and so
    are floats, even integral ones (C{5222.0}, C{5.222e3}).
  - Enumerations (C{tls}, C{type}, C{mechanism}, C{channelBinding}) are
    matched case-insensitively (ASCII only) and returned in their canonical
    case: mechanisms upper case, the others lower case.
  - C{host}: the returned value is either the A-label (punycode) DNS name
    or the canonical text of the IP literal: C{"0x7f.1"} becomes
    C{"127.0.0.1"}, C{"[::1]"} becomes C{"::1"}.  Every numeric IPv4
    spelling is a literal, read by L{portofcall_xmpp.names.parse_ip_literal}
    (so C{"010.0.0.1"} is octal, C{8.0.0.1}), also after UTS 46 mapping
    (full-width digits); a name whose last label is numeric but that is no
    valid IPv4 spelling (C{"1.2.3.256"}, C{"example.123"}) is rejected.  All-ASCII labels are
    checked as letters/digits/hyphens (so C{"r3---sn-x"} passes); labels
    with non-ASCII characters or an C{xn--} prefix go through IDNA 2008.
    Underscores are rejected.  IPv6 zone identifiers (C{%eth0}) are
    rejected.  One trailing dot is stripped.
  - C{domain} (and the domainpart of a JID) is returned in its RFC 7622
    form: U-labels (C{"xn--bcher-kva.example"} becomes
    C{"b\\xfccher.example"}), lower case, IPv6 in brackets, IPv4 as a
    dotted quad.  The C{domain} field also accepts an unbracketed IPv6
    address; a JID does not.  By default the domain is the host, in that
    form.
  - C{password}: besides 1-1023 UTF-8 bytes, unpaired surrogates (which
    cannot be encoded) and NUL (which would break SASL PLAIN framing) are
    rejected.  Nothing else is changed: SASLprep happens in the SASL layer.
  - C{message}: the empty string is rejected (a probe sends a body; omit
    the field for the default), as are characters XML 1.0 cannot carry
    (controls other than tab/LF/CR, unpaired surrogates, U+FFFE, U+FFFF).
    The 16 KiB limit is 16384 UTF-8 bytes.
  - C{domain} without C{host} (SPEC.md section 8): the probe looks the
    domain up as a client or server would (L{portofcall_xmpp.route}); the
    request's C{host} is L{None}, and C{tls} defaults to C{"auto"}.  With
    a C{port} (and no C{host}), the domain is the host: no SRV.  Neither
    field: the reference's "missing" wording (it names C{host}).
  - Combinations are not cross-checked (C{channelBinding} with a
    non-PLUS mechanism, a PLUS mechanism with C{tls: "none"}): the probe
    runs and reports why it stopped.
"""

from __future__ import annotations

import re
from typing import ClassVar, Protocol
from urllib.parse import urlsplit, urlunsplit

import attrs

from .errors import RequestError
from .names import (
    JID,
    MAX_DNS_NAME,  # noqa: F401 (the request schema names it)
    MAX_PART_BYTES,
    InvalidJID,
    parse_jid,
)
from .names import InvalidName as _Invalid
from .names import domain_of_host as _domain_of_host
from .names import domainpart as _domainpart
from .names import ip_literal as _ip_literal
from .names import localpart as _localpart
from .names import normalise_host as _host
from .names import resourcepart as _resourcepart
from .sasl import MECHANISMS
from .schema import ms, obj, ref
from .scram import CHANNEL_BINDINGS

DEFAULT_PORT = 5222
DIRECT_TLS_PORT = 5223
S2S_PORT = 5269
COMPONENT_PORT = 5347
DEFAULT_RESOURCE = "portofcall"
DEFAULT_MESSAGE = "Hello from PortOfCall"

CONNECT_TIMEOUT = 10.0
LOGIN_TIMEOUT = 15.0
ROSTER_TIMEOUT = 20.0
MESSAGE_TIMEOUT = 20.0
DEFAULT_WAIT = 2.0
PING_TIMEOUT = 20.0
DEFAULT_PING_COUNT = 3
MAX_PING_COUNT = 10
SRV_TIMEOUT = 20.0
CHECK_TIMEOUT = 60.0

MAX_TIMEOUT_MS = 120000
MAX_WAIT_MS = 30000
MAX_MESSAGE_BYTES = 16 * 1024

CONNECT_TLS_MODES = ("auto", "none", "direct")
AUTH_TLS_MODES = ("auto", "required", "none", "direct")
MESSAGE_TYPES = ("chat", "normal", "headline")
CHECK_KINDS = ("client", "server")

# What XML 1.0 cannot carry (Char production, section 2.2).
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _default_domain(request) -> str:
    """The JID domain of a request that gave none: its host, in domainpart form."""
    return _domain_of_host(request.host)


def _default_tls(request) -> str:
    """XEP-0368 direct TLS on port 5223, otherwise STARTTLS when offered."""
    return "direct" if request.port == DIRECT_TLS_PORT else "auto"


class ProbeRequest(Protocol):
    """What every request class gives the web layer, whatever its endpoint."""

    @property
    def target(self) -> str:
        """Where the probe goes, for the log line: C{host:port}, or the domain looked up."""

    @property
    def transcript(self) -> bool:
        """Whether the answer carries the wire transcript."""

    @property
    def account(self) -> str | None:
        """The bare JID the probe logs in as (for C{--max-failed-logins}), or L{None}."""


def _host_port(request) -> str:
    if request.host is None:
        return request.domain
    return f"{request.host}:{request.port}"


@attrs.frozen(kw_only=True)
class ConnectRequest:
    """
    A C{/connect} probe.

    @ivar host: A-label DNS name or canonical IP literal (IPv6 unbracketed),
        or L{None}: look C{domain} up (SRV, SPEC.md section 8).
    @ivar port: with C{host}: the port.
    @ivar domain: the stream's C{to}, an RFC 7622 domainpart.
    @ivar timeout: overall timeout in seconds.
    @ivar tls: C{"auto"}, C{"none"} or C{"direct"}.
    @cvar server_to_server: false: a client stream (C{jabber:client}).
    """

    server_to_server: ClassVar[bool] = False

    host: str | None
    port: int = DEFAULT_PORT
    domain: str = attrs.field(default=attrs.Factory(_default_domain, takes_self=True))
    timeout: float = CONNECT_TIMEOUT
    tls: str = attrs.field(default=attrs.Factory(_default_tls, takes_self=True))
    transcript: bool = False

    target = property(_host_port)
    account = None


@attrs.frozen(kw_only=True)
class SRVRequest:
    """An C{/srv} lookup: the SRV records of C{domain} (a DNS name, not an IP)."""

    domain: str
    timeout: float = SRV_TIMEOUT
    transcript: bool = False

    account = None

    @property
    def target(self) -> str:
        return self.domain


@attrs.frozen(kw_only=True)
class S2SRequest:
    """
    A C{/s2s} probe: a C{jabber:server} stream to C{domain}, optionally
    announcing C{from_} (our server's domain).

    @ivar tls: C{"auto"}, C{"none"} or C{"direct"}.
    @cvar server_to_server: true: a C{jabber:server} stream.
    """

    server_to_server: ClassVar[bool] = True

    host: str | None
    port: int = S2S_PORT
    domain: str
    from_: str | None = None
    timeout: float = CONNECT_TIMEOUT
    tls: str = "auto"
    transcript: bool = False

    target = property(_host_port)
    account = None


@attrs.frozen(kw_only=True)
class AuthRequest:
    """
    A probe that logs in (C{/login}, C{/roster}, and the login of C{/message}).

    @ivar host: as L{ConnectRequest}'s (L{None}: look C{domain} up).
    @ivar username: the localpart, PRECIS UsernameCaseMapped.
    @ivar password: exactly as given; never part of C{repr}.
    @ivar resource: the resourcepart to bind, PRECIS OpaqueString.
    @ivar mechanism: an element of L{MECHANISMS}, or L{None} for the
        strongest offered.
    @ivar channel_binding: an element of L{CHANNEL_BINDINGS} to force, or
        L{None}.
    @ivar timeout: overall timeout in seconds.
    """

    host: str | None
    port: int = DEFAULT_PORT
    domain: str = attrs.field(default=attrs.Factory(_default_domain, takes_self=True))
    timeout: float = LOGIN_TIMEOUT
    tls: str = attrs.field(default=attrs.Factory(_default_tls, takes_self=True))
    tls_verify: bool = True
    username: str
    password: str = attrs.field(repr=False)
    resource: str = DEFAULT_RESOURCE
    mechanism: str | None = None
    channel_binding: str | None = None
    transcript: bool = False

    target = property(_host_port)

    @property
    def jid(self) -> JID:
        """The bare JID the probe logs in as."""
        return JID(self.username, self.domain, None)

    @property
    def account(self) -> str:
        return self.jid.bare


@attrs.frozen(kw_only=True)
class MessageRequest:
    """
    A C{/message} probe: log in with C{auth}, then send one message.

    @ivar recipient: a normalised bare or full JID.
    @ivar wait: seconds to listen after sending.
    """

    auth: AuthRequest
    recipient: str
    message: str = DEFAULT_MESSAGE
    type: str = "chat"
    receipt: bool = False
    wait: float = DEFAULT_WAIT

    @property
    def target(self) -> str:
        return self.auth.target

    @property
    def transcript(self) -> bool:
        return self.auth.transcript

    @property
    def account(self) -> str:
        return self.auth.account


# ---------------------------------------------------------------------------
# Fields


def _require_object(body) -> dict:
    if not isinstance(body, dict):
        raise RequestError(400, "request body must be a JSON object")
    return body


def _is_missing(value) -> bool:
    return value is None or value == ""


def _string(value, name: str) -> str:
    if not isinstance(value, str):
        raise RequestError(400, f"{name} must be a string")
    return value


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(body: dict, name: str, low: int, high: int, default, unit: str = ""):
    value = body.get(name)
    if value is None:
        return default
    if not _is_integer(value) or not low <= value <= high:
        raise RequestError(400, f"{name} must be an integer from {low} to {high}{unit}")
    return value


def _milliseconds(body: dict, name: str, low: int, high: int, default: float) -> float:
    """An integer field in milliseconds, returned in seconds (C{default} when absent)."""
    value = _integer(body, name, low, high, None, " (milliseconds)")
    return default if value is None else value / 1000


def _boolean(body: dict, name: str, default: bool) -> bool:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise RequestError(400, f"{name} must be a boolean (true or false)")
    return value


def _choice(body: dict, name: str, choices: tuple[str, ...], default, *, upper=False):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, str) and value.isascii():
        wanted = value.upper() if upper else value.lower()
        if wanted in choices:
            return wanted
    raise RequestError(400, f"{name} must be one of: {', '.join(choices)}")


def check_host(value, name: str = "host") -> str:
    """
    Validate a host field (present and non-empty): a DNS name or an IP
    literal, returned as its A-label form or canonical address text.

    @raise RequestError: 400, naming C{name}.
    """
    text = _string(value, name)
    try:
        return _host(text)
    except _Invalid as e:
        raise RequestError(400, f"{name} must be a DNS name or an IP address ({e})") from None


def check_domain(value, name: str = "domain") -> str:
    """
    Validate a JID domainpart field, returned in RFC 7622 form (U-labels,
    lower case, IPv6 in brackets).

    @raise RequestError: 400, naming C{name}.
    """
    text = _string(value, name)
    try:
        return _domainpart(text, bare_ipv6=True)
    except _Invalid as e:
        raise RequestError(400, f"{name} must be a valid JID domainpart ({e})") from None


def check_port(body: dict, default: int = DEFAULT_PORT, name: str = "port") -> int:
    """The port field of C{body} (1-65535), or C{default} when absent."""
    return _integer(body, name, 1, 65535, default)


def _optional_domain(body: dict, host: str) -> str:
    value = body.get("domain")
    if value is None:
        return _domain_of_host(host)
    return check_domain(value)


def _jid_part(value, name: str, check, what: str) -> str:
    """Field C{name} checked by C{check}; a 400 saying it must be a valid C{what}."""
    text = _string(value, name)
    try:
        return check(text)
    except _Invalid as e:
        raise RequestError(400, f"{name} must be a valid {what} ({e})") from None


def _username(value) -> str:
    return _jid_part(value, "username", _localpart, "JID localpart")


def _password(value) -> str:
    return _secret_field(value, "password")


def _secret_field(value, name: str) -> str:
    """A password or a component secret: 1-1023 UTF-8 bytes, no NUL; never echoed."""
    text = _string(value, name)
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise RequestError(400, f"{name} must not contain unpaired surrogates") from None
    if not 1 <= size <= MAX_PART_BYTES:
        raise RequestError(
            400, f"{name} must be a non-empty string of at most {MAX_PART_BYTES} bytes"
        )
    if "\x00" in text:
        raise RequestError(400, f"{name} must not contain NUL characters")
    return text


def _resource(body: dict) -> str:
    value = body.get("resource")
    if value is None:
        return DEFAULT_RESOURCE
    return _jid_part(value, "resource", _resourcepart, "JID resourcepart")


def _recipient(value) -> str:
    text = _string(value, "recipient")
    try:
        return parse_jid(text).full
    except InvalidJID as e:
        raise RequestError(400, f"recipient must be a valid JID ({e})") from None


def _message(body: dict) -> str:
    value = body.get("message")
    if value is None:
        return DEFAULT_MESSAGE
    text = _string(value, "message")
    if not text:
        raise RequestError(400, "message must not be empty")
    if _NOT_XML_CHAR.search(text):
        raise RequestError(400, "message contains characters not allowed in XML")
    if len(text.encode("utf-8")) > MAX_MESSAGE_BYTES:
        raise RequestError(400, f"message must be at most {MAX_MESSAGE_BYTES} bytes (UTF-8)")
    return text


# ---------------------------------------------------------------------------
# The fields' JSON Schemas (components of the OpenAPI document), built from
# the same constants as the rules above; each request's beside its parser.

#: The request schemas, by component name.
SCHEMAS: dict[str, dict] = {}


def _timeout_schema(default: float) -> dict:
    return {
        "type": "integer",
        "minimum": 1,
        "maximum": MAX_TIMEOUT_MS,
        "default": ms(default),
        "description": "Overall timeout of the probe, in milliseconds.",
    }


def _tls_schema(modes: tuple[str, ...], description: str) -> dict:
    return {
        "type": "string",
        "enum": list(modes),
        "default": "auto",
        "description": f"{description} Default: `direct` when `port` is {DIRECT_TLS_PORT}, "
        "else `auto`.",
    }


_PORT_SCHEMA = {
    "type": "integer",
    "minimum": 1,
    "maximum": 65535,
    "default": DEFAULT_PORT,
    "description": "TCP port.",
}

SCHEMAS["Host"] = {
    "type": "string",
    "minLength": 1,
    "description": f"The server to connect to: a DNS name (IDNA, at most {MAX_DNS_NAME} octets "
    "as an A-label) or an IPv4/IPv6 literal (brackets optional, no zone). Every numeric "
    "IPv4 spelling (`2130706433`, `0x7f.1`) is read as that address. Without it, `domain` "
    "is looked up as a client or server would (SRV records, then the fallback).",
    "examples": ["xmpp.example.org"],
}
SCHEMAS["Port"] = {
    **_PORT_SCHEMA,
    "description": "TCP port. Given with `domain` and no `host`, the domain is the host "
    "(no SRV lookup).",
}

#: Either field says where to go (SPEC §8: `domain` alone is looked up).
_HOST_OR_DOMAIN = [{"required": ["host"]}, {"required": ["domain"]}]
SCHEMAS["Domain"] = {
    "type": "string",
    "minLength": 1,
    "description": "The XMPP domain (a JID domainpart, RFC 7622): the stream's `to` "
    "and the domain of the JID logged in as. Default: the host. Given without `host`: "
    "where to connect is found as a real client or server finds it: the `_xmpps-` and "
    "`_xmpp-` SRV records (client or server) in priority/weight order, TLS from the "
    "first byte for `_xmpps-` ones, else the domain on 5222 (5269); each target in turn "
    "until one accepts a connection (`resolved` in the answer says how).",
    "examples": ["example.org"],
}
SCHEMAS["TranscriptFlag"] = {
    "type": "boolean",
    "default": False,
    "description": "Add `transcript`: every element in both directions, with SASL "
    "payloads shown as `[redacted]`.",
}

# The fields of a stream probe without credentials (/connect, /s2s).
_STREAM_FIELDS = {
    "host": ref("Host"),
    "port": ref("Port"),
    "domain": ref("Domain"),
    "timeout": _timeout_schema(CONNECT_TIMEOUT),
    "tls": _tls_schema(
        CONNECT_TLS_MODES,
        "`auto`: negotiate STARTTLS when offered and report on it; `none`: "
        "plaintext features only; `direct`: TLS from the first byte (XEP-0368).",
    ),
    "transcript": ref("TranscriptFlag"),
}


# ---------------------------------------------------------------------------
# Endpoints


def parse_connect(body) -> ConnectRequest:
    """
    C{POST /api/xmpp/connect}: C{host} or C{domain} (required; C{domain}
    alone is looked up), C{port} 5222, C{domain} =
    host, C{timeout} 10000 ms, C{tls} C{"auto"} (C{"direct"} on port 5223
    when not given), C{transcript} false.

    @raise RequestError: 400, C{"Missing required parameter: host"} or a
        message naming the invalid field.
    """
    body = _require_object(body)
    if _is_missing(body.get("host")) and _is_missing(body.get("domain")):
        raise RequestError(400, "Missing required parameter: host")
    return ConnectRequest(
        **_target(body, CONNECT_TIMEOUT, CONNECT_TLS_MODES),
        transcript=_boolean(body, "transcript", False),
    )


SCHEMAS["ConnectRequest"] = {**obj(_STREAM_FIELDS), "anyOf": _HOST_OR_DOMAIN}


def parse_srv(body) -> SRVRequest:
    """
    C{POST /api/xmpp/srv}: C{domain} (required: a JID domainpart that is a
    DNS name), C{timeout} 20000 ms.

    @raise RequestError: 400, C{"Missing required parameter: domain"} or a
        message naming the invalid field.
    """
    body = _require_object(body)
    if _is_missing(body.get("domain")):
        raise RequestError(400, "Missing required parameter: domain")
    domain = check_domain(body["domain"])
    if _ip_literal(domain.strip("[]")) is not None:
        raise RequestError(400, "domain must be a DNS name to look up SRV records (not an IP)")
    return SRVRequest(
        domain=domain,
        timeout=_milliseconds(body, "timeout", 1, MAX_TIMEOUT_MS, SRV_TIMEOUT),
    )


SCHEMAS["SRVRequest"] = obj(
    {
        "domain": {
            "type": "string",
            "minLength": 1,
            "description": "The XMPP domain whose SRV records to look up (a JID "
            "domainpart that is a DNS name, not an IP literal).",
            "examples": ["example.org"],
        },
        "timeout": _timeout_schema(SRV_TIMEOUT),
    },
    required=["domain"],
)


def parse_s2s(body) -> S2SRequest:
    """
    C{POST /api/xmpp/s2s}: C{host} or C{domain} (required; C{domain} alone
    is looked up), C{port} 5269, C{domain} =
    host, C{from} (optional JID domainpart), C{timeout} 10000 ms, C{tls}
    C{"auto"} (C{"direct"} on port 5223 when not given), C{transcript} false.

    @raise RequestError: 400, C{"Missing required parameter: host"} or a
        message naming the invalid field.
    """
    body = _require_object(body)
    if _is_missing(body.get("host")) and _is_missing(body.get("domain")):
        raise RequestError(400, "Missing required parameter: host")
    from_ = body.get("from")
    return S2SRequest(
        **_target(body, CONNECT_TIMEOUT, CONNECT_TLS_MODES, default_port=S2S_PORT),
        from_=None if from_ is None else check_domain(from_, "from"),
        transcript=_boolean(body, "transcript", False),
    )


SCHEMAS["S2SRequest"] = {
    **obj(
        {
            **_STREAM_FIELDS,
            "port": {
                **_PORT_SCHEMA,
                "default": S2S_PORT,
                "description": "TCP port (server-to-server); with `domain` and no `host`, "
                "the domain is the host (no SRV lookup).",
            },
            "from": {
                "type": "string",
                "minLength": 1,
                "description": "Our server's domain for the stream's `from` (a JID "
                "domainpart); omitted when not given.",
            },
        }
    ),
    "anyOf": _HOST_OR_DOMAIN,
}


def _target(
    body: dict,
    default_timeout: float,
    tls_modes: tuple[str, ...],
    default_port: int = DEFAULT_PORT,
) -> dict:
    """
    C{host}, C{port}, C{domain}, C{timeout} and C{tls}: where and how to
    connect.  C{host} or C{domain} is present; C{domain} alone gives
    C{host} L{None} (look it up), C{domain} and C{port} make the domain
    the host.
    """
    if _is_missing(body.get("host")):
        domain = check_domain(body["domain"])
        port = check_port(body, default_port)
        # With a port, the domain is the host: there is nothing to look up.
        host = None if body.get("port") is None else check_host(domain, "domain")
    else:
        host = check_host(body["host"])
        port = check_port(body, default_port)
        domain = _optional_domain(body, host)
    tls = _choice(body, "tls", tls_modes, None)
    if tls is None:
        tls = "direct" if host is not None and port == DIRECT_TLS_PORT else "auto"
    return {
        "host": host,
        "port": port,
        "domain": domain,
        "timeout": _milliseconds(body, "timeout", 1, MAX_TIMEOUT_MS, default_timeout),
        "tls": tls,
    }


def parse_auth(body, *, default_timeout: float = LOGIN_TIMEOUT) -> AuthRequest:
    """
    The fields every auth endpoint shares: C{host} or C{domain} (C{domain}
    alone is looked up), C{username}, C{password} (required), C{port} 5222,
    C{domain} = host, C{timeout}
    (C{default_timeout} seconds), C{tls} C{"auto"} (C{"direct"} on port
    5223), C{tlsVerify} true, C{resource} C{"portofcall"}, C{mechanism},
    C{channelBinding}, C{transcript} false.

    @raise RequestError: 400, C{"host, username, and password are required"}
        or a message naming the invalid field.
    """
    body = _require_object(body)
    nowhere = _is_missing(body.get("host")) and _is_missing(body.get("domain"))
    if nowhere or any(_is_missing(body.get(name)) for name in ("username", "password")):
        raise RequestError(400, "host, username, and password are required")
    return AuthRequest(
        **_target(body, default_timeout, AUTH_TLS_MODES),
        tls_verify=_boolean(body, "tlsVerify", True),
        username=_username(body["username"]),
        password=_password(body["password"]),
        resource=_resource(body),
        mechanism=_choice(body, "mechanism", MECHANISMS, None, upper=True),
        channel_binding=_choice(body, "channelBinding", CHANNEL_BINDINGS, None),
        transcript=_boolean(body, "transcript", False),
    )


SCHEMAS["AuthFields"] = obj(
    {
        "host": ref("Host"),
        "port": ref("Port"),
        "domain": ref("Domain"),
        "tls": _tls_schema(
            AUTH_TLS_MODES,
            "`auto`: STARTTLS when offered; `required`: fail (`errorType: tls`) when "
            "STARTTLS is not offered; `none`: plaintext; `direct`: TLS from the first "
            "byte (XEP-0368).",
        ),
        "tlsVerify": {
            "type": "boolean",
            "default": True,
            "description": "Stop before sending any credential (`errorType: tls`) "
            "when the certificate does not verify for `domain`. False: proceed and "
            "report `verified: false`.",
        },
        "username": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_PART_BYTES,
            "description": "A JID localpart (PRECIS UsernameCaseMapped), at most "
            f"{MAX_PART_BYTES} bytes.",
            "examples": ["alice"],
        },
        "password": {
            "type": "string",
            "format": "password",
            "writeOnly": True,
            "minLength": 1,
            "maxLength": MAX_PART_BYTES,
            "description": f"1 to {MAX_PART_BYTES} bytes (UTF-8), no NUL. Never logged or echoed.",
        },
        "resource": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_PART_BYTES,
            "default": DEFAULT_RESOURCE,
            "description": "The resource to bind (a JID resourcepart). Concurrent "
            "probes of one account should use distinct resources.",
        },
        "mechanism": {
            "type": "string",
            "enum": list(MECHANISMS),
            "description": "SASL mechanism to use. Default: the strongest offered, "
            "in the order listed (-PLUS only over TLS with channel-binding data).",
        },
        "channelBinding": {
            "type": "string",
            "enum": list(CHANNEL_BINDINGS),
            "description": "Channel-binding type for a -PLUS mechanism. Default: one "
            "the server advertises (XEP-0440), else `tls-exporter` on TLS 1.3 and "
            "`tls-unique` below.",
        },
        "transcript": ref("TranscriptFlag"),
    },
    required=["username", "password"],
    description="The fields every auth endpoint (`/login`, `/roster`, `/message`) takes; "
    "`host` or `domain` (alone: looked up as a client would) says where to connect.",
)
SCHEMAS["AuthFields"]["anyOf"] = _HOST_OR_DOMAIN


def _auth_schema(timeout: float, fields=None, required=()) -> dict:
    """The auth fields with this endpoint's C{timeout} default, and its own C{fields}."""
    own = obj({"timeout": _timeout_schema(timeout), **(fields or {})}, required=required)
    return {"allOf": [ref("AuthFields"), own]}


def parse_login(body) -> AuthRequest:
    """C{POST /api/xmpp/login}: L{parse_auth} with a 15 s timeout."""
    return parse_auth(body, default_timeout=LOGIN_TIMEOUT)


SCHEMAS["LoginRequest"] = _auth_schema(LOGIN_TIMEOUT)


def parse_roster(body) -> AuthRequest:
    """C{POST /api/xmpp/roster}: L{parse_auth} with a 20 s timeout."""
    return parse_auth(body, default_timeout=ROSTER_TIMEOUT)


SCHEMAS["RosterRequest"] = _auth_schema(ROSTER_TIMEOUT)


def parse_server_info(body) -> AuthRequest:
    """C{POST /api/xmpp/server-info}: L{parse_auth} with a 20 s timeout."""
    return parse_auth(body, default_timeout=ROSTER_TIMEOUT)


SCHEMAS["ServerInfoRequest"] = _auth_schema(ROSTER_TIMEOUT)


def parse_message(body) -> MessageRequest:
    """
    C{POST /api/xmpp/message}: L{parse_auth} with a 20 s timeout, then
    C{recipient} (required), C{message} C{"Hello from PortOfCall"}, C{type}
    C{"chat"}, C{receipt} false, C{waitMs} 2000 (0-30000).

    @raise RequestError: 400, C{"recipient is required"} or as L{parse_auth}.
    """
    auth = parse_auth(body, default_timeout=MESSAGE_TIMEOUT)
    if _is_missing(body.get("recipient")):
        raise RequestError(400, "recipient is required")
    return MessageRequest(
        auth=auth,
        recipient=_recipient(body["recipient"]),
        message=_message(body),
        type=_choice(body, "type", MESSAGE_TYPES, "chat"),
        receipt=_boolean(body, "receipt", False),
        wait=_milliseconds(body, "waitMs", 0, MAX_WAIT_MS, DEFAULT_WAIT),
    )


SCHEMAS["MessageRequest"] = _auth_schema(
    MESSAGE_TIMEOUT,
    {
        "recipient": {
            "type": "string",
            "minLength": 1,
            "description": "A bare or full JID (RFC 7622).",
            "examples": ["bob@example.org"],
        },
        "message": {
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_MESSAGE_BYTES,
            "default": DEFAULT_MESSAGE,
            "description": f"The body: at most {MAX_MESSAGE_BYTES} bytes (UTF-8), only "
            "characters XML 1.0 allows.",
        },
        "type": {
            "type": "string",
            "enum": list(MESSAGE_TYPES),
            "default": "chat",
            "description": "The message type.",
        },
        "receipt": {
            "type": "boolean",
            "default": False,
            "description": "Request a XEP-0184 delivery receipt.",
        },
        "waitMs": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_WAIT_MS,
            "default": ms(DEFAULT_WAIT),
            "description": "How long to listen after sending (for an error "
            "reply or a receipt), in milliseconds; shortened, with a warning, "
            "when it does not fit in what is left of `timeout`.",
        },
    },
    required=["recipient"],
)


@attrs.frozen(kw_only=True)
class CheckRequest:
    """
    A C{/check} of C{domain} (a DNS name): its C{services} (kinds C{client},
    C{server}), and with C{username} and C{password} (both or neither) a login.
    """

    domain: str
    timeout: float = CHECK_TIMEOUT
    services: tuple[str, ...] = CHECK_KINDS
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    transcript: bool = False

    @property
    def target(self) -> str:
        return self.domain

    @property
    def account(self) -> str | None:
        return None if self.username is None else f"{self.username}@{self.domain}"


def _kinds(body: dict) -> tuple[str, ...]:
    value = body.get("services")
    if value is None:
        return CHECK_KINDS
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and v in CHECK_KINDS for v in value)
    ):
        raise RequestError(400, f"services must be a non-empty list of: {', '.join(CHECK_KINDS)}")
    return tuple(k for k in CHECK_KINDS if k in value)


def parse_check(body) -> CheckRequest:
    """
    C{POST /api/xmpp/check}: C{domain} (required, as for C{/srv}), C{timeout}
    60000 ms, C{services} both kinds, C{username} and C{password} (both or
    neither), C{transcript} false.

    @raise RequestError: 400, C{"Missing required parameter: domain"}, C{"password
        is required with username: ..."} (or the other way round), or a message
        naming the invalid field.
    """
    domain = parse_srv(body).domain
    username = None if _is_missing(body.get("username")) else _username(body["username"])
    password = None if _is_missing(body.get("password")) else _password(body["password"])
    if (username is None) != (password is None):
        missing, given = ("password", "username") if password is None else ("username", "password")
        raise RequestError(400, f"{missing} is required with {given}: give both or neither")
    return CheckRequest(
        domain=domain,
        timeout=_milliseconds(body, "timeout", 1, MAX_TIMEOUT_MS, CHECK_TIMEOUT),
        services=_kinds(body),
        username=username,
        password=password,
        transcript=_boolean(body, "transcript", False),
    )


SCHEMAS["CheckRequest"] = obj(
    {
        "domain": {
            "type": "string",
            "minLength": 1,
            "description": "The XMPP domain to check (a JID domainpart that is a DNS name).",
            "examples": ["example.org"],
        },
        "timeout": {
            **_timeout_schema(CHECK_TIMEOUT),
            "description": "The whole check, in milliseconds: endpoints not finished by "
            "then are reported with `errorType: timeout`.",
        },
        "services": {
            "type": "array",
            "items": {"type": "string", "enum": list(CHECK_KINDS)},
            "minItems": 1,
            "default": list(CHECK_KINDS),
            "description": "Which services to check: `client` (`_xmpp-client`, "
            "`_xmpps-client`), `server` (`_xmpp-server`, `_xmpps-server`).",
        },
        "username": {
            **SCHEMAS["AuthFields"]["properties"]["username"],
            "description": "With `password`: also log in (default mechanism, certificate "
            "verified) and ask the server about itself.",
        },
        "password": SCHEMAS["AuthFields"]["properties"]["password"],
        "transcript": ref("TranscriptFlag"),
    },
    required=["domain"],
)


# ---------------------------------------------------------------------------
# SPEC §10: external components and pings


@attrs.frozen(kw_only=True)
class ComponentRequest:
    """
    A C{/component} probe (XEP-0114).

    @ivar host: A-label DNS name or canonical IP literal.
    @ivar component_name: the stream's C{to}, an RFC 7622 domainpart.
    @ivar secret: the shared secret for the handshake, or L{None} (the
        stream alone); never part of C{repr}.
    @ivar timeout: overall timeout in seconds.
    """

    host: str
    port: int = COMPONENT_PORT
    component_name: str
    secret: str | None = attrs.field(default=None, repr=False)
    timeout: float = CONNECT_TIMEOUT
    transcript: bool = False

    target = property(_host_port)
    account = None


def parse_component(body) -> ComponentRequest:
    """
    C{POST /api/xmpp/component}: C{host} and C{componentName} (required),
    C{port} 5347, C{secret} (optional: 1-1023 bytes, no NUL), C{timeout}
    10000 ms, C{transcript} false.

    @raise RequestError: 400, C{"Missing required parameter: host"} (or
        C{componentName}) or a message naming the invalid field.
    """
    body = _require_object(body)
    for name in ("host", "componentName"):
        if _is_missing(body.get(name)):
            raise RequestError(400, f"Missing required parameter: {name}")
    secret = body.get("secret")
    return ComponentRequest(
        host=check_host(body["host"]),
        port=check_port(body, COMPONENT_PORT),
        component_name=check_domain(body["componentName"], "componentName"),
        secret=None if secret is None else _secret_field(secret, "secret"),
        timeout=_milliseconds(body, "timeout", 1, MAX_TIMEOUT_MS, CONNECT_TIMEOUT),
        transcript=_boolean(body, "transcript", False),
    )


SCHEMAS["ComponentRequest"] = obj(
    {
        "host": {
            "type": "string",
            "minLength": 1,
            "description": "The server to connect to: a DNS name or an IPv4/IPv6 literal "
            "(as for `/connect`; there is no lookup by domain).",
            "examples": ["xmpp.example.org"],
        },
        "port": {
            **_PORT_SCHEMA,
            "default": COMPONENT_PORT,
            "description": "The server's component port (XEP-0114).",
        },
        "componentName": {
            "type": "string",
            "minLength": 1,
            "description": "The component's domain (a JID domainpart): the stream's `to`.",
            "examples": ["component.example.org"],
        },
        "secret": {
            "type": "string",
            "format": "password",
            "writeOnly": True,
            "minLength": 1,
            "maxLength": MAX_PART_BYTES,
            "description": f"The shared secret: 1 to {MAX_PART_BYTES} bytes (UTF-8), no NUL. "
            "With it, the handshake (hex SHA-1 of stream id + secret) is sent. Never "
            "logged or echoed; the handshake shows as `[redacted]` in transcripts.",
        },
        "timeout": _timeout_schema(CONNECT_TIMEOUT),
        "transcript": {
            **SCHEMAS["TranscriptFlag"],
            "description": "Add `transcript`: every element in both directions, with the "
            "handshake shown as `[redacted]`.",
        },
    },
    required=["host", "componentName"],
)


@attrs.frozen(kw_only=True)
class PingRequest:
    """
    A C{/ping} probe: log in with C{auth}, then C{count} XEP-0199 pings.

    @ivar to: the JID or domain pinged (normalised), or L{None}: the
        server's own domain.
    """

    auth: AuthRequest
    to: str | None = None
    count: int = DEFAULT_PING_COUNT

    @property
    def target(self) -> str:
        return self.auth.target

    @property
    def transcript(self) -> bool:
        return self.auth.transcript

    @property
    def account(self) -> str:
        return self.auth.account


def _ping_target(body: dict) -> str | None:
    value = body.get("target")
    if value is None:
        return None
    text = _string(value, "target")
    try:
        return parse_jid(text).full
    except InvalidJID as e:
        raise RequestError(400, f"target must be a valid JID or domain ({e})") from None


def parse_ping(body) -> PingRequest:
    """
    C{POST /api/xmpp/ping}: L{parse_auth} with a 20 s timeout, then
    C{target} (a JID or a domain; default the server's own domain) and
    C{count} 3 (1-10).

    @raise RequestError: 400, as L{parse_auth}, or naming C{target}/C{count}.
    """
    auth = parse_auth(body, default_timeout=PING_TIMEOUT)
    return PingRequest(
        auth=auth,
        to=_ping_target(body),
        count=_integer(body, "count", 1, MAX_PING_COUNT, DEFAULT_PING_COUNT),
    )


SCHEMAS["PingRequest"] = _auth_schema(
    PING_TIMEOUT,
    {
        "target": {
            "type": "string",
            "minLength": 1,
            "description": "What to ping: a JID (`user@example.org`, `user@example.org/res`) "
            "or a domain (`example.net`: a remote server, through ours). Default: the "
            "server's own domain.",
            "examples": ["example.net"],
        },
        "count": {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_PING_COUNT,
            "default": DEFAULT_PING_COUNT,
            "description": "How many pings, sent one at a time.",
        },
    },
)


# -- /discover (XEP-0156)

DISCOVER_TIMEOUT = 10.0


@attrs.frozen(kw_only=True)
class DiscoverRequest:
    """A C{/discover} probe: the host-meta documents of C{domain} (a DNS name or IP)."""

    domain: str
    timeout: float = DISCOVER_TIMEOUT
    transcript: bool = False

    account = None

    @property
    def target(self) -> str:
        return self.domain


def parse_discover(body) -> DiscoverRequest:
    """
    C{POST /api/xmpp/discover}: C{domain} (required: a JID domainpart, the
    host of the host-meta URLs), C{timeout} 10000 ms.

    @raise RequestError: 400, C{"Missing required parameter: domain"} or a
        message naming the invalid field.
    """
    body = _require_object(body)
    if _is_missing(body.get("domain")):
        raise RequestError(400, "Missing required parameter: domain")
    return DiscoverRequest(
        domain=check_domain(body["domain"]).strip("[]"),
        timeout=_milliseconds(body, "timeout", 1, MAX_TIMEOUT_MS, DISCOVER_TIMEOUT),
    )


SCHEMAS["DiscoverRequest"] = obj(
    {
        "domain": {
            "type": "string",
            "minLength": 1,
            "description": "The XMPP domain whose host-meta documents (XEP-0156) to fetch: "
            "`https://<domain>/.well-known/host-meta` and `…/host-meta.json`.",
            "examples": ["example.org"],
        },
        "timeout": _timeout_schema(DISCOVER_TIMEOUT),
    },
    required=["domain"],
)


# -- /websocket (RFC 7395) and /bosh (XEP-0124/0206)

WEB_TIMEOUT = 20.0
MAX_URL_CHARS = 2048
WEBSOCKET_SCHEMES = ("wss", "ws")
BOSH_SCHEMES = ("https", "http")


@attrs.frozen(kw_only=True)
class WebRequest:
    """
    A C{/websocket} or C{/bosh} probe.

    @ivar url: the endpoint's URL, or L{None}: discover it from C{domain}'s
        host-meta (XEP-0156).
    @ivar domain: the stream's C{to}.
    @ivar username: with C{password}, log in; L{None}: the stream only.
    @ivar password: never part of C{repr}.
    """

    url: str | None
    domain: str
    timeout: float = WEB_TIMEOUT
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    resource: str = DEFAULT_RESOURCE
    mechanism: str | None = None
    transcript: bool = False

    @property
    def target(self) -> str:
        return self.url or self.domain

    @property
    def account(self) -> str | None:
        if self.username is None:
            return None
        return JID(self.username, self.domain, None).bare


def _url(value, schemes: tuple[str, ...]) -> str:
    text = _string(value, "url")
    if len(text) > MAX_URL_CHARS:
        raise RequestError(400, f"url must be at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise RequestError(400, f"url must be a valid URL ({e})") from None
    if parts.scheme not in schemes:
        raise RequestError(400, f"url must begin with {' or '.join(s + '://' for s in schemes)}")
    if not parts.hostname or parts.username is not None or parts.password is not None:
        raise RequestError(400, "url must name a host (and no user or password)")
    if any(c.isspace() or ord(c) < 0x21 or ord(c) > 0x7E for c in text):
        raise RequestError(400, "url must be ASCII without spaces (IDNA and percent-encoded)")
    host = check_host(parts.hostname, "url")
    shown = f"[{host}]" if ":" in host else host
    netloc = shown if port is None else f"{shown}:{port}"
    path = parts.path or "/"
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def _parse_web(body, schemes: tuple[str, ...]) -> WebRequest:
    body = _require_object(body)
    url = None if body.get("url") is None else _url(body["url"], schemes)
    if url is None and _is_missing(body.get("domain")):
        raise RequestError(400, "Missing required parameter: url or domain")
    if body.get("domain") is None:
        domain = _domain_of_host(urlsplit(url).hostname)
    else:
        domain = check_domain(body["domain"])
    username = None if _is_missing(body.get("username")) else _username(body["username"])
    password = None if _is_missing(body.get("password")) else _password(body["password"])
    if (username is None) != (password is None):
        missing, given = ("password", "username") if password is None else ("username", "password")
        raise RequestError(400, f"{missing} is required with {given}: give both or neither")
    return WebRequest(
        url=url,
        domain=domain,
        timeout=_milliseconds(body, "timeout", 1, MAX_TIMEOUT_MS, WEB_TIMEOUT),
        username=username,
        password=password,
        resource=_resource(body),
        mechanism=_choice(body, "mechanism", MECHANISMS, None, upper=True),
        transcript=_boolean(body, "transcript", False),
    )


def parse_websocket(body) -> WebRequest:
    """
    C{POST /api/xmpp/websocket}: C{url} (C{wss://} or C{ws://}) or C{domain}
    (then discovered), C{domain} = the URL's host, C{timeout} 20000 ms,
    C{username} and C{password} (both or neither), C{resource},
    C{mechanism}, C{transcript} false.

    @raise RequestError: 400 naming the missing or invalid field.
    """
    return _parse_web(body, WEBSOCKET_SCHEMES)


def parse_bosh(body) -> WebRequest:
    """C{POST /api/xmpp/bosh}: as L{parse_websocket}, with an C{https://} or C{http://} URL."""
    return _parse_web(body, BOSH_SCHEMES)


def _web_schema(schemes: tuple[str, ...], what: str) -> dict:
    auth = SCHEMAS["AuthFields"]["properties"]
    return {
        **obj(
            {
                "url": {
                    "type": "string",
                    "minLength": 1,
                    "description": f"The {what} endpoint "
                    f"({' or '.join(f'`{s}://`' for s in schemes)}; at most {MAX_URL_CHARS} "
                    "ASCII characters). A plaintext URL given "
                    "here is the caller's choice of plaintext: SASL PLAIN may be used over it "
                    "(as with `tls: none`). Without it: the first link of `domain`'s "
                    "host-meta (XEP-0156), over which PLAIN is never sent in clear.",
                },
                "domain": {
                    "type": "string",
                    "minLength": 1,
                    "description": "The XMPP domain: the stream's `to`. Default: the URL's "
                    "host. Alone: where to find the URL (host-meta).",
                    "examples": ["example.org"],
                },
                "timeout": _timeout_schema(WEB_TIMEOUT),
                "username": {
                    **auth["username"],
                    "description": "With `password`: log in (SASL, restart, bind and session, "
                    "as `/login`).",
                },
                "password": auth["password"],
                "resource": auth["resource"],
                "mechanism": auth["mechanism"],
                "transcript": ref("TranscriptFlag"),
            }
        ),
        "anyOf": [{"required": ["url"]}, {"required": ["domain"]}],
    }


SCHEMAS["WebSocketRequest"] = _web_schema(WEBSOCKET_SCHEMES, "WebSocket (RFC 7395)")
SCHEMAS["BOSHRequest"] = _web_schema(BOSH_SCHEMES, "BOSH (XEP-0206)")
