"""
Request validation: a decoded JSON object in, a frozen request object out.

Pure functions, no Twisted, nothing resolved.  Every invalid field raises
C{RequestError(400, message)} whose message begins with the field's JSON
name (C{"port must be an integer from 1 to 65535"}); missing required
fields use the reference wording (SPEC.md section 2).  Error messages never
repeat the submitted value, so a password can never leak through one.

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
    spelling is a literal, read by L{portofcall_xmpp.policy.parse_ip_literal}
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
  - Combinations are not cross-checked (C{channelBinding} with a
    non-PLUS mechanism, a PLUS mechanism with C{tls: "none"}): the probe
    runs and reports why it stopped.
"""

from __future__ import annotations

import ipaddress
import re

import attrs
import idna
import precis_i18n

from portofcall_xmpp.errors import RequestError
from portofcall_xmpp.policy import parse_ip_literal
from portofcall_xmpp.sasl import MECHANISMS
from portofcall_xmpp.scram import CHANNEL_BINDINGS

__all__ = [
    "AUTH_TLS_MODES",
    "CHANNEL_BINDINGS",
    "CONNECT_TLS_MODES",
    "MECHANISMS",
    "MESSAGE_TYPES",
    "AuthRequest",
    "ConnectRequest",
    "InvalidJID",
    "JID",
    "MessageRequest",
    "check_domain",
    "check_host",
    "check_port",
    "parse_auth",
    "parse_connect",
    "parse_jid",
    "parse_login",
    "parse_message",
    "parse_roster",
]

DEFAULT_PORT = 5222
DIRECT_TLS_PORT = 5223
S2S_PORT = 5269
DEFAULT_RESOURCE = "portofcall"
DEFAULT_MESSAGE = "Hello from PortOfCall"

CONNECT_TIMEOUT = 10.0
LOGIN_TIMEOUT = 15.0
ROSTER_TIMEOUT = 20.0
MESSAGE_TIMEOUT = 20.0
DEFAULT_WAIT = 2.0

MAX_TIMEOUT_MS = 120000
MAX_WAIT_MS = 30000
MAX_PART_BYTES = 1023
MAX_MESSAGE_BYTES = 16 * 1024
MAX_DNS_NAME = 253
MAX_DNS_LABEL = 63

CONNECT_TLS_MODES = ("auto", "none", "direct")
AUTH_TLS_MODES = ("auto", "required", "none", "direct")
MESSAGE_TYPES = ("chat", "normal", "headline")

# RFC 7622 section 3.3.1: characters a localpart may not contain.
_LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Characters an IP literal (any IPv4 spelling, IPv6 without zone) is made of.
_IP_LITERAL_CHARS = re.compile(r"[0-9A-Fa-fXx.:]+")
# What XML 1.0 cannot carry (Char production, section 2.2).
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Inputs longer than these (in code points) are refused before any Unicode
# processing: no sane name, localpart or resourcepart maps down from them.
_MAX_NAME_INPUT = 1024
_MAX_PART_INPUT = 4 * MAX_PART_BYTES

_username_profile = precis_i18n.get_profile("UsernameCaseMapped")
_opaque_profile = precis_i18n.get_profile("OpaqueString")


def _default_domain(request) -> str:
    """The JID domain of a request that gave none: its host, in domainpart form."""
    return _domain_of_host(request.host)


def _default_tls(request) -> str:
    """XEP-0368 direct TLS on port 5223, otherwise STARTTLS when offered."""
    return "direct" if request.port == DIRECT_TLS_PORT else "auto"


@attrs.frozen(kw_only=True)
class ConnectRequest:
    """
    A C{/connect} probe.

    @ivar host: A-label DNS name or canonical IP literal (IPv6 unbracketed).
    @ivar domain: the stream's C{to}, an RFC 7622 domainpart.
    @ivar timeout: overall timeout in seconds.
    @ivar tls: C{"auto"}, C{"none"} or C{"direct"}.
    """

    host: str
    port: int = DEFAULT_PORT
    domain: str = attrs.field(default=attrs.Factory(_default_domain, takes_self=True))
    timeout: float = CONNECT_TIMEOUT
    tls: str = attrs.field(default=attrs.Factory(_default_tls, takes_self=True))
    transcript: bool = False


@attrs.frozen(kw_only=True)
class SRVRequest:
    """An C{/srv} lookup: the SRV records of C{domain} (a DNS name, not an IP)."""

    domain: str
    timeout: float = 20.0
    transcript: bool = False


@attrs.frozen(kw_only=True)
class S2SRequest:
    """
    A C{/s2s} probe: a C{jabber:server} stream to C{domain}, optionally
    announcing C{from_} (our server's domain).

    @ivar tls: C{"auto"}, C{"none"} or C{"direct"}.
    """

    host: str
    port: int = S2S_PORT
    domain: str
    from_: str | None = None
    timeout: float = 10.0
    tls: str = "auto"
    transcript: bool = False


@attrs.frozen(kw_only=True)
class AuthRequest:
    """
    A probe that logs in (C{/login}, C{/roster}, and the login of C{/message}).

    @ivar username: the localpart, PRECIS UsernameCaseMapped.
    @ivar password: exactly as given; never part of C{repr}.
    @ivar resource: the resourcepart to bind, PRECIS OpaqueString.
    @ivar mechanism: an element of L{MECHANISMS}, or L{None} for the
        strongest offered.
    @ivar channel_binding: an element of L{CHANNEL_BINDINGS} to force, or
        L{None}.
    @ivar timeout: overall timeout in seconds.
    """

    host: str
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

    @property
    def jid(self) -> JID:
        """The bare JID the probe logs in as."""
        return JID(self.username, self.domain, None)


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


@attrs.frozen
class JID:
    """
    A Jabber identifier, C{[local@]domain[/resource]}.

    C{local} and C{resource} are L{None} when absent.
    """

    local: str | None
    domain: str
    resource: str | None = None

    @property
    def bare(self) -> str:
        """C{local@domain}, or C{domain}."""
        if self.local is None:
            return self.domain
        return f"{self.local}@{self.domain}"

    @property
    def full(self) -> str:
        """C{local@domain/resource}, leaving out the parts that are absent."""
        if self.resource is None:
            return self.bare
        return f"{self.bare}/{self.resource}"

    def __str__(self) -> str:
        return self.full


class InvalidJID(ValueError):
    """A JID, or one of its parts, breaks RFC 7622.  The message says which part and why."""


class _Invalid(ValueError):
    """Internal: why a value is invalid, to be prefixed by the field's name."""


# ---------------------------------------------------------------------------
# IP literals and DNS names


def _ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    The address C{text} spells, read by the destination policy's own parser
    (every numeric IPv4 spelling, IPv6 without a zone), so that what passes
    here as a literal is exactly what the policy checks as one.  Only strings
    made of hex digits, C{x}, dots and colons are asked about.
    """
    if not _IP_LITERAL_CHARS.fullmatch(text):
        return None
    return parse_ip_literal(text)


def _dns_labels(text: str) -> list[str]:
    """
    The A-labels of the DNS name C{text} (UTS 46 mapped, IDNA 2008, lower
    case, one trailing dot dropped).  Raises L{_Invalid}.
    """
    if len(text) > _MAX_NAME_INPUT:
        raise _Invalid(f"it is longer than {MAX_DNS_NAME} octets")
    try:
        mapped = idna.uts46_remap(text, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _Invalid("it contains a character not allowed in a DNS name") from None
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise _Invalid("it is empty")
    labels = []
    for label in mapped.split("."):
        if not label:
            raise _Invalid("a label is empty")
        labels.append(_a_label(label))
    if len(".".join(labels)) > MAX_DNS_NAME:
        raise _Invalid(f"it is longer than {MAX_DNS_NAME} octets")
    return labels


def _a_label(label: str) -> str:
    """One label, already UTS 46 mapped, as its lower-case ASCII form."""
    if label.isascii() and not label.lower().startswith("xn--"):
        label = label.lower()
        if len(label) > MAX_DNS_LABEL:
            raise _Invalid(f"a label is longer than {MAX_DNS_LABEL} octets")
        if not _LDH_LABEL.fullmatch(label):
            raise _Invalid("a label is not letters, digits and inner hyphens")
        return label
    if not label.isascii():
        try:
            encoded_length = 4 + len(label.encode("punycode"))
        except UnicodeError:
            raise _Invalid("it contains a character not allowed in a DNS name") from None
        if encoded_length > MAX_DNS_LABEL:
            raise _Invalid(f"a label is longer than {MAX_DNS_LABEL} octets")
    elif len(label) > MAX_DNS_LABEL:
        raise _Invalid(f"a label is longer than {MAX_DNS_LABEL} octets")
    try:
        a_label = idna.alabel(label).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _Invalid("a label is not valid IDNA 2008") from None
    if len(a_label) > MAX_DNS_LABEL:
        raise _Invalid(f"a label is longer than {MAX_DNS_LABEL} octets")
    if not _LDH_LABEL.fullmatch(a_label):
        raise _Invalid("a label is not valid IDNA 2008")
    return a_label


def _check_not_numeric(labels: list[str]) -> None:
    """A name ending in a numeric label would be read as an IPv4 address."""
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise _Invalid("it is numeric but not a valid IPv4 address")


def _host(text: str) -> str:
    """The normalised host: A-label DNS name or canonical IP literal."""
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed or ":" in text:
        inner = text[1:-1] if bracketed else text
        if "%" in inner:
            raise _Invalid("IPv6 zone identifiers are not allowed")
        address = _ip_literal(inner) if ":" in inner else None
        if address is None or address.version != 6:
            if bracketed:
                raise _Invalid("brackets must enclose an IPv6 address")
            raise _Invalid("it is not a valid IPv6 address; give the port in the port field")
        return str(address)
    address = _ip_literal(text)  # one trailing dot is part of the literal syntax
    if address is not None:
        return str(address)
    labels = _dns_labels(text)
    mapped = ".".join(labels)
    # UTS 46 maps full-width digits and ideographic full stops.
    address = _ip_literal(mapped)
    if address is not None:
        return str(address)
    _check_not_numeric(labels)
    return mapped


def _domain_of_host(host: str) -> str:
    """The domainpart naming a normalised host (see L{_host})."""
    if ":" in host:
        return f"[{host}]"
    if _ip_literal(host) is not None:
        return host
    return ".".join(_u_label(label) for label in host.split("."))


def _u_label(label: str) -> str:
    """The Unicode form of a lower-case A-label; other labels unchanged."""
    if label.startswith("xn--"):
        return idna.ulabel(label)
    return label


def _domainpart(text: str, *, bare_ipv6: bool) -> str:
    """
    The RFC 7622 domainpart: U-labels, lower case; IPv6 in brackets; IPv4 as
    a dotted quad.  With C{bare_ipv6}, an unbracketed IPv6 address is
    accepted too.
    """
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed or (bare_ipv6 and ":" in text):
        inner = text[1:-1] if bracketed else text
        if "%" in inner:
            raise _Invalid("IPv6 zone identifiers are not allowed")
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            if bracketed:
                raise _Invalid("brackets must enclose an IPv6 address") from None
            raise _Invalid("it is not a valid IPv6 address") from None
        return f"[{address}]"
    candidate = text[:-1] if text.endswith(".") else text
    if _IP_LITERAL_CHARS.fullmatch(candidate) and ":" not in candidate:
        try:
            return str(ipaddress.IPv4Address(candidate))
        except ValueError:
            if _ip_literal(candidate) is not None:
                raise _Invalid("an IPv4 address must be written as a dotted quad") from None
    labels = _dns_labels(text)
    try:
        # UTS 46 maps full-width digits and ideographic full stops.
        return str(ipaddress.IPv4Address(".".join(labels)))
    except ValueError:
        pass
    _check_not_numeric(labels)
    try:
        domain = ".".join(_u_label(label) for label in labels)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise _Invalid("a label is not valid IDNA 2008") from None
    if len(domain.encode("utf-8")) > MAX_PART_BYTES:
        raise _Invalid(f"it is longer than {MAX_PART_BYTES} bytes")
    return domain


# ---------------------------------------------------------------------------
# JID parts


def _utf8_length(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Invalid("it contains an unpaired surrogate") from None


def _precis_part(text: str, profile, profile_name: str) -> str:
    """A JID part enforced with a PRECIS profile, 1-1023 bytes."""
    if not text:
        raise _Invalid("it is empty")
    if len(text) > _MAX_PART_INPUT:
        raise _Invalid(f"it is longer than {MAX_PART_BYTES} bytes")
    try:
        part = profile.enforce(text)
    except UnicodeError as e:
        raise _Invalid(_precis_reason(e, profile_name)) from None
    if _utf8_length(part) > MAX_PART_BYTES:
        raise _Invalid(f"it is longer than {MAX_PART_BYTES} bytes")
    return part


def _localpart(text: str) -> str:
    """RFC 7622 section 3.3: PRECIS UsernameCaseMapped, then no C{" & ' / : < > @}."""
    local = _precis_part(text, _username_profile, "UsernameCaseMapped")
    if _LOCALPART_FORBIDDEN.intersection(local):
        raise _Invalid("it contains one of \" & ' / : < > @")
    return local


def _resourcepart(text: str) -> str:
    """RFC 7622 section 3.4: PRECIS OpaqueString, 1-1023 bytes."""
    return _precis_part(text, _opaque_profile, "OpaqueString")


def _precis_reason(error: UnicodeError, profile: str) -> str:
    """The PRECIS verdict (C{DISALLOWED/spaces}), without the rejected text."""
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason == "DISALLOWED/empty":
        return "it is empty"
    if isinstance(reason, str) and reason:
        return f"PRECIS {profile}: {reason}"
    return f"PRECIS {profile}: disallowed"


def parse_jid(text: str, *, strict: bool = True) -> JID:
    """
    Split and (when C{strict}) validate and normalise a JID.

    The resource is everything after the first C{/} (so it may contain C{/}
    and C{@}); the localpart is everything before the first C{@} ahead of
    that.  Strict: each part is checked as in RFC 7622 (localpart PRECIS
    UsernameCaseMapped without C{" & ' / : < > @}; domainpart IDNA 2008,
    U-labels, or a dotted-quad IPv4 or bracketed IPv6 address; resourcepart
    PRECIS OpaqueString; each 1-1023 bytes) and returned normalised.

    C{strict=False} only splits, for JIDs a server supplies: the parts are
    kept as given (an empty one stays C{""}), so C{.full} gives back C{text}.

    @raise InvalidJID: C{text} is not a string, or (strict) a part is invalid.
    """
    if not isinstance(text, str):
        raise InvalidJID("a JID must be a string")
    rest, slash, resource = text.partition("/")
    local, at, domain = rest.partition("@")
    if not at:
        local, domain = None, rest
    if not slash:
        resource = None
    if not strict:
        return JID(local, domain, resource)
    try:
        if local is not None:
            local = _localpart(local)
    except _Invalid as e:
        raise InvalidJID(f"localpart: {e}") from None
    try:
        domain = _domainpart(domain, bare_ipv6=False)
    except _Invalid as e:
        raise InvalidJID(f"domainpart: {e}") from None
    try:
        if resource is not None:
            resource = _resourcepart(resource)
    except _Invalid as e:
        raise InvalidJID(f"resourcepart: {e}") from None
    return JID(local, domain, resource)


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
    """An integer field in milliseconds, returned in seconds."""
    value = _integer(body, name, low, high, None, " (milliseconds)")
    return default if value is None else value / 1000.0


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
    text = _string(value, "password")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise RequestError(400, "password must not contain unpaired surrogates") from None
    if not 1 <= size <= MAX_PART_BYTES:
        raise RequestError(
            400, f"password must be a non-empty string of at most {MAX_PART_BYTES} bytes"
        )
    if "\x00" in text:
        raise RequestError(400, "password must not contain NUL characters")
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
# Endpoints


def parse_connect(body) -> ConnectRequest:
    """
    C{POST /api/xmpp/connect}: C{host} (required), C{port} 5222, C{domain}
    = host, C{timeout} 10000 ms, C{tls} C{"auto"} (C{"direct"} on port 5223
    when not given), C{transcript} false.

    @raise RequestError: 400, C{"Missing required parameter: host"} or a
        message naming the invalid field.
    """
    body = _require_object(body)
    if _is_missing(body.get("host")):
        raise RequestError(400, "Missing required parameter: host")
    return ConnectRequest(
        **_target(body, CONNECT_TIMEOUT, CONNECT_TLS_MODES),
        transcript=_boolean(body, "transcript", False),
    )


SRV_TIMEOUT = 20.0


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


def parse_s2s(body) -> S2SRequest:
    """
    C{POST /api/xmpp/s2s}: C{host} (required), C{port} 5269, C{domain} =
    host, C{from} (optional JID domainpart), C{timeout} 10000 ms, C{tls}
    C{"auto"} (C{"direct"} on port 5223 when not given), C{transcript} false.

    @raise RequestError: 400, C{"Missing required parameter: host"} or a
        message naming the invalid field.
    """
    body = _require_object(body)
    if _is_missing(body.get("host")):
        raise RequestError(400, "Missing required parameter: host")
    from_ = body.get("from")
    return S2SRequest(
        **_target(body, CONNECT_TIMEOUT, CONNECT_TLS_MODES, default_port=S2S_PORT),
        from_=None if from_ is None else check_domain(from_, "from"),
        transcript=_boolean(body, "transcript", False),
    )


def _target(
    body: dict,
    default_timeout: float,
    tls_modes: tuple[str, ...],
    default_port: int = DEFAULT_PORT,
) -> dict:
    """C{host}, C{port}, C{domain}, C{timeout} and C{tls}: where and how to connect."""
    host = check_host(body["host"])
    port = check_port(body, default_port)
    tls = _choice(body, "tls", tls_modes, None)
    if tls is None:
        tls = "direct" if port == DIRECT_TLS_PORT else "auto"
    return {
        "host": host,
        "port": port,
        "domain": _optional_domain(body, host),
        "timeout": _milliseconds(body, "timeout", 1, MAX_TIMEOUT_MS, default_timeout),
        "tls": tls,
    }


def parse_auth(body, *, default_timeout: float = LOGIN_TIMEOUT) -> AuthRequest:
    """
    The fields every auth endpoint shares: C{host}, C{username},
    C{password} (required), C{port} 5222, C{domain} = host, C{timeout}
    (C{default_timeout} seconds), C{tls} C{"auto"} (C{"direct"} on port
    5223), C{tlsVerify} true, C{resource} C{"portofcall"}, C{mechanism},
    C{channelBinding}, C{transcript} false.

    @raise RequestError: 400, C{"host, username, and password are required"}
        or a message naming the invalid field.
    """
    body = _require_object(body)
    if any(_is_missing(body.get(name)) for name in ("host", "username", "password")):
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


def parse_login(body) -> AuthRequest:
    """C{POST /api/xmpp/login}: L{parse_auth} with a 15 s timeout."""
    return parse_auth(body, default_timeout=LOGIN_TIMEOUT)


def parse_roster(body) -> AuthRequest:
    """C{POST /api/xmpp/roster}: L{parse_auth} with a 20 s timeout."""
    return parse_auth(body, default_timeout=ROSTER_TIMEOUT)


def parse_server_info(body) -> AuthRequest:
    """C{POST /api/xmpp/server-info}: L{parse_auth} with a 20 s timeout."""
    return parse_auth(body, default_timeout=ROSTER_TIMEOUT)


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
