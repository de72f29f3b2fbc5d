"""Shared pytest fixtures.  Add new fixtures below, each in its own section."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from prosody import ProsodyInfo, find_prosody, find_prosodyctl, start_seeded_server
except ModuleNotFoundError as exc:  # --import-mode=importlib, or tests/ became a package
    if exc.name != "prosody":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from prosody import ProsodyInfo, find_prosody, find_prosodyctl, start_seeded_server

# --------------------------------------------------------------------------
# A real Prosody (see tests/prosody.py)


@pytest.fixture(scope="session")
def prosody(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProsodyInfo]:
    """One Prosody for the whole session, on free loopback ports.

    Domains ``localhost`` (PLAIN + SCRAM over plaintext) and
    ``hashed.localhost`` (SCRAM-SHA-1 only); users alice/bob/carol/big on
    ``localhost`` (``.users``), alice on ``hashed.localhost`` (``.accounts``);
    alice's and big's (10,000 items) rosters in ``.rosters``.  Missing Prosody:
    skipped, or a failure when ``CI=true``.
    """
    if not (find_prosody() and find_prosodyctl()):
        reason = (
            "Prosody is not installed (no prosody/prosodyctl on PATH; run "
            ".ci/install-prosody or set $PROSODY and $PROSODYCTL)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason + " and CI=true", pytrace=False)
        pytest.skip(reason)
    info = start_seeded_server(tmp_path_factory.mktemp("prosody"))
    try:
        yield info
    finally:
        info.server.stop()


# --------------------------------------------------------------------------
# The service itself, on a real listening port (pytest-twisted's reactor)


class RunningService:
    """A portofcall-xmpp API listening on 127.0.0.1; C{url(path)} builds URLs."""

    def __init__(self, port, api):
        self.port = port
        self.api = api
        self.base = "http://127.0.0.1:%d" % (port.getHost().port,)

    def url(self, path: str) -> str:
        return self.base + path


def start_service(*argv: str) -> RunningService:
    """Listen with the options C{argv} (as given to twistd) on a free port."""
    import pytest_twisted
    from twisted.internet import reactor
    from twisted.web.server import Site

    from portofcall_xmpp import tap, web

    options = tap.Options()
    options.parseOptions(list(argv))
    api = tap.build_api(options, reactor)
    site = Site(api.resource())
    site.requestFactory = web.LimitedRequest
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    service = RunningService(port, api)
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
# A real ejabberd (see tests/ejabberd.py)


def _ejabberd_module():
    """tests/ejabberd.py, imported lazily (the fixture below is also named ejabberd)."""
    try:
        import ejabberd as module
    except ModuleNotFoundError as exc:  # --import-mode=importlib
        if exc.name != "ejabberd":
            raise
        sys.path.insert(0, str(Path(__file__).resolve().parent))
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
