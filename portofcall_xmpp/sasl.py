"""
SASL mechanisms (RFC 4422) as pure objects: credentials in, bytes out.

A mechanism is used by the login flow like this::

    name = choose(requested, offered, can_bind=binding is not None)
    mech = create(name, username, password, channel_binding=binding,
                  server_offers_plus=server_offers_plus(offered), to_thread=deferToThread)
    initial = mech.initial_response()        # bytes, or None for no data
    # ...for each <challenge/>:
    response = await maybeDeferred(mech.respond, challenge_bytes)
    # ...on <success/>:
    mech.verify_success(additional_data)     # raises SASLFailure if wrong

L{portofcall_xmpp.saslstep} does the framing (base64, the C{<auth>}/C{<response>}
elements).
C{respond} may return a Deferred: mechanisms with expensive key derivation
run it off the reactor thread.  SCRAM lives in L{portofcall_xmpp.scram}.
"""

from __future__ import annotations

from .errors import SASLFailure
from .scram import Scram

#: Every mechanism this service can run, strongest first: the order in which
#: one is picked by default (SPEC §4), and the one list (validation and the
#: OpenAPI document use it).
MECHANISMS = (
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1",
    "PLAIN",
)


class Plain:
    """
    SASL PLAIN (RFC 4616): C{authzid NUL authcid NUL passwd}, with an empty
    authorization identity.
    """

    name = "PLAIN"

    def __init__(self, username: str, password: str):
        self._message = b"\0" + username.encode("utf-8") + b"\0" + password.encode("utf-8")

    def __repr__(self):
        return "<Plain [redacted]>"

    def initial_response(self) -> bytes:
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        raise SASLFailure("SASL PLAIN: the server sent an unexpected challenge")

    def verify_success(self, data: bytes | None) -> None:
        if data:
            raise SASLFailure("SASL PLAIN: the server sent unexpected data with <success/>")


def _scram_mechanism(name: str) -> type[Scram]:
    """A L{Scram} subclass constructed like every mechanism: C{cls(username, password)}."""

    def __init__(self, username: str, password: str, **options):
        Scram.__init__(self, name, username, password, **options)

    doc = f"{name} (RFC 5802): keyword options as for L{{Scram}}."
    return type(name.replace("-", "_"), (Scram,), {"__init__": __init__, "__doc__": doc})


# The class of each of L{MECHANISMS}.
CLASSES = {name: Plain if name == "PLAIN" else _scram_mechanism(name) for name in MECHANISMS}


def is_plus(name: str) -> bool:
    """Whether C{name} is a channel-binding (-PLUS) mechanism."""
    return name.endswith("-PLUS")


def server_offers_plus(offered) -> bool:
    """
    Whether the server offers a SCRAM -PLUS mechanism, i.e. claims to support
    channel binding (decides the SCRAM C{y} flag: see L{portofcall_xmpp.scram}).
    """
    return any(name.startswith("SCRAM-") and is_plus(name) for name in offered)


def choose(requested: str | None, offered, *, can_bind: bool = False) -> str:
    """
    The mechanism to use: C{requested} if the server offers it, else the
    strongest implemented mechanism the server offers.  -PLUS mechanisms are
    chosen by default only when C{can_bind} (TLS with channel-binding data).

    @raise SASLFailure: with the reference wording when nothing fits; a
        requested -PLUS mechanism without C{can_bind} says binding needs TLS.
    """
    available = ", ".join(offered) if offered else "none"
    if requested is not None:
        if requested in MECHANISMS and is_plus(requested) and not can_bind:
            raise SASLFailure(
                f"SASL {requested}: channel binding needs TLS (with channel-binding data). "
                f"Available: {available}"
            )
        if requested in offered and requested in MECHANISMS:
            return requested
        raise SASLFailure(f"SASL {requested} not supported. Available: {available}")
    for name in MECHANISMS:
        if name in offered and (can_bind or not is_plus(name)):
            return name
    raise SASLFailure(f"No supported SASL mechanism. Available: {available}")


def create(name: str, username: str, password: str, **options):
    """
    A fresh mechanism object for one authentication exchange.

    C{options} (C{channel_binding}, C{server_offers_plus}, C{to_thread}) go
    to SCRAM mechanisms; PLAIN ignores them.
    """
    cls = CLASSES[name]
    if issubclass(cls, Scram):
        return cls(username, password, **options)
    return cls(username, password)


def phase_name(mechanism: str) -> str:
    """The SPEC §4 phase for a mechanism: C{sasl_scram_sha_256_sent}."""
    return f"sasl_{mechanism.lower().replace('-', '_')}_sent"
