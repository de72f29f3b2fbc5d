"""
The XMPP side of SASL (RFC 6120 §6): which mechanism, and the
C{<auth>}/C{<challenge>}/C{<response>}/C{<success>}/C{<failure>} exchange
that carries it, base64 framing included.  The mechanisms themselves are
pure objects in L{portofcall_xmpp.sasl}.

The password rule of SPEC §2 is applied here: PLAIN is not used on a stream
without TLS unless the caller asked for plaintext (C{tls: "none"}); SCRAM,
which never sends the password, runs there with a warning.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable

from twisted.internet.defer import maybeDeferred
from twisted.words.xish import domish

from . import sasl
from .errors import ProtocolViolation, SASLFailure, TLSFailure
from .parse import NS_SASL, Features, parse_sasl_failure, text_of

WARN_PLAINTEXT_CREDENTIALS = "credentials sent without TLS"
WARN_SCRAM_WITHOUT_TLS = (
    "logged in without TLS: SCRAM kept the password off the wire, but the stream is not encrypted"
)


class SASLStep:
    """
    Authentication on one stream; may run more than once (a retry on the same
    stream, RFC 6120 §6.4.5).

    @ivar mechanism: the mechanism of the last attempt, or C{None}.
    @ivar binding: the channel-binding type that attempt sent, or C{None}.
    """

    def __init__(self, proto, trace, read_timeout: float, to_thread: Callable | None):
        self._proto = proto
        self._trace = trace
        self._read_timeout = read_timeout
        self._to_thread = to_thread
        self.mechanism: str | None = None
        self.binding: str | None = None

    async def authenticate(
        self,
        features: Features,
        username: str,
        password: str,
        requested: str | None,
        *,
        binding: tuple[str, bytes] | None,
        encrypted: bool,
        clear_allowed: bool,
    ) -> str:
        """
        Choose a mechanism (C{requested}, else the strongest offered) and run
        it.

        @param binding: C{(type, data)} for a -PLUS mechanism, or C{None}.
        @param encrypted: the stream runs over TLS.
        @param clear_allowed: the caller asked for plaintext, so PLAIN may
            send the password without TLS.
        @return: the mechanism's name, once the server said C{<success/>}.
        @raise TLSFailure: PLAIN would send the password in clear.
        @raise SASLFailure: nothing fits, the server refused, or the
            mechanism failed (e.g. a wrong SCRAM server signature).
        """
        offered = features.mechanisms
        name = sasl.choose(requested, offered, can_bind=binding is not None)
        if name == "PLAIN" and not encrypted and not clear_allowed:
            raise TLSFailure(
                "SASL PLAIN not sent: the server offers no STARTTLS, and PLAIN would send the "
                'password in clear (tls: "none" allows it)'
            )
        mechanism = sasl.create(
            name,
            username,
            password,
            channel_binding=binding,
            server_offers_plus=sasl.server_offers_plus(offered),
            to_thread=self._to_thread,
        )
        self.mechanism = name
        self.binding = getattr(mechanism, "channel_binding_type", None)
        auth = domish.Element((NS_SASL, "auth"))
        auth["mechanism"] = name
        auth.addContent(_b64(mechanism.initial_response()))
        self._proto.send(auth)
        self._trace.phase(sasl.phase_name(name))
        if not encrypted:
            plain = name == "PLAIN"
            self._trace.warn(WARN_PLAINTEXT_CREDENTIALS if plain else WARN_SCRAM_WITHOUT_TLS)
        while True:
            reply = await self._proto.read_element(
                _expect_sasl_reply, "SASL reply", self._read_timeout
            )
            if reply.name == "failure":
                condition = parse_sasl_failure(reply)
                extra = {"saslCondition": condition.condition}
                if condition.text:
                    extra["saslText"] = condition.text
                raise SASLFailure(f"SASL authentication failed: {condition.condition}", extra=extra)
            data = _unb64(text_of(reply))
            if reply.name == "success":
                await maybeDeferred(mechanism.verify_success, data)
                break
            response = await maybeDeferred(mechanism.respond, data or b"")
            element = domish.Element((NS_SASL, "response"))
            element.addContent(_b64(response))
            self._proto.send(element)
        self._trace.phase("authenticated")
        for warning in getattr(mechanism, "warnings", ()):
            self._trace.warn(warning)
        return name


def _expect_sasl_reply(element) -> bool:
    if element.uri == NS_SASL and element.name in ("success", "failure", "challenge"):
        return True
    raise ProtocolViolation(
        "Expected a SASL reply (<success/>, <failure/> or <challenge/>), "
        f"got <{element.name} xmlns='{element.uri or ''}'>"
    )


def _b64(data: bytes | None) -> str:
    # RFC 6120 §6.4.2: "=" stands for an empty response.
    if not data:
        return "="
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes | None:
    text = text.strip()
    if not text:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SASLFailure("Server sent SASL data that is not valid base64") from e
