"""
Names, pure: IP literals, DNS names (A-labels, IDNA), JID domainparts and
JIDs (RFC 7622).  Every layer that reads or writes a name calls these: the
request validation, the resolver, the SRV lookup and the certificate check.

  - L{parse_ip_literal}: a host string as an address when it is an IP
    literal in any spelling the operating system would accept (including
    the legacy C{inet_aton} forms C{2130706433}, C{127.1}, C{0x7f.1},
    C{0177.0.0.1}), else L{None} (a DNS name).
  - L{normalise_host}, L{domainpart}, L{localpart}, L{resourcepart},
    L{parse_jid}: the strict checks of request fields, raising
    L{InvalidName} (or L{InvalidJID}) whose message says why.
  - L{query_name}: the ASCII name to ask DNS for, for names that come from
    DNS itself (SRV targets) as well as from requests: lenient about what
    DNS allows (underscores), strict about what DNS cannot carry.

No Twisted, no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import re

import attrs
import idna
import precis_i18n

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_PART_BYTES = 1023
MAX_DNS_NAME = 253
MAX_DNS_LABEL = 63

# RFC 7622 section 3.3.1: characters a localpart may not contain.
_LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
# Characters an IP literal (any IPv4 spelling, IPv6 without zone) is made of.
_IP_LITERAL_CHARS = re.compile(r"[0-9A-Fa-fXx.:]+")
# Characters that can appear neither in a DNS name nor in an IP literal
# once brackets and zone identifiers are refused.
_NOT_IN_QUERY_NAME = frozenset(":%[]/\\@ \t\r\n\x00")
# Inputs longer than these (in code points) are refused before any Unicode
# processing: no sane name, localpart or resourcepart maps down from them.
_MAX_NAME_INPUT = 1024
_MAX_PART_INPUT = 4 * MAX_PART_BYTES

_username_profile = precis_i18n.get_profile("UsernameCaseMapped")
_opaque_profile = precis_i18n.get_profile("OpaqueString")


# ---------------------------------------------------------------------------
# IP literals


# One part of a legacy IPv4 spelling, as glibc's inet_aton (strtoul with base
# 0) reads it: hexadecimal after 0x/0X, octal after a leading 0, else decimal.
_PART = r"(?:0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)"
_LEGACY_IPV4 = re.compile(rf"{_PART}(?:\.{_PART}){{0,3}}\.?")
# The largest value of the last part when there are 1, 2, 3 or 4 parts.
_LAST_PART_MAX = (0xFFFFFFFF, 0xFFFFFF, 0xFFFF, 0xFF)


def _parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """
    Parse C{host} as C{inet_aton} does (without its tolerance for trailing
    whitespace): one to four parts separated by dots, each decimal, octal
    (leading C{0}) or hexadecimal (C{0x}); the last part fills the remaining
    bytes.  One trailing dot is also accepted (see L{parse_ip_literal}).
    """
    if not _LEGACY_IPV4.fullmatch(host):
        return None
    parts = []
    for text in host.rstrip(".").split("."):
        if text[:2] in ("0x", "0X"):
            parts.append(int(text[2:], 16))
        elif text.startswith("0"):
            parts.append(int(text, 8))
        elif len(text) > 10:
            # More than 4294967295; also keeps int() clear of its digit limit.
            return None
        else:
            parts.append(int(text, 10))
    *leading, last = parts
    if any(part > 0xFF for part in leading) or last > _LAST_PART_MAX[len(leading)]:
        return None
    value = 0
    for index, part in enumerate(leading):
        value |= part << (24 - 8 * index)
    return ipaddress.IPv4Address(value | last)


def parse_ip_literal(host: str) -> IPAddress | None:
    """
    Interpret C{host} as an IP address literal.

    Accepted:
      - IPv4 in every numeric spelling C{inet_aton}/C{getaddrinfo} accept:
        dotted quad, and the legacy forms with one to four parts in
        decimal, octal or hexadecimal (C{2130706433}, C{127.1}, C{0x7f.1},
        C{0177.0.0.1}, C{0x7f000001}).  Leading zeros mean octal, as they do
        for the C library (C{010.0.0.1} is C{8.0.0.1}).  One trailing dot is
        tolerated (C{127.0.0.1.}), so that such a name is never sent to DNS.
      - IPv6, optionally in brackets (C{[::1]}).

    Zone identifiers (C{fe80::1%eth0}) are not accepted: such a string is
    neither a literal nor a DNS name, and L{None} is returned; the host
    check (L{normalise_host}) and L{query_name} then refuse it.

    @return: the address, or L{None} when C{host} is not an IP literal
        (that is, when it has to be treated as a DNS name).
    """
    if not isinstance(host, str) or not host.isascii():
        return None
    if len(host) > 255:
        return _parse_ip_literal(host)
    return _cached_ip_literal(host)


def _parse_ip_literal(host: str) -> IPAddress | None:
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        if ":" not in inner:
            return None
        return _parse_ipv6(inner)
    if ":" in host:
        return _parse_ipv6(host)
    return _parse_legacy_ipv4(host)


# A probe asks about its host several times (validation, policy, dialling);
# only short strings are kept.
_cached_ip_literal = functools.lru_cache(maxsize=1024)(_parse_ip_literal)


def _parse_ipv6(text: str) -> ipaddress.IPv6Address | None:
    if "%" in text:
        return None
    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        return None


def parse_address(text: str) -> IPAddress | None:
    """C{text} as an address in its standard spelling (as DNS answers give it), else L{None}."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


# ---------------------------------------------------------------------------
# JIDs


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


class InvalidName(ValueError):
    """Why a name or a JID part is invalid; the caller prefixes the field's name."""


# ---------------------------------------------------------------------------
# IP literals and DNS names


def ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """
    The address C{text} spells, read by the destination policy's own parser
    (every numeric IPv4 spelling, IPv6 without a zone), so that what passes
    here as a literal is exactly what the policy checks as one.  Only strings
    made of hex digits, C{x}, dots and colons are asked about.
    """
    if not _IP_LITERAL_CHARS.fullmatch(text):
        return None
    return parse_ip_literal(text)


def dns_labels(text: str) -> list[str]:
    """
    The A-labels of the DNS name C{text} (UTS 46 mapped, IDNA 2008, lower
    case, one trailing dot dropped).  Raises L{InvalidName}.
    """
    if len(text) > _MAX_NAME_INPUT:
        raise InvalidName(f"it is longer than {MAX_DNS_NAME} octets")
    try:
        mapped = idna.uts46_remap(text, std3_rules=False, transitional=False)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidName("it contains a character not allowed in a DNS name") from None
    if mapped.endswith("."):
        mapped = mapped[:-1]
    if not mapped:
        raise InvalidName("it is empty")
    labels = []
    for label in mapped.split("."):
        if not label:
            raise InvalidName("a label is empty")
        labels.append(_a_label(label))
    if len(".".join(labels)) > MAX_DNS_NAME:
        raise InvalidName(f"it is longer than {MAX_DNS_NAME} octets")
    return labels


def _a_label(label: str) -> str:
    """One label, already UTS 46 mapped, as its lower-case ASCII form."""
    if label.isascii() and not label.lower().startswith("xn--"):
        label = label.lower()
        if len(label) > MAX_DNS_LABEL:
            raise InvalidName(f"a label is longer than {MAX_DNS_LABEL} octets")
        if not _LDH_LABEL.fullmatch(label):
            raise InvalidName("a label is not letters, digits and inner hyphens")
        return label
    if not label.isascii():
        try:
            encoded_length = 4 + len(label.encode("punycode"))
        except UnicodeError:
            raise InvalidName("it contains a character not allowed in a DNS name") from None
        if encoded_length > MAX_DNS_LABEL:
            raise InvalidName(f"a label is longer than {MAX_DNS_LABEL} octets")
    elif len(label) > MAX_DNS_LABEL:
        raise InvalidName(f"a label is longer than {MAX_DNS_LABEL} octets")
    try:
        a_label = idna.alabel(label).decode("ascii").lower()
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidName("a label is not valid IDNA 2008") from None
    if len(a_label) > MAX_DNS_LABEL:
        raise InvalidName(f"a label is longer than {MAX_DNS_LABEL} octets")
    if not _LDH_LABEL.fullmatch(a_label):
        raise InvalidName("a label is not valid IDNA 2008")
    return a_label


def _check_not_numeric(labels: list[str]) -> None:
    """A name ending in a numeric label would be read as an IPv4 address."""
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        raise InvalidName("it is numeric but not a valid IPv4 address")


def normalise_host(text: str) -> str:
    """The normalised host: A-label DNS name or canonical IP literal."""
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed or ":" in text:
        inner = text[1:-1] if bracketed else text
        if "%" in inner:
            raise InvalidName("IPv6 zone identifiers are not allowed")
        address = ip_literal(inner) if ":" in inner else None
        if address is None or address.version != 6:
            if bracketed:
                raise InvalidName("brackets must enclose an IPv6 address")
            raise InvalidName("it is not a valid IPv6 address; give the port in the port field")
        return str(address)
    address = ip_literal(text)  # one trailing dot is part of the literal syntax
    if address is not None:
        return str(address)
    labels = dns_labels(text)
    mapped = ".".join(labels)
    # UTS 46 maps full-width digits and ideographic full stops.
    address = ip_literal(mapped)
    if address is not None:
        return str(address)
    _check_not_numeric(labels)
    return mapped


def domain_of_host(host: str) -> str:
    """The domainpart naming a normalised host (see L{normalise_host})."""
    if ":" in host:
        return f"[{host}]"
    if ip_literal(host) is not None:
        return host
    return ".".join(_u_label(label) for label in host.split("."))


def _u_label(label: str) -> str:
    """The Unicode form of a lower-case A-label; other labels unchanged."""
    if label.startswith("xn--"):
        return idna.ulabel(label)
    return label


def domainpart(text: str, *, bare_ipv6: bool) -> str:
    """
    The RFC 7622 domainpart: U-labels, lower case; IPv6 in brackets; IPv4 as
    a dotted quad.  With C{bare_ipv6}, an unbracketed IPv6 address is
    accepted too.
    """
    bracketed = text.startswith("[") and text.endswith("]")
    if bracketed or (bare_ipv6 and ":" in text):
        inner = text[1:-1] if bracketed else text
        if "%" in inner:
            raise InvalidName("IPv6 zone identifiers are not allowed")
        try:
            address = ipaddress.IPv6Address(inner)
        except ValueError:
            if bracketed:
                raise InvalidName("brackets must enclose an IPv6 address") from None
            raise InvalidName("it is not a valid IPv6 address") from None
        return f"[{address}]"
    candidate = text[:-1] if text.endswith(".") else text
    if _IP_LITERAL_CHARS.fullmatch(candidate) and ":" not in candidate:
        try:
            return str(ipaddress.IPv4Address(candidate))
        except ValueError:
            if ip_literal(candidate) is not None:
                raise InvalidName("an IPv4 address must be written as a dotted quad") from None
    labels = dns_labels(text)
    try:
        # UTS 46 maps full-width digits and ideographic full stops.
        return str(ipaddress.IPv4Address(".".join(labels)))
    except ValueError:
        pass
    _check_not_numeric(labels)
    try:
        domain = ".".join(_u_label(label) for label in labels)
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidName("a label is not valid IDNA 2008") from None
    if len(domain.encode("utf-8")) > MAX_PART_BYTES:
        raise InvalidName(f"it is longer than {MAX_PART_BYTES} bytes")
    return domain


def query_name(host: str) -> str:
    """
    The ASCII name to look up in DNS for C{host}: as given when it is ASCII
    (DNS allows underscores and any case), else its IDNA A-labels (UTS 46).
    One trailing dot is kept.

    @raise InvalidName: C{host} cannot be a DNS name (empty, a bracketed or
        zone-scoped address, a URL, non-IDNA text, a label longer than 63
        octets, a name longer than 253).
    """
    if not host or not isinstance(host, str) or _NOT_IN_QUERY_NAME.intersection(host):
        raise InvalidName("not a valid host name")
    if host.isascii():
        name = host
    else:
        try:
            name = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            raise InvalidName("not a valid internationalised host name") from None
    bare = name[:-1] if name.endswith(".") else name
    if len(bare) > MAX_DNS_NAME:
        raise InvalidName(f"name longer than {MAX_DNS_NAME} octets")
    if any(not label or len(label) > MAX_DNS_LABEL for label in bare.split(".")):
        raise InvalidName("not a valid host name")
    return name


# ---------------------------------------------------------------------------
# JID parts


def _utf8_length(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidName("it contains an unpaired surrogate") from None


# The same accounts and resources come back probe after probe; PRECIS is the
# slowest part of reading a request.  Refusals are not kept (an exception is
# not cached), only short parts are.
@functools.lru_cache(maxsize=2048)
def _enforce(profile, text: str) -> str:
    return profile.enforce(text)


def _precis_part(text: str, profile, profile_name: str) -> str:
    """A JID part enforced with a PRECIS profile, 1-1023 bytes."""
    if not text:
        raise InvalidName("it is empty")
    if len(text) > _MAX_PART_INPUT:
        raise InvalidName(f"it is longer than {MAX_PART_BYTES} bytes")
    try:
        part = _enforce(profile, text) if len(text) <= 256 else profile.enforce(text)
    except UnicodeError as e:
        raise InvalidName(_precis_reason(e, profile_name)) from None
    if _utf8_length(part) > MAX_PART_BYTES:
        raise InvalidName(f"it is longer than {MAX_PART_BYTES} bytes")
    return part


def localpart(text: str) -> str:
    """RFC 7622 section 3.3: PRECIS UsernameCaseMapped, then no C{" & ' / : < > @}."""
    local = _precis_part(text, _username_profile, "UsernameCaseMapped")
    if _LOCALPART_FORBIDDEN.intersection(local):
        raise InvalidName("it contains one of \" & ' / : < > @")
    return local


def resourcepart(text: str) -> str:
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
            local = localpart(local)
    except InvalidName as e:
        raise InvalidJID(f"localpart: {e}") from None
    try:
        domain = domainpart(domain, bare_ipv6=False)
    except InvalidName as e:
        raise InvalidJID(f"domainpart: {e}") from None
    try:
        if resource is not None:
            resource = resourcepart(resource)
    except InvalidName as e:
        raise InvalidJID(f"resourcepart: {e}") from None
    return JID(local, domain, resource)
