"""
End to end against a real ejabberd 23.01: HTTP requests through treq to the
service on a real listening port, probing ejabberd servers the tests started
(tests/support/ejabberd.py) -- /connect and the auth endpoints (/login, /roster,
/message).

Three servers:

* ``ejabberd`` (tests/conftest.py): plaintext only, passwords stored plain, so
  ejabberd offers PLAIN and SCRAM-SHA-512/256/1 (no -PLUS without TLS).
* ``ejabberd_scram`` (below): passwords stored as SCRAM (``auth_scram_hash``
  left at its default, sha): ejabberd offers PLAIN and SCRAM-SHA-1 only.
* ``ejabberd_tls`` (below): a certificate from the test CA
  (tests/support/certs.py); optional STARTTLS on ``port`` (TLS 1.3, as negotiated by
  default) and direct TLS (XEP-0368) on ``direct_port``, restricted to TLS 1.2
  so that ``tls-unique`` exists there.

What ejabberd 23.01 does with SCRAM -PLUS (established by these tests): over
TLS it offers SCRAM-SHA-512/256/1-PLUS, advertises no channel-binding types
(no XEP-0440 ``<sasl-channel-binding>``), and accepts ``tls-unique`` only:
``tls-exporter`` and ``tls-server-end-point`` fail with ``not-authorized`` and
the text "Invalid channel binding".  On TLS 1.2 the default login therefore
works (SCRAM-SHA-512-PLUS with tls-unique); on TLS 1.3 the service's RFC
default (tls-exporter) is refused and tls-unique, undefined for TLS 1.3, is
not computed, so no -PLUS login can succeed there, while the plain SCRAM
mechanisms log in.

ejabberd missing: every test here is skipped, or fails when ``CI=true``
(the ``ejabberd_installed`` fixture).
"""

import base64
import hashlib
import json

import pytest
import pytest_twisted
import treq
from certs import session_certs
from conftest import start_service
from ejabberd import EjabberdServer

from portofcall_xmpp.saslstep import WARN_PLAINTEXT_CREDENTIALS, WARN_SCRAM_WITHOUT_TLS

DOMAIN = "localhost"

AUTH_PHASES = [
    "stream_opened",
    "{sasl}",
    "authenticated",
    "stream_restarted",
    "resource_bound",
    "session_established",
]

#: What ejabberd 23.01 offers without TLS, passwords stored plain (its order).
PLAIN_STORE_MECHANISMS = ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256", "SCRAM-SHA-1"]
#: ... and after TLS (STARTTLS or direct): the -PLUS variants too.
TLS_MECHANISMS = [
    "PLAIN",
    "SCRAM-SHA-512-PLUS",
    "SCRAM-SHA-512",
    "SCRAM-SHA-256-PLUS",
    "SCRAM-SHA-256",
    "SCRAM-SHA-1-PLUS",
    "SCRAM-SHA-1",
]
#: A TLS 1.2-only listener (fast_tls option names; the first three are
#: ejabberd's defaults, which a listener's protocol_options replaces).
TLS12_ONLY = {
    "protocol_options": ["no_sslv3", "cipher_server_preference", "no_compression", "no_tlsv1_3"]
}
INVALID_CHANNEL_BINDING = "Invalid channel binding"


def phases(mechanism, *, tls=None, extra=()):
    """The auth phases of a successful login with C{mechanism}."""
    sasl = "sasl_%s_sent" % mechanism.lower().replace("-", "_")
    steps = [step.format(sasl=sasl) for step in AUTH_PHASES]
    if tls == "starttls":
        steps.insert(1, "starttls_upgraded")
    elif tls == "direct":
        steps.insert(0, "tls_connected")
    return steps + list(extra)


async def post(service, path, body):
    response = await treq.post(service.url(path), json=body)
    return response.code, json.loads(await response.content())


def auth(server, user="alice", **extra):
    """A request body for an auth endpoint, logging in as C{user}."""
    return {
        "host": server.host,
        "port": server.port,
        "domain": server.domain,
        "username": user,
        "password": server.users[user],
        **extra,
    }


def fingerprint(issued):
    digest = hashlib.sha256(issued.der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


# --------------------------------------------------------------------------
# Fixtures: two more ejabberd servers and a service that trusts the test CA


class Server:
    """What the fixtures below yield (the parts of EjabberdInfo the tests use)."""

    def __init__(self, server, users, **extra):
        self.server = server
        self.host = server.host
        self.port = server.c2s_port
        self.direct_port = server.c2s_tls_port
        self.domain = server.domain
        self.users = users
        self.__dict__.update(extra)


def _start(base_dir, users, **options):
    server = EjabberdServer(base_dir, **options)
    server.start()
    try:
        for user, password in users.items():
            server.register(user, DOMAIN, password)
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def ejabberd_scram(ejabberd_installed, tmp_path_factory):
    """ejabberd storing passwords as SCRAM (sha, the default hash); alice only."""
    users = {"alice": "alice-scram-pw"}
    server = _start(tmp_path_factory.mktemp("ejabberd-scram"), users, password_format="scram")
    try:
        yield Server(server, users)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ejabberd_tls(ejabberd_installed, tmp_path_factory):
    """
    ejabberd with the test CA's C{localhost} certificate (key + leaf +
    intermediate): optional STARTTLS on C{.port}, direct TLS limited to
    TLS 1.2 on C{.direct_port}; passwords stored plain; alice only.
    C{.certs} is the certificate bundle (C{.ca_path} the root).
    """
    certs = session_certs()
    users = {"alice": "alice-tls-pw"}
    server = _start(
        tmp_path_factory.mktemp("ejabberd-tls"),
        users,
        certfiles=[str(certs.localhost.combined_path)],
        starttls=True,
        direct_tls=True,
        direct_tls_options=TLS12_ONLY,
    )
    try:
        yield Server(server, users, certs=certs)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ca_service():
    """The API with --ca-file naming the test root (and loopback allowed)."""
    ca = str(session_certs().ca_path)
    running = start_service("--allow-private", "--read-timeout", "3000", "--ca-file", ca)
    try:
        yield running
    finally:
        running.stop()


# --------------------------------------------------------------------------
# Plaintext ejabberd, passwords stored plain


@pytest_twisted.ensureDeferred
async def test_connect_plaintext(ejabberd, service):
    """/connect: ejabberd's header, PLAIN and SCRAM-SHA-1/256/512, no TLS."""
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": ejabberd.host, "port": ejabberd.port, "domain": DOMAIN},
    )
    assert code == 200, body
    assert body["success"] is True, body
    assert body["message"] == "XMPP server reachable"
    assert (body["host"], body["port"], body["domain"]) == (ejabberd.host, ejabberd.port, DOMAIN)
    assert body["serverFrom"] == DOMAIN
    assert body["xmppVersion"] == "1.0"
    assert body["streamId"]
    assert body["saslMechanisms"] == PLAIN_STORE_MECHANISMS
    assert body["tls"] == {"available": False, "required": False, "negotiated": False}
    assert body["features"] == []
    assert body["featureNamespaces"] == ["urn:ietf:params:xml:ns:xmpp-sasl"]
    assert body["compressionMethods"] == []
    assert body["raw"].startswith("<?xml version='1.0'?><stream:stream ")
    assert body["raw"].endswith("</stream:features>")
    assert "phases" not in body


@pytest_twisted.ensureDeferred
async def test_connect_unknown_domain(ejabberd, service):
    """A domain ejabberd does not serve: stream_error host-unknown."""
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": ejabberd.host, "port": ejabberd.port, "domain": "nowhere.example"},
    )
    assert code == 200
    assert body["success"] is False
    assert body["errorType"] == "stream_error", body
    assert body["error"] == "XMPP stream error: host-unknown"
    assert "<stream:stream" in body["raw"]


@pytest_twisted.ensureDeferred
async def test_login_default_mechanism(ejabberd, service):
    """No mechanism asked for: the strongest offered, SCRAM-SHA-512, logs in."""
    code, body = await post(service, "/api/xmpp/login", auth(ejabberd, resource="dflt"))
    assert code == 200
    assert body["success"] is True, body
    assert body["message"] == "XMPP login successful"
    assert body["mechanism"] == "SCRAM-SHA-512"
    assert body["channelBinding"] is None
    assert body["jid"] == "alice@localhost/dflt"
    assert body["domain"] == DOMAIN
    assert body["phases"] == phases("SCRAM-SHA-512")
    assert list(body["timings"]) == body["phases"]
    assert body["saslMechanisms"] == PLAIN_STORE_MECHANISMS
    assert {"resource-binding", "session"} <= set(body["features"])
    assert body["tls"]["negotiated"] is False
    assert body["warnings"] == [WARN_SCRAM_WITHOUT_TLS]


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
@pytest_twisted.ensureDeferred
async def test_login_mechanism(ejabberd, service, mechanism):
    """
    Each mechanism ejabberd offers logs in (SCRAM: server signature verified);
    over plaintext (tls: "none"), PLAIN and SCRAM each with their warning.
    """
    request = auth(ejabberd, mechanism=mechanism, resource=mechanism, tls="none")
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["mechanism"] == mechanism
    assert body["jid"] == "alice@localhost/" + mechanism
    assert body["phases"] == phases(mechanism)
    in_clear = WARN_PLAINTEXT_CREDENTIALS if mechanism == "PLAIN" else WARN_SCRAM_WITHOUT_TLS
    assert body["warnings"] == [in_clear]


@pytest_twisted.ensureDeferred
async def test_login_plain_refused_in_clear(ejabberd, service):
    """tls: "auto" without STARTTLS on offer: PLAIN is not sent; errorType tls."""
    request = auth(ejabberd, mechanism="PLAIN", transcript=True)
    code, body = await post(service, "/api/xmpp/login", request)
    assert code == 200
    assert body["errorType"] == "tls", body
    assert 'tls: "none"' in body["error"]
    assert body["phases"] == ["stream_opened"]
    assert not any("<auth" in entry["xml"] for entry in body["transcript"])


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", None])
@pytest_twisted.ensureDeferred
async def test_login_wrong_password(ejabberd, service, mechanism):
    """A wrong password: sasl not-authorized, with ejabberd's text."""
    request = {**auth(ejabberd, tls="none"), "password": "wrong-password"}
    if mechanism:
        request["mechanism"] = mechanism
    code, body = await post(service, "/api/xmpp/login", request)
    assert code == 200
    assert body["success"] is False
    assert body["errorType"] == "sasl", body
    assert body["error"] == "SASL authentication failed: not-authorized"
    assert body["saslCondition"] == "not-authorized"
    assert body["saslText"] == "Invalid username or password"
    assert body["phases"] == phases(mechanism or "SCRAM-SHA-512")[:2]
    assert "wrong-password" not in json.dumps(body)


@pytest_twisted.ensureDeferred
async def test_roster(ejabberd, service):
    """/roster: alice's seeded contacts, with names, subscriptions and every group."""
    code, body = await post(service, "/api/xmpp/roster", auth(ejabberd, resource="roster"))
    assert body["success"] is True, body
    assert body["phases"] == phases("SCRAM-SHA-512", extra=["roster_received"])
    roster = body["roster"]
    expected = ejabberd.rosters["alice"]
    assert roster["total"] == len(expected) == len(roster["contacts"])
    got = {contact["jid"]: contact for contact in roster["contacts"]}
    assert set(got) == {item["jid"] for item in expected}
    for item in expected:
        contact = got[item["jid"]]
        assert contact["name"] == item["name"]
        assert contact["subscription"] == item["subscription"]
        assert contact["ask"] is None
        assert sorted(contact["groups"]) == sorted(item["groups"])


@pytest_twisted.ensureDeferred
async def test_message_to_existing_user(ejabberd, service):
    """/message to an existing (offline) user: sent, no delivery error, and
    ejabberd stored it for the recipient (mod_offline).  The recipient is a
    fresh account, as the seeded ones are shared and must stay unchanged."""
    bob = ejabberd.new_user("bob")
    request = {
        **auth(ejabberd, resource="msg1", mechanism="PLAIN", tls="none"),
        "recipient": bob.jid,
        "message": "hi <&> \u2615",
        "waitMs": 500,
    }
    code, body = await post(service, "/api/xmpp/message", request)
    assert body["success"] is True, body
    assert body["phases"] == phases("PLAIN", extra=["message_sent"])
    assert body["message"]["to"] == bob.jid
    assert body["message"]["body"] == "hi <&> \u2615"
    assert body["message"]["id"].startswith("poc_")
    assert body["deliveryError"] is None
    assert body["deliveryErrorCondition"] is None
    assert body["receipt"]["requested"] is False
    count = ejabberd.server.ctl("get_offline_count", bob.user, bob.domain).stdout
    assert count.strip() == "1"


@pytest_twisted.ensureDeferred
async def test_message_to_missing_user(ejabberd, service):
    """/message to nobody@localhost: ejabberd bounces it as service-unavailable."""
    request = {**auth(ejabberd, resource="msg2"), "recipient": "nobody@localhost"}
    code, body = await post(service, "/api/xmpp/message", request)
    assert body["success"] is True, body
    assert body["phases"] == phases("SCRAM-SHA-512", extra=["message_sent"])
    assert body["deliveryErrorCondition"] == {
        "type": "cancel",
        "condition": "service-unavailable",
        "text": None,
    }
    assert "service-unavailable" in body["deliveryError"]


# --------------------------------------------------------------------------
# ejabberd storing SCRAM hashes


@pytest_twisted.ensureDeferred
async def test_scram_store_connect(ejabberd_scram, service):
    """With SCRAM storage ejabberd offers only the hash it stored: SCRAM-SHA-1."""
    server = ejabberd_scram
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": server.host, "port": server.port, "domain": DOMAIN},
    )
    assert body["success"] is True, body
    assert body["saslMechanisms"] == ["PLAIN", "SCRAM-SHA-1"]


@pytest.mark.parametrize("mechanism", [None, "PLAIN"])
@pytest_twisted.ensureDeferred
async def test_scram_store_login(ejabberd_scram, service, mechanism):
    """The default mechanism is SCRAM-SHA-1 there; PLAIN is checked against the hash."""
    request = auth(ejabberd_scram, tls="none")
    if mechanism:
        request["mechanism"] = mechanism
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["mechanism"] == (mechanism or "SCRAM-SHA-1")
    assert body["phases"] == phases(body["mechanism"])
    assert body["saslMechanisms"] == ["PLAIN", "SCRAM-SHA-1"]
    assert body["jid"] == "alice@localhost/portofcall"


@pytest_twisted.ensureDeferred
async def test_scram_store_wrong_password(ejabberd_scram, service):
    """SCRAM-SHA-1 with a wrong password: not-authorized."""
    request = {**auth(ejabberd_scram), "password": "wrong-password"}
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["errorType"] == "sasl", body
    assert body["error"] == "SASL authentication failed: not-authorized"
    assert body["phases"] == ["stream_opened", "sasl_scram_sha_1_sent"]


@pytest_twisted.ensureDeferred
async def test_scram_store_unoffered_mechanism(ejabberd_scram, service):
    """SCRAM-SHA-256 asked for but not offered: sasl, before anything is sent."""
    request = auth(ejabberd_scram, mechanism="SCRAM-SHA-256")
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["success"] is False
    assert body["errorType"] == "sasl", body
    assert body["error"].endswith("Available: PLAIN, SCRAM-SHA-1")
    assert body["phases"] == ["stream_opened"]


# --------------------------------------------------------------------------
# ejabberd with TLS, a service that trusts the test CA


def check_certificate(tls, certs, *, verified=True):
    cert = tls["certificate"]
    assert cert["subjectAltNames"] == ["DNS:localhost"]
    assert "CN=localhost" in cert["subject"]
    assert "Intermediate" in cert["issuer"]
    assert cert["fingerprintSha256"] == fingerprint(certs.localhost)
    assert cert["matchesDomain"] is True
    assert cert["verified"] is verified
    if verified:
        assert cert["verifyError"] is None
    else:
        assert "unable to get local issuer certificate" in cert["verifyError"]


@pytest_twisted.ensureDeferred
async def test_tls_connect_starttls(ejabberd_tls, ca_service):
    """/connect (tls auto): STARTTLS negotiated (TLS 1.3), the certificate
    verified for localhost, and the -PLUS mechanisms offered after TLS."""
    server = ejabberd_tls
    code, body = await post(
        ca_service,
        "/api/xmpp/connect",
        {"host": server.host, "port": server.port, "domain": DOMAIN},
    )
    assert body["success"] is True, body
    tls = body["tls"]
    assert tls["available"] is True
    assert tls["required"] is False
    assert tls["negotiated"] is True
    assert tls["protocol"] == "TLSv1.3"
    assert isinstance(tls["cipher"], str) and tls["cipher"]
    check_certificate(tls, server.certs)
    # Before TLS (top level): no -PLUS; after it: every SCRAM also as -PLUS.
    assert body["saslMechanisms"] == PLAIN_STORE_MECHANISMS
    assert body["features"] == ["starttls"]
    assert tls["saslMechanisms"] == TLS_MECHANISMS
    # ejabberd 23.01 does not advertise its channel-binding types (XEP-0440).
    assert body.get("saslChannelBindings", []) == []
    assert "<sasl-channel-binding" not in body["raw"]


@pytest_twisted.ensureDeferred
async def test_tls_connect_none(ejabberd_tls, ca_service):
    """tls none: STARTTLS is reported as available, not negotiated."""
    server = ejabberd_tls
    code, body = await post(
        ca_service,
        "/api/xmpp/connect",
        {"host": server.host, "port": server.port, "domain": DOMAIN, "tls": "none"},
    )
    assert body["success"] is True, body
    assert body["tls"] == {"available": True, "required": False, "negotiated": False}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
@pytest_twisted.ensureDeferred
async def test_tls_login_starttls(ejabberd_tls, ca_service, mechanism):
    """/login (tls auto) over STARTTLS with a mechanism that binds no channel:
    starttls_upgraded, verified, no plaintext warning."""
    request = auth(ejabberd_tls, mechanism=mechanism, resource="tls-" + mechanism)
    code, body = await post(ca_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["phases"] == phases(mechanism, tls="starttls")
    assert body["mechanism"] == mechanism
    assert body["channelBinding"] is None
    assert body["saslMechanisms"] == TLS_MECHANISMS
    assert body["tls"]["negotiated"] is True
    assert body["tls"]["protocol"] == "TLSv1.3"
    check_certificate(body["tls"], ejabberd_tls.certs)
    assert body["warnings"] == []


@pytest_twisted.ensureDeferred
async def test_tls13_default_login_plus_falls_back(ejabberd_tls, ca_service):
    """
    With no mechanism the service picks SCRAM-SHA-512-PLUS and, as ejabberd
    advertises no binding type, the RFC default for TLS 1.3 (tls-exporter);
    ejabberd 23.01 refuses it ("Invalid channel binding"), so the service
    retries once on the same stream with tls-unique computed as ejabberd does
    on TLS 1.3, logs in, and says all of this in warnings.
    """
    code, body = await post(ca_service, "/api/xmpp/login", auth(ejabberd_tls))
    assert body["tls"]["protocol"] == "TLSv1.3"
    assert body["success"] is True, body
    assert body["mechanism"] == "SCRAM-SHA-512-PLUS"
    assert body["channelBinding"] == "tls-unique"
    assert body["phases"][:4] == [
        "stream_opened",
        "starttls_upgraded",
        "sasl_scram_sha_512_plus_sent",
        "sasl_scram_sha_512_plus_sent",
    ]
    assert any("refused channel binding tls-exporter" in w for w in body["warnings"])
    assert any("Invalid channel binding" in w for w in body["warnings"])
    assert any("undefined on TLS 1.3" in w for w in body["warnings"])


@pytest_twisted.ensureDeferred
async def test_tls13_failed_plus_login_reports_channel_binding(ejabberd_tls, ca_service):
    """
    A -PLUS login that fails says which mechanism and binding it tried last
    (SPEC section 4: the binding type used is reported as channelBinding).
    """
    request = {**auth(ejabberd_tls, resource="cb"), "password": "wrong-password"}
    code, body = await post(ca_service, "/api/xmpp/login", request)
    assert body["errorType"] == "sasl", body
    assert body["mechanism"] == "SCRAM-SHA-512-PLUS"
    assert body["channelBinding"] == "tls-unique", body
    assert body["phases"][-1] == "sasl_scram_sha_512_plus_sent"


@pytest.mark.parametrize("binding", ["tls-exporter", "tls-server-end-point"])
@pytest_twisted.ensureDeferred
async def test_tls13_plus_binding_refused(ejabberd_tls, ca_service, binding):
    """ejabberd 23.01 refuses every binding type but tls-unique."""
    request = auth(ejabberd_tls, mechanism="SCRAM-SHA-256-PLUS", channelBinding=binding)
    code, body = await post(ca_service, "/api/xmpp/login", request)
    assert body["tls"]["protocol"] == "TLSv1.3"
    assert body["errorType"] == "sasl", body
    assert body["saslText"] == INVALID_CHANNEL_BINDING
    assert body["phases"][-1] == "sasl_scram_sha_256_plus_sent"


@pytest_twisted.ensureDeferred
async def test_tls13_tls_unique_compat(ejabberd_tls, ca_service):
    """tls-unique asked for on TLS 1.3, where RFC 9266 leaves it undefined:
    the service sends the client Finished (what ejabberd 23.01 expects), logs
    in with one attempt, and warns."""
    request = auth(ejabberd_tls, mechanism="SCRAM-SHA-512-PLUS", channelBinding="tls-unique")
    code, body = await post(ca_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["channelBinding"] == "tls-unique"
    assert body["phases"].count("sasl_scram_sha_512_plus_sent") == 1
    assert any("undefined on TLS 1.3" in w for w in body["warnings"])


@pytest_twisted.ensureDeferred
async def test_direct_tls_connect(ejabberd_tls, ca_service):
    """/connect tls direct: TLS from the first byte (TLS 1.2 on this port),
    -PLUS offered in the first (and only) features block."""
    server = ejabberd_tls
    code, body = await post(
        ca_service,
        "/api/xmpp/connect",
        {"host": server.host, "port": server.direct_port, "domain": DOMAIN, "tls": "direct"},
    )
    assert body["success"] is True, body
    tls = body["tls"]
    assert tls["negotiated"] is True
    assert tls["direct"] is True
    assert tls["protocol"] == "TLSv1.2"
    assert isinstance(tls["cipher"], str) and tls["cipher"]
    check_certificate(tls, server.certs)
    assert body["saslMechanisms"] == TLS_MECHANISMS
    assert "starttls" not in body["features"]


@pytest_twisted.ensureDeferred
async def test_direct_tls12_default_login_plus(ejabberd_tls, ca_service):
    """Over TLS 1.2 the default login is SCRAM-SHA-512-PLUS with tls-unique
    (the RFC default there), and ejabberd accepts it; tls_connected first."""
    request = auth(ejabberd_tls, tls="direct", resource="direct")
    request["port"] = ejabberd_tls.direct_port
    code, body = await post(ca_service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["phases"] == phases("SCRAM-SHA-512-PLUS", tls="direct")
    assert body["mechanism"] == "SCRAM-SHA-512-PLUS"
    assert body["channelBinding"] == "tls-unique"
    assert body["jid"] == "alice@localhost/direct"
    assert body["tls"]["direct"] is True
    assert body["tls"]["protocol"] == "TLSv1.2"
    check_certificate(body["tls"], ejabberd_tls.certs)


@pytest.mark.parametrize(
    "binding, accepted",
    [("tls-unique", True), ("tls-exporter", False), ("tls-server-end-point", False)],
)
@pytest_twisted.ensureDeferred
async def test_direct_tls12_explicit_binding(ejabberd_tls, ca_service, binding, accepted):
    """channelBinding forced over TLS 1.2: ejabberd 23.01 accepts tls-unique only."""
    request = auth(
        ejabberd_tls,
        tls="direct",
        mechanism="SCRAM-SHA-256-PLUS",
        channelBinding=binding,
        resource="cb-" + binding,
    )
    request["port"] = ejabberd_tls.direct_port
    code, body = await post(ca_service, "/api/xmpp/login", request)
    assert body["tls"]["protocol"] == "TLSv1.2"
    if accepted:
        assert body["success"] is True, body
        assert body["mechanism"] == "SCRAM-SHA-256-PLUS"
        assert body["channelBinding"] == binding
        assert body["phases"] == phases("SCRAM-SHA-256-PLUS", tls="direct")
    else:
        assert body["errorType"] == "sasl", body
        assert body["saslText"] == INVALID_CHANNEL_BINDING
        assert body["phases"] == ["tls_connected", "stream_opened", "sasl_scram_sha_256_plus_sent"]


@pytest_twisted.ensureDeferred
async def test_tls_roster_and_message(ejabberd_tls, ca_service):
    """/roster and /message report the same auth phases over STARTTLS."""
    request = auth(ejabberd_tls, mechanism="SCRAM-SHA-256", resource="tls-roster")
    code, body = await post(ca_service, "/api/xmpp/roster", request)
    assert body["success"] is True, body
    assert body["phases"] == phases("SCRAM-SHA-256", tls="starttls", extra=["roster_received"])
    assert body["roster"]["total"] == 0
    request = {**request, "resource": "tls-msg", "recipient": "nobody@localhost"}
    code, body = await post(ca_service, "/api/xmpp/message", request)
    assert body["success"] is True, body
    assert body["phases"] == phases("SCRAM-SHA-256", tls="starttls", extra=["message_sent"])
    assert body["deliveryErrorCondition"]["condition"] == "service-unavailable"


# --------------------------------------------------------------------------
# ejabberd with TLS, a service that does not trust the test CA


@pytest_twisted.ensureDeferred
async def test_untrusted_connect(ejabberd_tls, service):
    """Without --ca-file the chain does not verify; the name still matches."""
    server = ejabberd_tls
    code, body = await post(
        service,
        "/api/xmpp/connect",
        {"host": server.host, "port": server.port, "domain": DOMAIN},
    )
    assert body["success"] is True, body
    assert body["tls"]["negotiated"] is True
    check_certificate(body["tls"], server.certs, verified=False)
    assert body["tls"]["saslMechanisms"] == TLS_MECHANISMS


def assert_no_credentials_sent(body, password):
    out = [entry["xml"] for entry in body["transcript"] if entry["dir"] == "out"]
    assert out, body
    assert not any("<auth" in xml or "<response" in xml for xml in out), out
    text = json.dumps(body)
    assert password not in text
    assert base64.b64encode(password.encode()).decode() not in text


@pytest_twisted.ensureDeferred
async def test_untrusted_login_stops_before_credentials(ejabberd_tls, service):
    """tlsVerify (default true): errorType tls right after STARTTLS, saying
    how to proceed; the transcript shows no <auth> was written."""
    code, body = await post(
        service, "/api/xmpp/login", auth(ejabberd_tls, tlsVerify=True, transcript=True)
    )
    assert code == 200
    assert body["success"] is False
    assert body["errorType"] == "tls", body
    assert "did not verify" in body["error"]
    assert "unable to get local issuer certificate" in body["error"]
    assert "tlsVerify: false" in body["error"] and "--ca-file" in body["error"]
    assert body["phases"] == ["stream_opened", "starttls_upgraded"]
    check_certificate(body["tls"], ejabberd_tls.certs, verified=False)
    assert any(entry["dir"] == "out" and "xmpp-tls" in entry["xml"] for entry in body["transcript"])
    assert_no_credentials_sent(body, ejabberd_tls.users["alice"])


@pytest_twisted.ensureDeferred
async def test_untrusted_direct_login_stops_before_credentials(ejabberd_tls, service):
    """The same over direct TLS: stopped right after the handshake."""
    request = auth(ejabberd_tls, tls="direct", transcript=True)
    request["port"] = ejabberd_tls.direct_port
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["errorType"] == "tls", body
    assert body["phases"][0] == "tls_connected"
    assert not any(phase.startswith("sasl_") for phase in body["phases"])
    assert_no_credentials_sent(body, ejabberd_tls.users["alice"])


@pytest_twisted.ensureDeferred
async def test_untrusted_login_without_verification(ejabberd_tls, service):
    """tlsVerify false: the login proceeds and reports verified false."""
    request = auth(ejabberd_tls, tlsVerify=False, mechanism="SCRAM-SHA-512", resource="noverify")
    code, body = await post(service, "/api/xmpp/login", request)
    assert body["success"] is True, body
    assert body["phases"] == phases("SCRAM-SHA-512", tls="starttls")
    assert body["jid"] == "alice@localhost/noverify"
    check_certificate(body["tls"], ejabberd_tls.certs, verified=False)
