"""Shared pytest fixtures.  Add new fixtures below, each in its own section."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# Tests are laid out by one rule: unit/ (one module each, fakes and a Clock),
# http/ (one endpoint each, StubTreq and a real port), servers/ (real Prosody
# and ejabberd), hostile/ (misbehaving servers and leaks on loopback); what
# they share lives in support/, importable by its bare module name.
_HERE = Path(__file__).resolve().parent
for _path in (_HERE / "support", _HERE):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

from prosody import (  # noqa: E402
    ProsodyInfo,
    find_prosody,
    find_prosodyctl,
    start_seeded_server,
)

# --------------------------------------------------------------------------
# A real Prosody (see tests/support/prosody.py)


@pytest.fixture(scope="session")
def prosody_installed() -> str:
    """Path of prosody.  Missing Prosody: skipped, or a failure when ``CI=true``."""
    path = find_prosody()
    if not (path and find_prosodyctl()):
        reason = (
            "Prosody is not installed (no prosody/prosodyctl on PATH; run "
            ".ci/install-prosody or set $PROSODY and $PROSODYCTL)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def prosody(prosody_installed, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyInfo]:
    """One Prosody for the whole session, on free loopback ports.

    Domains ``localhost`` (PLAIN + SCRAM over plaintext) and
    ``hashed.localhost`` (SCRAM-SHA-1 only); users alice/bob/carol/big on
    ``localhost`` (``.users``), alice on ``hashed.localhost`` (``.accounts``);
    alice's and big's (10,000 items) rosters in ``.rosters``.  Missing Prosody:
    skipped, or a failure when ``CI=true``.
    """
    info = start_seeded_server(tmp_path_factory.mktemp("prosody"))
    try:
        yield info
    finally:
        info.server.stop()


# --------------------------------------------------------------------------
# The service itself, on a real listening port (pytest-twisted's reactor)


class RunningService:
    """A portofcall-xmpp API listening on 127.0.0.1; C{url(path)} builds URLs."""

    def __init__(self, port, api, site=None):
        self.port = port
        self.api = api
        self.site = site
        self.base = "http://127.0.0.1:%d" % (port.getHost().port,)

    def url(self, path: str) -> str:
        return self.base + path


#: The rate limits protect real servers from strangers; the tests probe their own
#: loopback servers hundreds of times, so they start with both off (the limits
#: themselves are tested on instances of their own, tests/http/test_rate_limits.py).
NO_RATE_LIMITS = ("--per-target-rate", "0", "--max-failed-logins", "0")


def start_service(*argv: str) -> RunningService:
    """
    Listen with the options C{argv} (as given to twistd) on a free port,
    rate limits off unless C{argv} sets them.
    """
    import pytest_twisted
    from twisted.internet import reactor

    from portofcall_xmpp import tap, web
    from portofcall_xmpp.listener import BoundedSite

    options = tap.Options()
    options.parseOptions([*NO_RATE_LIMITS, *argv])
    api = tap.build_api(options, reactor)
    site = BoundedSite(api.resource(), reactor, max_connections=options["max-connections"])
    site.requestFactory = web.LimitedRequest
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    service = RunningService(port, api, site)
    service.stop = lambda: pytest_twisted.blockon(port.stopListening())
    return service


@pytest.fixture(scope="session")
def service():
    """The API with --allow-private (so it may probe the loopback Prosody)."""
    running = start_service("--allow-private", "--read-timeout", "3000")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def strict_service():
    """The API with the default destination policy (loopback is blocked)."""
    running = start_service()
    try:
        yield running
    finally:
        running.stop()


# --------------------------------------------------------------------------
# A real ejabberd (see tests/support/ejabberd.py)


def _ejabberd_module():
    """tests/support/ejabberd.py, imported lazily (the fixture below is also named ejabberd)."""
    import ejabberd as module

    return module


@pytest.fixture(scope="session")
def ejabberd_installed() -> str:
    """Path of ejabberdctl.  Missing ejabberd: skipped, or a failure when ``CI=true``."""
    path = _ejabberd_module().find_ejabberd()
    if not path:
        reason = (
            "ejabberd is not installed (no ejabberdctl/erl; run .ci/install-ejabberd "
            "or set $EJABBERDCTL)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def ejabberd(ejabberd_installed, tmp_path_factory: pytest.TempPathFactory):
    """One ejabberd 23.x for the whole session, on free loopback ports.

    Host ``localhost`` (PLAIN + SCRAM over plaintext, passwords stored plain);
    users alice/bob (``.users``), alice's roster (``.rosters``; names, groups,
    no ``ask``).  Yields :class:`ejabberd.EjabberdInfo` (``.host``, ``.port``,
    ``.domain``, ``.users``, ``.rosters``, ``.server``, ``.log_dir``,
    ``.new_user()``).
    """
    info = _ejabberd_module().start_seeded_server(tmp_path_factory.mktemp("ejabberd"))
    try:
        yield info
    finally:
        info.server.stop()


# --------------------------------------------------------------------------
# A real Prosody with TLS (tests/support/prosody.py, certificates from tests/support/certs.py)


class ProsodyTLS:
    """What the C{prosody_tls} fixture yields."""

    def __init__(self, server, direct_port, certs, password):
        self.server = server
        self.host = server.host
        self.port = server.c2s_port
        self.direct_port = direct_port
        self.certs = certs
        self.password = password
        self.ca_path = str(certs.directory / "ca.pem")


TLS_VHOSTS = {
    # STARTTLS offered, optional; PLAIN allowed (also before TLS).
    "localhost": ("localhost", {"c2s_require_encryption": False}),
    # STARTTLS required (c2s_require_encryption).
    "required.localhost": ("required_host", {"c2s_require_encryption": True}),
    # STARTTLS offered with certificates that do not verify.
    "expired.localhost": ("expired_host", {"c2s_require_encryption": False}),
    "selfsigned.localhost": ("self_signed_host", {"c2s_require_encryption": False}),
    # TLS 1.2 only, where Prosody 0.12 offers SCRAM-*-PLUS with tls-unique.
    "tls12.localhost": ("tls12_host", {"c2s_require_encryption": False, "ssl": "tls12"}),
}


@pytest.fixture(scope="session")
def prosody_tls(prosody_installed, tmp_path_factory):
    """
    One Prosody with TLS: virtual hosts C{localhost} (optional STARTTLS, a
    certificate from the test CA), C{required.localhost} (STARTTLS required),
    C{expired.localhost} and C{selfsigned.localhost} (certificates that do not
    verify), and a direct-TLS port (XEP-0368).  User C{alice} on each.
    """
    from certs import install_for_prosody, session_certs
    from prosody import DEFAULT_MODULES, ProsodyServer, _free_ports

    certs = session_certs()
    base = tmp_path_factory.mktemp("prosody-tls")
    vhosts = {}
    for domain, (kind, options) in TLS_VHOSTS.items():
        options = {
            "authentication": "internal_plain",
            "allow_unencrypted_plain_auth": True,
            **options,
        }
        if options.get("ssl") == "tls12":
            leaf = certs.leaves[kind]
            options["ssl"] = {
                "certificate": str(leaf.fullchain_path),
                "key": str(leaf.key_path),
                "protocol": "tlsv1_2",
            }
        vhosts[domain] = options
    direct_port = _free_ports(1)[0]
    server = ProsodyServer(
        base,
        vhosts=vhosts,
        modules=(*DEFAULT_MODULES, "tls"),
        global_options={"c2s_direct_tls_ports": [direct_port]},
    )
    for domain, (kind, _) in TLS_VHOSTS.items():
        install_for_prosody(certs.leaves[kind], server.certs_path, domain)
        server.register("alice", domain, "alice-tls-pw")
    server.start()
    try:
        yield ProsodyTLS(server, direct_port, certs, "alice-tls-pw")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def tls_service(prosody_tls):
    """The API trusting the test CA (--ca-file), loopback allowed."""
    running = start_service("--allow-private", "--read-timeout", "3000", "--ca-file",
                            prosody_tls.ca_path)  # fmt: skip
    try:
        yield running
    finally:
        running.stop()
