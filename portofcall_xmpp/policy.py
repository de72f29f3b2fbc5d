"""
Which destinations the service may connect to.

Pure: no Twisted, no I/O.  Two pieces (IP literals are read by
L{portofcall_xmpp.names.parse_ip_literal}):

  - L{SPECIAL_RANGES} is the one table of address ranges that are not
    globally routable; L{special_range} and L{is_global} read it.
  - L{Policy} turns that into a decision, raising L{DestinationBlocked}.

The table is explicit on purpose: C{ipaddress}' own C{is_global} and
C{is_private} tables changed between Python versions.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import attrs

from .errors import DestinationBlocked
from .names import IPAddress

# ---------------------------------------------------------------------------
# The table


def _low32(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    """The IPv4 address in the last 32 bits (mapped, compatible, NAT64)."""
    return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)


def _sixtofour(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    """The IPv4 address in bits 16-47 of a 6to4 address (2002:V4ADDR::/48)."""
    return ipaddress.IPv4Address((int(addr) >> 80) & 0xFFFFFFFF)


@attrs.frozen
class SpecialRange:
    """
    One row of L{SPECIAL_RANGES}.

    @ivar network: the range.
    @ivar name: what its addresses are called, as in "C{<name>} addresses
        are blocked".
    @ivar never_usable: blocked even with C{--allow-private}: an address
        that can never be a TCP peer (unspecified, "this network",
        multicast, limited broadcast).
    @ivar embedded: for a range that carries an IPv4 address inside an
        IPv6 one, the function that extracts it.  The IPv6 address is then
        judged by its IPv4 address (see L{special_range}).
    @ivar public_embedded_allowed: for such a range, whether a globally
        routable embedded IPv4 address makes the IPv6 address global too.
    """

    network: ipaddress.IPv4Network | ipaddress.IPv6Network = attrs.field(
        converter=ipaddress.ip_network
    )
    name: str
    never_usable: bool = False
    embedded: Callable[[ipaddress.IPv6Address], ipaddress.IPv4Address] | None = None
    public_embedded_allowed: bool = True


@attrs.frozen
class Verdict:
    """
    Why an address is not globally routable.

    @ivar reason: the name of its range, e.g. C{loopback} or
        C{IPv4-mapped private (RFC 1918)}.
    @ivar never_usable: see L{SpecialRange.never_usable}.
    @ivar range: the row of L{SPECIAL_RANGES} that matched.
    """

    reason: str
    never_usable: bool
    range: SpecialRange


_R = SpecialRange

#: Every range that is not globally routable, first match wins.  This is the
#: single source of truth for L{is_global} and L{Policy}.
SPECIAL_RANGES: tuple[SpecialRange, ...] = (
    # IPv4 (RFC 6890 and the IANA special-purpose registry).
    _R("0.0.0.0/8", "unspecified ('this network', 0.0.0.0/8)", never_usable=True),
    _R("10.0.0.0/8", "private (RFC 1918)"),
    _R("100.64.0.0/10", "shared (CGNAT, 100.64.0.0/10)"),
    _R("127.0.0.0/8", "loopback"),
    _R("169.254.0.0/16", "link-local"),
    _R("172.16.0.0/12", "private (RFC 1918)"),
    _R("192.0.0.0/24", "IETF protocol assignment (192.0.0.0/24)"),
    _R("192.0.2.0/24", "documentation (192.0.2.0/24)"),
    _R("192.88.99.0/24", "deprecated 6to4 relay anycast (192.88.99.0/24, RFC 7526)"),
    _R("192.168.0.0/16", "private (RFC 1918)"),
    _R("198.18.0.0/15", "benchmarking (198.18.0.0/15)"),
    _R("198.51.100.0/24", "documentation (198.51.100.0/24)"),
    _R("203.0.113.0/24", "documentation (203.0.113.0/24)"),
    _R("224.0.0.0/4", "multicast", never_usable=True),
    _R("255.255.255.255/32", "broadcast", never_usable=True),
    _R("240.0.0.0/4", "reserved (240.0.0.0/4)"),
    # IPv6.  Ranges that embed an IPv4 address come after :: and ::1.
    _R("::/128", "unspecified", never_usable=True),
    _R("::1/128", "loopback"),
    _R("::ffff:0:0/96", "IPv4-mapped", embedded=_low32),
    # Deprecated (RFC 4291 2.5.5.1) and never routed: blocked even when the
    # embedded address is public.
    _R("::/96", "IPv4-compatible", embedded=_low32, public_embedded_allowed=False),
    _R("64:ff9b:1::/48", "NAT64 local-use (64:ff9b:1::/48)"),
    _R("64:ff9b::/96", "NAT64", embedded=_low32),
    _R("100::/64", "discard-only (100::/64)"),
    _R("2001::/32", "Teredo (2001::/32)"),
    _R("2001:db8::/32", "documentation (2001:db8::/32)"),
    _R("2001::/23", "IETF protocol assignment (2001::/23)"),
    _R("2002::/16", "6to4", embedded=_sixtofour),
    _R("3fff::/20", "documentation (3fff::/20)"),
    _R("fc00::/7", "unique local (fc00::/7)"),
    _R("fe80::/10", "link-local"),
    _R("fec0::/10", "site-local (fec0::/10)"),
    _R("ff00::/8", "multicast", never_usable=True),
    # Global unicast is allocated from 2000::/3 only; everything else not
    # matched above is reserved by the IETF and not routed.
    _R("::/3", "reserved (outside 2000::/3)"),
    _R("4000::/2", "reserved (outside 2000::/3)"),
    _R("8000::/1", "reserved (outside 2000::/3)"),
)

del _R


def special_range(addr: IPAddress) -> Verdict | None:
    """
    Find the special range C{addr} is in.

    An IPv6 address that embeds an IPv4 address (IPv4-mapped, -compatible,
    6to4, NAT64) is judged by the embedded address: its verdict's reason is
    the embedding's name followed by the embedded address's reason (e.g.
    C{IPv4-mapped loopback}), and it is never usable when the embedded
    address is not.  If the embedded address is global, so is the IPv6
    address, except for IPv4-compatible addresses (deprecated, never routed).

    @return: L{None} when C{addr} is globally routable.
    """
    for row in SPECIAL_RANGES:
        if addr.version != row.network.version or addr not in row.network:
            continue
        if row.embedded is None:
            return Verdict(row.name, row.never_usable, row)
        inner = special_range(row.embedded(addr))
        if inner is not None:
            return Verdict(f"{row.name} {inner.reason}", inner.never_usable, row)
        if row.public_embedded_allowed:
            return None
        return Verdict(f"{row.name} (::/96, deprecated)", False, row)
    return None


def is_global(addr: IPAddress) -> bool:
    """Whether C{addr} is globally routable (in no L{SPECIAL_RANGES} row)."""
    return special_range(addr) is None


# ---------------------------------------------------------------------------
# The policy


@attrs.frozen
class Policy:
    """
    The destination policy of the service (SPEC.md section 1).

    By default only globally routable addresses (L{is_global}) are allowed.

    With C{allow_private} (C{--allow-private}), every address is allowed
    except those that can never be a TCP peer, which are blocked whatever the
    option says:
      - C{0.0.0.0/8} ("this network"; C{0.0.0.0} reaches the local host on
        some systems, which would be a loopback connection in disguise) and
        the IPv6 unspecified address C{::};
      - multicast (C{224.0.0.0/4}, C{ff00::/8});
      - the limited broadcast address C{255.255.255.255};
      - any IPv6 address that embeds one of these (C{::ffff:0.0.0.0}, ...).
    Everything else that is not global (loopback, RFC 1918, CGNAT,
    link-local, ULA, documentation, benchmarking, 240.0.0.0/4, ...) is
    allowed with the option: test networks use all of them.

    @ivar allow_private: the C{--allow-private} option.
    """

    allow_private: bool = False

    def blocked_reason(self, addr: IPAddress) -> str | None:
        """
        @return: why C{addr} is blocked (the text after "is not allowed: "),
            or L{None} if it is allowed.
        """
        verdict = special_range(addr)
        if verdict is None:
            return None
        if verdict.never_usable:
            return f"{verdict.reason} addresses are never allowed as destinations"
        if self.allow_private:
            return None
        return (
            f"{verdict.reason} addresses are blocked "
            "(start the service with --allow-private to allow them)"
        )

    def allows(self, addr: IPAddress) -> bool:
        """Whether C{addr} may be connected to."""
        return self.blocked_reason(addr) is None

    def check(self, addr: IPAddress | str, *, name: str | None = None) -> None:
        """
        Refuse a destination the policy does not allow.

        @param addr: an address, or its canonical text (not a legacy
            spelling: use L{names.parse_ip_literal} first for user input).
        @param name: the host name C{addr} was resolved from, if any; it is
            named in the message.

        @raise DestinationBlocked: with a message such as C{Destination
            127.0.0.1 is not allowed: loopback addresses are blocked (start the
            service with --allow-private to allow them)}.  Text that is not an
            IP address is refused too.
        """
        if isinstance(addr, str):
            try:
                addr = ipaddress.ip_address(addr)
            except ValueError:
                raise DestinationBlocked(
                    f"Destination {addr} is not allowed: not an IP address"
                ) from None
        reason = self.blocked_reason(addr)
        if reason is None:
            return
        if name is None or name == str(addr):
            raise DestinationBlocked(f"Destination {addr} is not allowed: {reason}")
        raise DestinationBlocked(
            f"Destination {name} resolves to {addr}, which is not allowed: {reason}"
        )
