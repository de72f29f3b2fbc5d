"""
SASL mechanisms (RFC 4422) as pure objects: credentials in, bytes out.

A mechanism is used by the login flow like this::

    mech = create(name, username, password)
    initial = mech.initial_response()        # bytes, or None for no data
    # ...for each <challenge/>:
    response = await maybeDeferred(mech.respond, challenge_bytes)
    # ...on <success/>:
    mech.verify_success(additional_data)     # raises SASLFailure if wrong

The flow does the framing (base64, the C{<auth>}/C{<response>} elements).
C{respond} may return a Deferred: mechanisms with expensive key derivation
run it off the reactor thread.
"""

from __future__ import annotations

from .errors import SASLFailure

# SPEC §4: the default preference, strongest first.
PREFERENCE = (
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


MECHANISMS = {"PLAIN": Plain}

# The mechanisms this service can run, in SPEC §4 preference order.
IMPLEMENTED = tuple(name for name in PREFERENCE if name in MECHANISMS)


def choose(requested: str | None, offered) -> str:
    """
    The mechanism to use: C{requested} if the server offers it, else the
    strongest implemented mechanism the server offers.

    @raise SASLFailure: with the reference wording when nothing fits.
    """
    available = ", ".join(offered) if offered else "none"
    if requested is not None:
        if requested in offered and requested in MECHANISMS:
            return requested
        raise SASLFailure("SASL %s not supported. Available: %s" % (requested, available))
    for name in IMPLEMENTED:
        if name in offered:
            return name
    raise SASLFailure("No supported SASL mechanism. Available: %s" % (available,))


def create(name: str, username: str, password: str):
    """A fresh mechanism object for one authentication exchange."""
    return MECHANISMS[name](username, password)


def phase_name(mechanism: str) -> str:
    """The SPEC §4 phase for a mechanism: C{sasl_scram_sha_256_sent}."""
    return "sasl_%s_sent" % (mechanism.lower().replace("-", "_"),)
