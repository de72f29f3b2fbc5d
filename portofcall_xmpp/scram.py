"""
SCRAM (RFC 5802; RFC 7677 for SHA-256, SHA-512 by analogy), client side,
for SCRAM-SHA-1, SCRAM-SHA-256, SCRAM-SHA-512 and their -PLUS variants.

One L{Scram} object runs one exchange, with the mechanism interface of
L{portofcall_xmpp.sasl}::

    initial_response()       -> client-first-message
    respond(server_first)    -> client-final-message (a Deferred when threaded)
    respond(server_final)    -> b""  (RFC 6120 §6.4.6: v= sent as a challenge)
    verify_success(data)     -> None, or SASLFailure

GS2 channel-binding flag (RFC 5802 §6), chosen once at construction:

    - C{p=<type>}: the mechanism is -PLUS; the binding data is mixed into C{c=}.
      A -PLUS mechanism without binding data fails at once (binding needs TLS).
    - C{y}: the mechanism is not -PLUS, binding data is available (TLS), and
      the server offered no SCRAM -PLUS mechanism (C{server_offers_plus}
      false): "I could bind, but I believe you can't".  A server that does
      support binding, whose -PLUS names an attacker stripped from the
      features, sees C{y} and fails the exchange: the downgrade is detected.
    - C{n}: no binding data (plaintext, or TLS without usable binding data);
      also when the server offers -PLUS but a plain SCRAM mechanism was asked
      for explicitly (C{y} would make such a server refuse, RFC 5802 §6).

The C{c=} attribute of client-final is base64(gs2-header + binding data) for
C{p}, and base64(gs2-header) for C{y} and C{n} (C{biws}, C{eSws}).

Password preparation: SASLprep (RFC 4013, "stored strings"), as RFC 5802
requires and as Prosody hashes (C{saslprep()} before PBKDF2); not PRECIS
OpaqueString, which differs from SASLprep (NFC instead of NFKC, no
mapping-to-nothing), so a password with, say, a soft hyphen or a full-width
letter would hash differently from the server's stored keys.  When SASLprep
refuses the password (or maps it to nothing), the raw UTF-8 bytes are used
and a warning is recorded: ejabberd hashes the raw password (resourceprep is
only a validity check there), and a server that refuses such a password
answers C{not-authorized}, no worse than giving up.  Both rules are the
identity on printable ASCII.

The iteration count is checked before any key derivation: above
L{MAX_ITERATIONS} the exchange fails at once; below L{MIN_ITERATIONS} it
proceeds, with C{weak_iterations} set and a line in C{warnings}.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata

from twisted.internet.defer import Deferred

from .errors import SASLFailure

HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
NAMES = tuple(HASHES) + tuple(name + "-PLUS" for name in HASHES)

# The channel-binding types (RFC 5929, RFC 9266) of the GS2 header.
TLS_EXPORTER = "tls-exporter"
TLS_SERVER_END_POINT = "tls-server-end-point"
TLS_UNIQUE = "tls-unique"
#: Every channel-binding type this service can compute, best first (SPEC §4):
#: the one list (validation, the OpenAPI document and the TLS layer use it).
CHANNEL_BINDINGS = (TLS_EXPORTER, TLS_SERVER_END_POINT, TLS_UNIQUE)

# Refused before deriving: PBKDF2 cost is linear in the count, and the count
# is the server's (or an attacker's) choice.
MAX_ITERATIONS = 1_000_000
# RFC 5802 §5.1 / RFC 7677 §4: at least 4096.
MIN_ITERATIONS = 4096

_PRINTABLE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # RFC 5802 "printable": no ","
_POSITIVE = re.compile(r"[1-9][0-9]*")
_ATTRIBUTE = re.compile(r"[A-Za-z]=")

# Exchange states.
_START, _FIRST_SENT, _DERIVING, _FINAL_SENT, _VERIFIED, _FAILED = range(6)


def saslprep(text: str) -> str:
    """
    RFC 4013 SASLprep of C{text} as a stored string (unassigned code points
    refused), with the Unicode 3.2 tables of RFC 3454.

    @raise ValueError: the string holds a prohibited character or breaks the
        bidi rule.  The message never quotes the string.
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for c in prepared:
        if (
            stringprep.in_table_c12(c)
            or stringprep.in_table_c21_c22(c)
            or stringprep.in_table_c3(c)
            or stringprep.in_table_c4(c)
            or stringprep.in_table_c5(c)
            or stringprep.in_table_c6(c)
            or stringprep.in_table_c7(c)
            or stringprep.in_table_c8(c)
            or stringprep.in_table_c9(c)
        ):
            raise ValueError("SASLprep: prohibited character")
        if stringprep.in_table_a1(c):
            raise ValueError("SASLprep: unassigned code point")
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise ValueError("SASLprep: mixed right-to-left and left-to-right text")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("SASLprep: right-to-left text must start and end with one")
    return prepared


def escape_username(username: str) -> str:
    """RFC 5802 saslname: C{=} becomes C{=3D} and C{,} becomes C{=2C}."""
    return username.replace("=", "=3D").replace(",", "=2C")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _quote(value: str, limit: int = 64) -> str:
    """Server-supplied text, safe to put in an error message."""
    cleaned = "".join(c if " " <= c <= "~" else "?" for c in value[:limit])
    return cleaned + ("..." if len(value) > limit else "")


def _derive(hash_name: str, password: bytes, salt: bytes, iterations: int, auth_message: bytes):
    """
    The expensive part (PBKDF2) and the cheap rest: (ClientProof,
    ServerSignature).  Pure, so it can run in a thread.
    """
    salted = hashlib.pbkdf2_hmac(hash_name, password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    stored_key = hashlib.new(hash_name, client_key).digest()
    client_signature = hmac.digest(stored_key, auth_message, hash_name)
    proof = bytes(a ^ b for a, b in zip(client_key, client_signature, strict=True))
    server_key = hmac.digest(salted, b"Server Key", hash_name)
    return proof, hmac.digest(server_key, auth_message, hash_name)


def _attributes(message: bytes, what: str) -> list[tuple[str, str]]:
    """C{a=1,b=2} as C{[("a", "1"), ("b", "2")]}; SASLFailure if malformed."""
    try:
        text = message.decode("utf-8")
    except UnicodeDecodeError:
        raise SASLFailure(f"SCRAM: the {what} is not valid UTF-8") from None
    pairs = []
    for part in text.split(","):
        if not _ATTRIBUTE.match(part):
            raise SASLFailure(f"SCRAM: malformed {what}: {_quote(text)}")
        pairs.append((part[0], part[2:]))
    return pairs


class Scram:
    """
    One SCRAM exchange.

    @ivar name: the mechanism, e.g. C{SCRAM-SHA-256-PLUS}.
    @ivar gs2_flag: C{"n"}, C{"y"} or C{"p"} (see the module docstring).
    @ivar channel_binding_type: the binding type used (flag C{p}), else None.
    @ivar iterations: the server's iteration count, once known, else None.
    @ivar weak_iterations: whether that count is below L{MIN_ITERATIONS}.
    @ivar warnings: human-readable notes for the probe's C{warnings}.
    """

    def __init__(
        self,
        name: str,
        username: str,
        password: str,
        *,
        channel_binding: tuple[str, bytes] | None = None,
        server_offers_plus: bool = False,
        to_thread=None,
        nonce: str | None = None,
    ):
        """
        @param channel_binding: None, or C{(type, data)} with C{type} one of
            L{CHANNEL_BINDINGS}; empty data counts as none.
        @param server_offers_plus: whether the server offered a SCRAM -PLUS
            mechanism (L{portofcall_xmpp.sasl.server_offers_plus}).
        @param to_thread: C{f -> Deferred} running C{f} off the reactor
            (C{deferToThread}); None derives synchronously.
        @param nonce: the client nonce (tests); default 24 random bytes, base64.
        @raise SASLFailure: a -PLUS mechanism without channel-binding data.
        @raise ValueError: an unknown mechanism, binding type or bad nonce.
        """
        if name not in NAMES:
            raise ValueError(f"not a SCRAM mechanism: {name!r}")
        self.name = name
        self.plus = name.endswith("-PLUS")
        self._hash = HASHES[name.removesuffix("-PLUS")]
        self._to_thread = to_thread
        self.iterations = None
        self.weak_iterations = False
        self.warnings = []

        cb_type, cb_data = channel_binding if channel_binding is not None else (None, b"")
        if cb_type is not None and cb_type not in CHANNEL_BINDINGS:
            raise ValueError(f"unknown channel-binding type: {cb_type!r}")
        if self.plus:
            if not cb_data:
                raise SASLFailure(
                    f"SASL {name}: channel binding needs TLS (with channel-binding data)"
                )
            self.gs2_flag, self.channel_binding_type = "p", cb_type
            gs2_header = f"p={cb_type},,"
            cbind_input = gs2_header.encode("ascii") + cb_data
        else:
            self.gs2_flag = "y" if cb_data and not server_offers_plus else "n"
            self.channel_binding_type = None
            gs2_header = self.gs2_flag + ",,"
            cbind_input = gs2_header.encode("ascii")
        self._channel_binding = _b64(cbind_input)

        if nonce is None:
            nonce = _b64(secrets.token_bytes(24))
        if not _PRINTABLE.fullmatch(nonce):
            raise ValueError("a SCRAM nonce is printable ASCII without ','")
        self._nonce = nonce

        try:
            user = escape_username(username).encode("utf-8")
            self._password = self._prepare(password)
        except UnicodeEncodeError:
            raise SASLFailure("SCRAM: the username or password is not valid Unicode") from None
        self._client_first_bare = b"n=" + user + b",r=" + nonce.encode("ascii")
        self._client_first = gs2_header.encode("ascii") + self._client_first_bare
        self._client_final_without_proof = None
        self._server_signature = None
        self._state = _START

    def _prepare(self, password: str) -> bytes:
        try:
            prepared = saslprep(password)
        except ValueError:
            prepared = ""
        if not prepared:
            self.warnings.append(
                "SCRAM: the password is not valid under SASLprep; it was used unprepared"
            )
            return password.encode("utf-8")
        return prepared.encode("utf-8")

    def __repr__(self):
        return f"<Scram {self.name} gs2={self.gs2_flag} iterations={self.iterations} [redacted]>"

    def _fail(self, message: str, **extra) -> SASLFailure:
        self._state = _FAILED
        self._password = None
        return SASLFailure(message, extra=extra)

    def initial_response(self) -> bytes:
        """The client-first-message: C{gs2-header n=user,r=nonce}."""
        if self._state not in (_START, _FIRST_SENT):
            raise self._fail("SCRAM: the exchange has already started")
        self._state = _FIRST_SENT
        return self._client_first

    def respond(self, challenge: bytes) -> bytes | Deferred:
        """
        Answer a challenge: the server-first-message (returns client-final,
        or a Deferred firing with it when C{to_thread} is set), or a
        server-final-message sent as a challenge (returns C{b""} once the
        signature is verified).

        @raise SASLFailure: malformed or refused message, bad nonce, iteration
            count out of bounds, signature mismatch, or a challenge out of turn.
        """
        if self._state == _FIRST_SENT:
            return self._server_first(challenge)
        if self._state == _FINAL_SENT:
            self._server_final(challenge)
            return b""
        if self._state == _VERIFIED:
            raise self._fail("SCRAM: unexpected challenge after the server signature")
        if self._state == _FAILED:
            raise self._fail("SCRAM: the exchange has already failed")
        raise self._fail("SCRAM: unexpected challenge at this point of the exchange")

    def _server_first(self, message: bytes):
        what = "server-first-message"
        attributes = _attributes(message, what)
        keys = [key for key, _ in attributes]
        if keys[0] == "e":
            refusal = _quote(attributes[0][1])
            raise self._fail(
                f"SCRAM: the server refused the authentication: {refusal}", scramError=refusal
            )
        if "m" in keys:
            raise self._fail("SCRAM: the server requires an unsupported mandatory extension (m=)")
        if keys[:3] != ["r", "s", "i"] or {"r", "s", "i"} & set(keys[3:]):
            raise self._fail(
                f"SCRAM: malformed {what} (expected r=, s=, i= in that order): "
                f"{_quote(message.decode('utf-8'))}"
            )
        nonce, salt_b64, count = (value for _, value in attributes[:3])

        if not (_PRINTABLE.fullmatch(nonce) and nonce.startswith(self._nonce)):
            raise self._fail("SCRAM: the server nonce does not begin with the client nonce")
        if len(nonce) == len(self._nonce):
            raise self._fail("SCRAM: the server nonce adds nothing to the client nonce")
        try:
            salt = base64.b64decode(salt_b64, validate=True)
        except binascii.Error:
            raise self._fail(f"SCRAM: the salt is not valid base64: {_quote(salt_b64)}") from None
        if not salt:
            raise self._fail("SCRAM: the salt is empty")
        if not _POSITIVE.fullmatch(count):
            raise self._fail(
                f"SCRAM: the iteration count is not a positive integer: {_quote(count)}"
            )
        if len(count) > len(str(MAX_ITERATIONS)) or int(count) > MAX_ITERATIONS:
            raise self._fail(
                f"SCRAM iteration count {_quote(count, 20)} exceeds the limit of {MAX_ITERATIONS}"
            )
        self.iterations = int(count)
        if self.iterations < MIN_ITERATIONS:
            self.weak_iterations = True
            self.warnings.append(
                f"SCRAM iteration count {self.iterations} is below the recommended minimum "
                f"of {MIN_ITERATIONS}"
            )

        self._client_final_without_proof = f"c={self._channel_binding},r={nonce}".encode("ascii")
        auth_message = b",".join(
            (self._client_first_bare, message, self._client_final_without_proof)
        )
        password, self._password = self._password, None
        args = (self._hash, password, salt, self.iterations, auth_message)
        if self._to_thread is None:
            return self._derived(_derive(*args))
        self._state = _DERIVING
        d = self._to_thread(lambda: _derive(*args))
        return d.addCallbacks(self._derived, self._derivation_failed)

    def _derived(self, keys) -> bytes:
        proof, self._server_signature = keys
        self._state = _FINAL_SENT
        return self._client_final_without_proof + b",p=" + _b64(proof).encode("ascii")

    def _derivation_failed(self, failure):
        self._state = _FAILED
        return failure

    def _server_final(self, message: bytes) -> None:
        attributes = _attributes(message, "server-final-message")
        key, value = attributes[0]
        if key == "e":
            raise self._fail(
                f"SCRAM: the server refused the authentication: {_quote(value)}",
                scramError=_quote(value),
            )
        if key != "v":
            raise self._fail(
                "SCRAM: malformed server-final-message (expected v= or e=): "
                f"{_quote(message.decode('utf-8'))}"
            )
        try:
            signature = base64.b64decode(value, validate=True)
        except binascii.Error:
            signature = b""
        if not hmac.compare_digest(signature, self._server_signature):
            raise self._fail(
                "SCRAM server signature mismatch: the server does not know the password "
                "(or a man-in-the-middle)"
            )
        self._state = _VERIFIED

    def verify_success(self, data: bytes | None) -> None:
        """
        Check the server signature carried by C{<success/>}; with no data,
        only valid when it already came as a challenge.

        @raise SASLFailure: no signature, a wrong one, C{e=}, or a success
            before the client-final-message was sent.
        """
        if self._state == _VERIFIED:
            if data:
                self._state = _FINAL_SENT
                self._server_final(data)
            return
        if self._state == _FAILED:
            raise self._fail("SCRAM: the exchange has already failed")
        if self._state != _FINAL_SENT:
            raise self._fail("SCRAM: the server sent <success/> before the exchange finished")
        if not data:
            raise self._fail("SCRAM: the server sent <success/> without a server signature")
        self._server_final(data)
