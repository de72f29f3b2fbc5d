"""Tests for portofcall_xmpp.scram and the SCRAM parts of portofcall_xmpp.sasl."""

import base64
import hashlib
import hmac

import scramp
from hypothesis import given, settings
from hypothesis import strategies as st
from scramp.utils import saslprep as scramp_saslprep
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import sasl
from portofcall_xmpp.errors import SASLFailure
from portofcall_xmpp.scram import MAX_ITERATIONS, Scram, escape_username, saslprep

# RFC 5802 §5 (SCRAM-SHA-1).
RFC5802_NONCE = "fyko+d2lbbFgONRv9qkxdawL"
RFC5802_CLIENT_FIRST = b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"
RFC5802_SERVER_FIRST = b"r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096"
RFC5802_CLIENT_FINAL = (
    b"c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
)
RFC5802_SERVER_FINAL = b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="

# RFC 7677 §3 (SCRAM-SHA-256).
RFC7677_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC7677_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC7677_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC7677_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC7677_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

CB_DATA = b"\x8a\x01binding-data\xff"


def rfc5802(**kw):
    """A SCRAM-SHA-1 exchange with the RFC 5802 credentials and nonce."""
    return Scram("SCRAM-SHA-1", "user", "pencil", nonce=RFC5802_NONCE, **kw)


def started(**kw):
    """The RFC 5802 exchange, client-first sent."""
    mech = rfc5802(**kw)
    mech.initial_response()
    return mech


def finished(**kw):
    """The RFC 5802 exchange, client-final sent."""
    mech = started(**kw)
    mech.respond(RFC5802_SERVER_FIRST)
    return mech


class RecordingThread:
    """A to_thread that records each function and runs it at once."""

    def __init__(self, run=True):
        self.calls = []
        self.run = run

    def __call__(self, f):
        self.calls.append(f)
        return succeed(f()) if self.run else Deferred()


class Server:
    """
    A SCRAM server computed directly from RFC 5802 §3, independent of the
    client's code paths (parses what the client sent).
    """

    def __init__(self, name, password, salt=b"NaCl-salt", iterations=4096, cb_data=b""):
        self.hash = {"1": "sha1", "256": "sha256", "512": "sha512"}[
            name.removesuffix("-PLUS").rsplit("-", 1)[1]
        ]
        self.password = password
        self.salt = salt
        self.iterations = iterations
        self.cb_data = cb_data

    def first(self, client_first: bytes, suffix=b"+server/nonce") -> bytes:
        flag, authzid, bare = client_first.split(b",", 2)
        self.gs2_header = flag + b"," + authzid + b","
        self.client_first_bare = bare
        nonce = dict(a.split(b"=", 1) for a in bare.split(b","))[b"r"]
        self.server_first = b"r=%s%s,s=%s,i=%d" % (
            nonce,
            suffix,
            base64.b64encode(self.salt),
            self.iterations,
        )
        return self.server_first

    def final(self, client_final: bytes) -> bytes:
        without_proof, proof = client_final.rsplit(b",p=", 1)
        cbind = self.gs2_header + (self.cb_data if self.gs2_header.startswith(b"p=") else b"")
        assert without_proof.startswith(b"c=" + base64.b64encode(cbind) + b",r="), without_proof
        auth = b",".join((self.client_first_bare, self.server_first, without_proof))
        salted = hashlib.pbkdf2_hmac(self.hash, self.password, self.salt, self.iterations)
        client_key = hmac.new(salted, b"Client Key", self.hash).digest()
        stored = hashlib.new(self.hash, client_key).digest()
        signature = hmac.new(stored, auth, self.hash).digest()
        received = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
        assert hashlib.new(self.hash, received).digest() == stored, "client proof mismatch"
        server_key = hmac.new(salted, b"Server Key", self.hash).digest()
        return b"v=" + base64.b64encode(hmac.new(server_key, auth, self.hash).digest())


def run_with(mech, server):
    """Run a whole exchange against C{server}; returns the server-final message."""
    server_final = server.final(mech.respond(server.first(mech.initial_response())))
    mech.verify_success(server_final)
    return server_final


def run_with_scramp(testcase, mech, name, password, channel_binding=None):
    """Run a whole exchange against scramp's server side."""
    server_mech = scramp.ScramMechanism(name)
    info = server_mech.make_auth_info(password, iteration_count=4096)
    server = server_mech.make_server(lambda username: info, channel_binding=channel_binding)
    server.set_client_first(mech.initial_response().decode())
    client_final = mech.respond(server.get_server_first().encode())
    server.set_client_final(client_final.decode())
    mech.verify_success(server.get_server_final().encode())
    testcase.assertEqual(mech.iterations, 4096)


class VectorTests(SynchronousTestCase):
    def test_rfc5802_sha1(self):
        """The RFC 5802 §5 SCRAM-SHA-1 example: exact client-first and client-final, and
        the example's server-final verifies."""
        mech = rfc5802()
        self.assertEqual(mech.initial_response(), RFC5802_CLIENT_FIRST)
        self.assertEqual(mech.respond(RFC5802_SERVER_FIRST), RFC5802_CLIENT_FINAL)
        self.assertIsNone(mech.verify_success(RFC5802_SERVER_FINAL))
        self.assertEqual((mech.iterations, mech.gs2_flag), (4096, "n"))
        self.assertIsNone(mech.channel_binding_type)
        self.assertEqual((mech.weak_iterations, mech.warnings), (False, []))

    def test_rfc7677_sha256(self):
        """The RFC 7677 §3 SCRAM-SHA-256 example: exact messages, server-final verifies."""
        mech = Scram("SCRAM-SHA-256", "user", "pencil", nonce=RFC7677_NONCE)
        self.assertEqual(mech.initial_response(), RFC7677_CLIENT_FIRST)
        self.assertEqual(mech.respond(RFC7677_SERVER_FIRST), RFC7677_CLIENT_FINAL)
        self.assertIsNone(mech.verify_success(RFC7677_SERVER_FINAL))

    def test_sha512_round_trip_scramp(self):
        """SCRAM-SHA-512 completes against scramp's server, which checks the proof."""
        mech = Scram("SCRAM-SHA-512", "user", "pencil")
        run_with_scramp(self, mech, "SCRAM-SHA-512", "pencil")

    def test_sha512_round_trip_own_server(self):
        """SCRAM-SHA-512 completes against a server computed from RFC 5802 §3."""
        mech = Scram("SCRAM-SHA-512", "user", "pencil")
        run_with(mech, Server("SCRAM-SHA-512", b"pencil"))

    @settings(max_examples=60, deadline=None)
    @given(
        name=st.sampled_from(sasl.MECHANISMS[:-1]),
        username=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1),
        password=st.text(
            st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=40
        ),
        salt=st.binary(min_size=1, max_size=32),
        iterations=st.integers(1, 64),
        cb_type=st.sampled_from(["tls-exporter", "tls-server-end-point", "tls-unique"]),
    )
    def test_round_trip_property(self, name, username, password, salt, iterations, cb_type):
        """Any mechanism, username (with = and , escaped), ASCII password, salt and small
        iteration count: the exchange completes against the independent server."""
        mech = Scram(
            name, username, password, channel_binding=(cb_type, CB_DATA), server_offers_plus=True
        )
        server = Server(name, password.encode(), salt, iterations, cb_data=CB_DATA)
        run_with(mech, server)
        self.assertEqual(mech.weak_iterations, iterations < 4096)


class ChannelBindingTests(SynchronousTestCase):
    def client_final(self, mech):
        mech.initial_response()
        return mech.respond(RFC5802_SERVER_FIRST)

    def test_n_without_binding_data(self):
        """No binding data (plaintext): flag n, c=biws (base64 of "n,,")."""
        mech = rfc5802()
        self.assertEqual(mech.gs2_flag, "n")
        self.assertTrue(self.client_final(mech).startswith(b"c=biws,r="))

    def test_y_when_server_offers_no_plus(self):
        """Binding data available, a non-PLUS mechanism, and the server offers no -PLUS:
        flag y, c=eSws (base64 of "y,,"), no binding data mixed in."""
        for cb_type in ("tls-exporter", "tls-server-end-point", "tls-unique"):
            mech = rfc5802(channel_binding=(cb_type, CB_DATA), server_offers_plus=False)
            self.assertEqual(mech.initial_response(), b"y,,n=user,r=" + RFC5802_NONCE.encode())
            self.assertEqual((mech.gs2_flag, mech.channel_binding_type), ("y", None))
            self.assertTrue(mech.respond(RFC5802_SERVER_FIRST).startswith(b"c=eSws,r="))

    def test_n_when_server_offers_plus_but_plain_scram_chosen(self):
        """Binding data, server offers -PLUS, but a plain SCRAM mechanism was chosen: flag n
        (y would make such a server refuse, RFC 5802 §6)."""
        mech = rfc5802(channel_binding=("tls-unique", CB_DATA), server_offers_plus=True)
        self.assertEqual(mech.gs2_flag, "n")
        self.assertTrue(self.client_final(mech).startswith(b"c=biws,r="))

    def test_empty_binding_data_is_none(self):
        """Empty binding data counts as none: flag n for a plain SCRAM mechanism."""
        self.assertEqual(rfc5802(channel_binding=("tls-unique", b"")).gs2_flag, "n")

    def test_p_for_each_type(self):
        """-PLUS: flag p=<type> in client-first; c= is base64(gs2-header + binding data)."""
        expected = {
            "tls-exporter": "cD10bHMtZXhwb3J0ZXIsLIoBYmluZGluZy1kYXRh/w==",
            "tls-server-end-point": "cD10bHMtc2VydmVyLWVuZC1wb2ludCwsigFiaW5kaW5nLWRhdGH/",
            "tls-unique": "cD10bHMtdW5pcXVlLCyKAWJpbmRpbmctZGF0Yf8=",
        }
        for cb_type, c in expected.items():
            self.assertEqual(
                base64.b64decode(c), b"p=" + cb_type.encode() + b",," + CB_DATA, cb_type
            )
            mech = Scram(
                "SCRAM-SHA-1-PLUS",
                "user",
                "pencil",
                nonce=RFC5802_NONCE,
                channel_binding=(cb_type, CB_DATA),
                server_offers_plus=True,
            )
            self.assertEqual((mech.gs2_flag, mech.channel_binding_type), ("p", cb_type))
            self.assertEqual(
                mech.initial_response(),
                b"p=" + cb_type.encode() + b",,n=user,r=" + RFC5802_NONCE.encode(),
            )
            self.assertTrue(self.client_final(mech).startswith(b"c=" + c.encode() + b",r="))

    def test_plus_round_trip_scramp(self):
        """SCRAM-SHA-256-PLUS with tls-server-end-point and tls-unique completes against
        scramp's server holding the same binding data."""
        for cb_type in ("tls-server-end-point", "tls-unique"):
            mech = Scram("SCRAM-SHA-256-PLUS", "user", "pencil", channel_binding=(cb_type, CB_DATA))
            run_with_scramp(self, mech, "SCRAM-SHA-256-PLUS", "pencil", (cb_type, CB_DATA))

    def test_plus_binding_data_mismatch(self):
        """Different binding data on the server side (a TLS man-in-the-middle): scramp's
        server refuses the client-final."""
        mech = Scram("SCRAM-SHA-256-PLUS", "user", "pencil", channel_binding=("tls-unique", b"a"))
        server_mech = scramp.ScramMechanism("SCRAM-SHA-256-PLUS")
        info = server_mech.make_auth_info("pencil", iteration_count=4096)
        server = server_mech.make_server(lambda u: info, channel_binding=("tls-unique", b"b"))
        server.set_client_first(mech.initial_response().decode())
        client_final = mech.respond(server.get_server_first().encode())
        self.assertRaises(scramp.ScramException, server.set_client_final, client_final.decode())

    def test_y_accepted_by_server_without_binding(self):
        """Flag y completes against a server that does not support channel binding."""
        mech = Scram("SCRAM-SHA-256", "user", "pencil", channel_binding=("tls-unique", CB_DATA))
        self.assertEqual(mech.gs2_flag, "y")
        run_with_scramp(self, mech, "SCRAM-SHA-256", "pencil")

    def test_y_detects_downgrade(self):
        """Flag y sent to a server that does support binding (its -PLUS names stripped on
        the way): the server refuses, so the downgrade is detected."""
        mech = Scram("SCRAM-SHA-256", "user", "pencil", channel_binding=("tls-unique", CB_DATA))
        server_mech = scramp.ScramMechanism("SCRAM-SHA-256")
        info = server_mech.make_auth_info("pencil", iteration_count=4096)
        server = server_mech.make_server(lambda u: info, channel_binding=("tls-unique", CB_DATA))
        with self.assertRaises(scramp.ScramException) as raised:
            server.set_client_first(mech.initial_response().decode())
        self.assertIn("server-does-support-channel-binding", str(raised.exception))

    def test_plus_without_binding_data(self):
        """A -PLUS mechanism without binding data fails at once: binding needs TLS."""
        for binding in (None, ("tls-unique", b"")):
            with self.assertRaises(SASLFailure) as raised:
                Scram("SCRAM-SHA-256-PLUS", "user", "pencil", channel_binding=binding)
            self.assertEqual(
                str(raised.exception),
                "SASL SCRAM-SHA-256-PLUS: channel binding needs TLS (with channel-binding data)",
            )

    def test_unknown_binding_type_or_mechanism(self):
        """An unknown channel-binding type or mechanism is a programming error."""
        self.assertRaises(ValueError, rfc5802, channel_binding=("tls-foo", CB_DATA))
        self.assertRaises(ValueError, Scram, "SCRAM-MD5", "user", "pencil")
        self.assertRaises(ValueError, Scram, "SCRAM-SHA-1", "user", "pencil", nonce="a,b")


class ServerFirstTests(SynchronousTestCase):
    def refused(self, server_first, mech=None):
        """The SASLFailure raised by respond(server_first)."""
        mech = mech or started()
        with self.assertRaises(SASLFailure) as raised:
            mech.respond(server_first)
        self.assertEqual(raised.exception.error_type, "sasl")
        return str(raised.exception)

    def test_malformed(self):
        """Missing r/s/i, a wrong order, repeated or empty attributes, and non-UTF-8 are
        refused as malformed."""
        nonce = b"r=fyko+d2lbbFgONRv9qkxdawLsrv"
        for message in (
            b"s=QSXCR+Q6sek8bf92,i=4096",
            nonce + b",i=4096",
            nonce + b",s=QSXCR+Q6sek8bf92",
            b"s=QSXCR+Q6sek8bf92," + nonce + b",i=4096",
            nonce + b",i=4096,s=QSXCR+Q6sek8bf92",
            nonce + b",s=QSXCR+Q6sek8bf92,i=4096,r=again",
            nonce + b",s=QSXCR+Q6sek8bf92,i=4096,",
            nonce + b",s=QSXCR+Q6sek8bf92,,i=4096",
            nonce + b",s=QSXCR+Q6sek8bf92,i=4096,xx=1",
            b"",
            b"garbage",
        ):
            self.assertIn("SCRAM: malformed server-first-message", self.refused(message), message)
        self.assertEqual(
            self.refused(nonce + b"\xff,s=QSXCR+Q6sek8bf92,i=4096"),
            "SCRAM: the server-first-message is not valid UTF-8",
        )

    def test_extensions_accepted(self):
        """Optional extensions after i= are accepted (RFC 5802 §7) and count in the
        AuthMessage: the exchange completes."""
        server = Server("SCRAM-SHA-1", b"pencil")
        server.server_first = server.first(RFC5802_CLIENT_FIRST) + b",x=ext,y=z"
        mech = started()
        mech.verify_success(server.final(mech.respond(server.server_first)))

    def test_mandatory_extension(self):
        """An m= mandatory extension is refused."""
        message = b"m=ext," + RFC5802_SERVER_FIRST
        self.assertEqual(
            self.refused(message),
            "SCRAM: the server requires an unsupported mandatory extension (m=)",
        )
        self.assertIn("(m=)", self.refused(RFC5802_SERVER_FIRST + b",m=late"))

    def test_server_error(self):
        """An e= error in place of server-first fails naming the server's error."""
        with self.assertRaises(SASLFailure) as raised:
            started().respond(b"e=unknown-user")
        self.assertEqual(
            str(raised.exception), "SCRAM: the server refused the authentication: unknown-user"
        )
        self.assertEqual(raised.exception.extra, {"scramError": "unknown-user"})

    def test_bad_salt(self):
        """A salt that is not base64, or is empty, is refused."""
        base = b"r=fyko+d2lbbFgONRv9qkxdawLsrv,s=%s,i=4096"
        self.assertIn("salt is not valid base64", self.refused(base % b"not*base64"))
        self.assertIn("salt is not valid base64", self.refused(base % b"QSXCR+Q6sek8bf9"))
        self.assertEqual(self.refused(base % b""), "SCRAM: the salt is empty")

    def test_bad_iteration_count(self):
        """i=0, i=abc, i=-1, i=1.5, leading zeros and empty counts are refused."""
        base = b"r=fyko+d2lbbFgONRv9qkxdawLsrv,s=QSXCR+Q6sek8bf92,i="
        for count in (b"0", b"abc", b"-1", b"1.5", b"04096", b"", b"\xd9\xa1"):
            self.assertIn(
                "SCRAM: the iteration count is not a positive integer",
                self.refused(base + count),
                count,
            )

    def test_nonce_not_extending_ours(self):
        """A server nonce that does not begin with the client nonce is refused."""
        for nonce in (b"somethingelse", b"fyko+d2lbbFgONRv9qkxdaw", b"Xfyko+d2lbbFgONRv9qkxdawL"):
            self.assertEqual(
                self.refused(b"r=" + nonce + b",s=QSXCR+Q6sek8bf92,i=4096"),
                "SCRAM: the server nonce does not begin with the client nonce",
            )

    def test_nonce_equal_to_ours(self):
        """A server nonce equal to the client nonce (nothing added) is refused."""
        self.assertEqual(
            self.refused(b"r=fyko+d2lbbFgONRv9qkxdawL,s=QSXCR+Q6sek8bf92,i=4096"),
            "SCRAM: the server nonce adds nothing to the client nonce",
        )

    def test_huge_iteration_count_refused_without_derivation(self):
        """i=100000000 is refused at once: to_thread is never called."""
        thread = RecordingThread()
        mech = started(to_thread=thread)
        message = b"r=fyko+d2lbbFgONRv9qkxdawLsrv,s=QSXCR+Q6sek8bf92,i=100000000"
        self.assertEqual(
            self.refused(message, mech),
            "SCRAM iteration count 100000000 exceeds the limit of 1000000",
        )
        self.assertEqual(thread.calls, [])
        digits = b"9" * 5000
        self.assertIn("exceeds the limit", self.refused(message[:-9] + digits, started()))

    def test_limit_is_inclusive(self):
        """i=1000000 (the limit) is accepted and derived through to_thread."""
        thread = RecordingThread(run=False)
        d = started(to_thread=thread).respond(
            b"r=fyko+d2lbbFgONRv9qkxdawLsrv,s=QSXCR+Q6sek8bf92,i=%d" % (MAX_ITERATIONS,)
        )
        self.assertNoResult(d)
        self.assertEqual(len(thread.calls), 1)

    def test_weak_iterations(self):
        """A count below 4096 proceeds, flagged in weak_iterations and warnings."""
        mech = started()
        server = Server("SCRAM-SHA-1", b"pencil", iterations=1000)
        server.first(RFC5802_CLIENT_FIRST)
        mech.verify_success(server.final(mech.respond(server.server_first)))
        self.assertTrue(mech.weak_iterations)
        self.assertEqual(
            mech.warnings, ["SCRAM iteration count 1000 is below the recommended minimum of 4096"]
        )

    def test_failed_exchange_stays_failed(self):
        """After a refusal, further messages fail too."""
        mech = started()
        self.refused(b"e=other-error", mech)
        self.assertIn("already failed", self.refused(RFC5802_SERVER_FIRST, mech))
        self.assertRaises(SASLFailure, mech.verify_success, RFC5802_SERVER_FINAL)


class ServerFinalTests(SynchronousTestCase):
    def failure(self, f, *args):
        with self.assertRaises(SASLFailure) as raised:
            f(*args)
        return str(raised.exception)

    def test_wrong_signature(self):
        """A server signature that does not match fails: the server lacks the password."""
        wrong = b"v=" + base64.b64encode(b"\0" * 20)
        for data in (wrong, b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ", b"v=", b"v=*"):
            self.assertEqual(
                self.failure(finished().verify_success, data),
                "SCRAM server signature mismatch: the server does not know the password "
                "(or a man-in-the-middle)",
            )

    def test_success_without_verifier(self):
        """<success/> without data (None or empty) fails: no server signature."""
        for data in (None, b""):
            self.assertEqual(
                self.failure(finished().verify_success, data),
                "SCRAM: the server sent <success/> without a server signature",
            )

    def test_success_before_exchange_finished(self):
        """<success/> right after client-first (or before anything) fails."""
        for mech in (rfc5802(), started()):
            self.assertEqual(
                self.failure(mech.verify_success, RFC5802_SERVER_FINAL),
                "SCRAM: the server sent <success/> before the exchange finished",
            )

    def test_success_while_deriving(self):
        """<success/> while the key derivation is still running fails."""
        mech = started(to_thread=RecordingThread(run=False))
        mech.respond(RFC5802_SERVER_FIRST)
        self.assertIn("before the exchange finished", self.failure(mech.verify_success, None))

    def test_verifier_as_challenge(self):
        """RFC 6120 §6.4.6 variant: v= as a final challenge is verified and answered with
        an empty response; an empty <success/> afterwards is accepted."""
        mech = finished()
        self.assertEqual(mech.respond(RFC5802_SERVER_FINAL), b"")
        self.assertIsNone(mech.verify_success(None))

    def test_verifier_as_challenge_and_success(self):
        """v= both as a challenge and in <success/>: both checked, accepted when equal."""
        mech = finished()
        mech.respond(RFC5802_SERVER_FINAL)
        mech.verify_success(RFC5802_SERVER_FINAL)
        mech = finished()
        mech.respond(RFC5802_SERVER_FINAL)
        self.assertIn("mismatch", self.failure(mech.verify_success, b"v=AAAA"))

    def test_wrong_verifier_as_challenge(self):
        """A wrong v= in a challenge fails there; a later empty <success/> fails too."""
        mech = finished()
        self.assertIn("mismatch", self.failure(mech.respond, b"v=AAAA"))
        self.assertIn("already failed", self.failure(mech.verify_success, None))

    def test_challenge_after_verification(self):
        """A further challenge after the verifier fails."""
        mech = finished()
        mech.respond(RFC5802_SERVER_FINAL)
        self.assertEqual(
            self.failure(mech.respond, b"v=again"),
            "SCRAM: unexpected challenge after the server signature",
        )

    def test_challenge_out_of_turn(self):
        """A challenge before the client-first-message was produced fails."""
        self.assertIn("unexpected challenge", self.failure(rfc5802().respond, RFC5802_SERVER_FIRST))

    def test_server_error(self):
        """e= in server-final, in <success/> or as a challenge, fails naming the error."""
        for deliver in ("verify_success", "respond"):
            mech = finished()
            with self.assertRaises(SASLFailure) as raised:
                getattr(mech, deliver)(b"e=invalid-proof")
            self.assertEqual(
                str(raised.exception), "SCRAM: the server refused the authentication: invalid-proof"
            )
            self.assertEqual(raised.exception.extra, {"scramError": "invalid-proof"})

    def test_malformed_server_final(self):
        """A server-final that is neither v= nor e= fails as malformed."""
        self.assertIn("malformed server-final", self.failure(finished().verify_success, b"x=1"))
        self.assertIn("malformed server-final", self.failure(finished().verify_success, b"junk"))

    def test_server_error_text_sanitised(self):
        """The server's error text is reduced to printable ASCII and truncated."""
        mech = finished()
        message = self.failure(mech.verify_success, "e=\u202ebad\nthing".encode() + b"x" * 200)
        self.assertTrue(message.startswith("SCRAM: the server refused the authentication: ?bad?"))
        self.assertTrue(message.endswith("..."))
        self.assertLess(len(message), 130)


class ThreadTests(SynchronousTestCase):
    def test_derivation_through_to_thread(self):
        """With to_thread, respond returns a Deferred firing with the client-final, and the
        derivation ran through to_thread exactly once."""
        thread = RecordingThread()
        mech = started(to_thread=thread)
        d = mech.respond(RFC5802_SERVER_FIRST)
        self.assertIsInstance(d, Deferred)
        self.assertEqual(self.successResultOf(d), RFC5802_CLIENT_FINAL)
        self.assertEqual(len(thread.calls), 1)
        mech.verify_success(RFC5802_SERVER_FINAL)

    def test_fake_to_thread_succeed(self):
        """A to_thread of lambda f: succeed(f()) gives the RFC 5802 client-final."""
        mech = started(to_thread=lambda f: succeed(f()))
        self.assertEqual(
            self.successResultOf(mech.respond(RFC5802_SERVER_FIRST)), RFC5802_CLIENT_FINAL
        )

    def test_derivation_failure(self):
        """A failing to_thread fails the Deferred and the exchange."""
        mech = started(to_thread=lambda f: fail(MemoryError()))
        self.failureResultOf(mech.respond(RFC5802_SERVER_FIRST), MemoryError)
        self.assertRaises(SASLFailure, mech.verify_success, RFC5802_SERVER_FINAL)

    def test_without_to_thread_synchronous(self):
        """Without to_thread, respond returns bytes."""
        self.assertIsInstance(started().respond(RFC5802_SERVER_FIRST), bytes)


class CredentialTests(SynchronousTestCase):
    def test_repr_has_no_secret(self):
        """repr shows neither password nor username, before or after the exchange; no
        attribute holds the password once the keys are derived."""
        mech = Scram("SCRAM-SHA-256", "alice", "pencil-s3cret", nonce=RFC7677_NONCE)
        for _ in range(2):
            self.assertNotIn("pencil-s3cret", repr(mech))
            self.assertNotIn("alice", repr(mech))
            mech.initial_response()
        mech.respond(b"r=" + RFC7677_NONCE.encode() + b"x,s=QSXCR+Q6sek8bf92,i=4096")
        self.assertIn("SCRAM-SHA-256", repr(mech))
        for value in vars(mech).values():
            self.assertNotIn(b"pencil-s3cret", repr(value).encode())

    def test_username_escaping(self):
        """= and , in the username become =3D and =2C."""
        self.assertEqual(escape_username("a=b,c=,"), "a=3Db=2Cc=3D=2C")
        mech = Scram("SCRAM-SHA-1", "a=b,c", "pencil", nonce="abc")
        self.assertEqual(mech.initial_response(), b"n,,n=a=3Db=2Cc,r=abc")

    def test_default_nonce(self):
        """The default nonce is 24 random bytes in base64: 32 printable characters, no
        comma, different each time."""
        nonces = set()
        for _ in range(5):
            message = Scram("SCRAM-SHA-1", "user", "pencil").initial_response()
            nonce = message.split(b",r=", 1)[1]
            self.assertEqual(len(nonce), 32)
            self.assertNotIn(b",", nonce)
            nonces.add(nonce)
        self.assertEqual(len(nonces), 5)

    def test_saslprep_rfc4013_examples(self):
        """The RFC 4013 §3 examples."""
        self.assertEqual(saslprep("I\u00adX"), "IX")
        self.assertEqual(saslprep("user"), "user")
        self.assertEqual(saslprep("USER"), "USER")
        self.assertEqual(saslprep("\u00aa"), "a")
        self.assertEqual(saslprep("\u2168"), "IX")
        self.assertRaises(ValueError, saslprep, "\u0007")
        self.assertRaises(ValueError, saslprep, "\u0627\u0031")

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=12))
    def test_saslprep_matches_scramp(self, text):
        """Our SASLprep agrees with scramp's on any text (result or refusal)."""
        try:
            expected = scramp_saslprep(text)
        except scramp.ScramException:
            self.assertRaises(ValueError, saslprep, text)
        else:
            self.assertEqual(saslprep(text), expected)

    def test_password_prepared_with_saslprep(self):
        """The password is SASLprep-ed before derivation: a soft hyphen is dropped and a
        full-width letter folded (as Prosody hashes), with no warning."""
        mech = Scram("SCRAM-SHA-256", "user", "pen\u00adcil\uff21")
        run_with(mech, Server("SCRAM-SHA-256", b"pencilA"))
        self.assertEqual(mech.warnings, [])

    def test_unpreparable_password_used_raw(self):
        """A password SASLprep refuses (a control character) is used as raw UTF-8, with a
        warning that does not quote it."""
        mech = Scram("SCRAM-SHA-256", "user", "bell\u0007pw")
        run_with(mech, Server("SCRAM-SHA-256", b"bell\x07pw"))
        self.assertEqual(
            mech.warnings,
            ["SCRAM: the password is not valid under SASLprep; it was used unprepared"],
        )


class SaslTests(SynchronousTestCase):
    OFFERED = ("PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")

    def test_every_mechanism_implemented(self):
        """Every mechanism of SPEC §4's preference has a class, in that order."""
        self.assertEqual(tuple(sasl.CLASSES), sasl.MECHANISMS)

    def test_choose_without_binding(self):
        """Without can_bind, -PLUS mechanisms are skipped by default."""
        self.assertEqual(sasl.choose(None, self.OFFERED), "SCRAM-SHA-256")
        self.assertEqual(sasl.choose(None, ("SCRAM-SHA-1", "PLAIN")), "SCRAM-SHA-1")

    def test_choose_with_binding(self):
        """With can_bind, the strongest -PLUS mechanism offered is chosen."""
        self.assertEqual(sasl.choose(None, self.OFFERED, can_bind=True), "SCRAM-SHA-256-PLUS")
        self.assertEqual(
            sasl.choose(None, ("SCRAM-SHA-1", "SCRAM-SHA-512"), can_bind=True), "SCRAM-SHA-512"
        )

    def test_choose_only_plus_without_binding(self):
        """Only -PLUS offered and no binding: the reference 'No supported' wording."""
        with self.assertRaises(SASLFailure) as raised:
            sasl.choose(None, ("SCRAM-SHA-1-PLUS",))
        self.assertEqual(
            str(raised.exception), "No supported SASL mechanism. Available: SCRAM-SHA-1-PLUS"
        )

    def test_choose_requested_plus(self):
        """A requested -PLUS: chosen with can_bind; without, it fails: binding needs TLS."""
        self.assertEqual(
            sasl.choose("SCRAM-SHA-256-PLUS", self.OFFERED, can_bind=True), "SCRAM-SHA-256-PLUS"
        )
        with self.assertRaises(SASLFailure) as raised:
            sasl.choose("SCRAM-SHA-256-PLUS", ("PLAIN", "SCRAM-SHA-1"))
        self.assertEqual(
            str(raised.exception),
            "SASL SCRAM-SHA-256-PLUS: channel binding needs TLS (with channel-binding data). "
            "Available: PLAIN, SCRAM-SHA-1",
        )
        self.assertEqual(raised.exception.error_type, "sasl")

    def test_choose_requested(self):
        """A requested mechanism: chosen when offered (even if weaker), else the reference
        'SASL <NAME> not supported' wording."""
        self.assertEqual(sasl.choose("SCRAM-SHA-1", self.OFFERED), "SCRAM-SHA-1")
        self.assertEqual(sasl.choose("PLAIN", self.OFFERED, can_bind=True), "PLAIN")
        for requested in ("SCRAM-SHA-512", "SCRAM-SHA-512-PLUS"):
            with self.assertRaises(SASLFailure) as raised:
                sasl.choose(requested, self.OFFERED, can_bind=True)
            self.assertEqual(
                str(raised.exception),
                f"SASL {requested} not supported. Available: PLAIN, SCRAM-SHA-1, SCRAM-SHA-256, "
                "SCRAM-SHA-256-PLUS",
            )

    def test_server_offers_plus(self):
        """server_offers_plus: true when any SCRAM -PLUS mechanism is offered."""
        self.assertTrue(sasl.server_offers_plus(self.OFFERED))
        self.assertFalse(sasl.server_offers_plus(("PLAIN", "SCRAM-SHA-1")))
        self.assertFalse(sasl.server_offers_plus(()))

    def test_create(self):
        """create passes the keyword options to SCRAM; PLAIN ignores them."""
        thread = RecordingThread()
        mech = sasl.create(
            "SCRAM-SHA-1-PLUS",
            "user",
            "pencil",
            channel_binding=("tls-exporter", CB_DATA),
            server_offers_plus=True,
            to_thread=thread,
        )
        self.assertIsInstance(mech, Scram)
        self.assertEqual(
            (mech.name, mech.gs2_flag, mech.channel_binding_type),
            ("SCRAM-SHA-1-PLUS", "p", "tls-exporter"),
        )
        plain = sasl.create("PLAIN", "user", "pencil", channel_binding=None, to_thread=thread)
        self.assertEqual(plain.initial_response(), b"\0user\0pencil")

    def test_mechanisms_construct_with_credentials(self):
        """Every mechanism class is constructed as cls(username, password)."""
        for name, cls in sasl.CLASSES.items():
            if name.endswith("-PLUS"):
                self.assertRaises(SASLFailure, cls, "user", "pencil")
            else:
                self.assertEqual(cls("user", "pencil").name, name)

    def test_scram_exchange_through_create(self):
        """A mechanism from create runs the RFC 7677 exchange."""
        mech = sasl.create("SCRAM-SHA-256", "user", "pencil", nonce=RFC7677_NONCE)
        self.assertEqual(mech.initial_response(), RFC7677_CLIENT_FIRST)
        self.assertEqual(mech.respond(RFC7677_SERVER_FIRST), RFC7677_CLIENT_FINAL)
        mech.verify_success(RFC7677_SERVER_FINAL)
