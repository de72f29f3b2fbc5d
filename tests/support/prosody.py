"""Run a real Prosody XMPP server for integration tests.

The server itself (its configuration, accounts and rosters) lives in the
package, shared with C{--demo}: L{portofcall_xmpp.demo}.  Here are the
fixtures' view of it (L{ProsodyInfo}, L{start_seeded_server}) and the demo
mode of ``python tests/support/prosody.py``.

Everything lives under one temporary directory (config, data, pidfile, logs);
Prosody listens on free ports on 127.0.0.1 only and is always stopped again.

Typical use::

    server = ProsodyServer(tmp_path)
    server.start()                       # waits until c2s accepts connections
    server.register("alice", "localhost", "secret")
    server.set_roster("alice", "localhost", [
        {"jid": "bob@localhost", "name": "Bob", "subscription": "both",
         "ask": None, "groups": ["Friends", "Work"]},
    ])
    ...                                  # connect to server.host:server.c2s_port
    server.stop()
See L{portofcall_xmpp.demo} for the facts about Prosody 0.12 the tests rely on.

This is test-setup code: it blocks (``subprocess``, ``time.sleep``) on purpose.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import servers
from servers import Account

from portofcall_xmpp.demo import (  # noqa: F401 (the tests import them from here)
    ACCOUNTS,
    ALICE_ROSTER,
    BIG_ROSTER_SIZE,
    COMPONENTS,
    CONTACT_INFO,
    DEFAULT_MODULES,
    DEFAULT_VHOSTS,
    DOMAIN,
    HASHED_DOMAIN,
    LuaRaw,
    ProsodyError,
    ProsodyServer,
    big_roster,
    encode_path_component,
    find_prosody,
    find_prosodyctl,
    lua_string,
    lua_value,
    seeded_prosody,
)
from portofcall_xmpp.localserver import LOOPBACK

#: tests/conftest.py imports this name.
_free_ports = servers.free_ports


@dataclass
class ProsodyInfo(servers.ServerInfo):
    """What the ``prosody`` fixture yields.

    ``users``/``rosters`` are for :attr:`domain` (``localhost``); ``accounts``
    has every domain.  Treat the seeded accounts as read-only (other tests
    share them); a test that changes a roster or leaves offline messages
    should use :meth:`new_user`.
    """

    server: ProsodyServer
    host: str
    port: int
    s2s_port: int
    domain: str
    hashed_domain: str
    users: dict[str, str]
    accounts: dict[str, dict[str, str]]
    rosters: dict[str, list[dict[str, object]]]
    log_path: Path
    debug_log_path: Path
    component_port: int | None = None
    components: dict[str, str] = field(default_factory=dict)

    def new_user(
        self,
        prefix: str = "user",
        *,
        domain: str | None = None,
        password: str | None = None,
        roster: Iterable[Mapping[str, object]] | None = None,
    ) -> Account:
        """Register a fresh account (unique name) and optionally seed its roster."""
        domain = domain or self.domain
        user, password = self._unique_user(prefix, password)
        self.server.register(user, domain, password)
        if roster is not None:
            self.server.set_roster(user, domain, roster)
        return Account(user, domain, password)



def start_seeded_server(base_dir: str | os.PathLike[str]) -> ProsodyInfo:
    """Start Prosody with :data:`ACCOUNTS`, alice's and big's rosters
    (:func:`portofcall_xmpp.demo.seeded_prosody`).

    The caller must ``info.server.stop()``.
    """
    server = seeded_prosody(base_dir).start()
    try:
        assert server.c2s_port is not None and server.s2s_port is not None
        return ProsodyInfo(
            server=server,
            host=server.host,
            port=server.c2s_port,
            s2s_port=server.s2s_port,
            domain=DOMAIN,
            hashed_domain=HASHED_DOMAIN,
            users=dict(ACCOUNTS[DOMAIN]),
            accounts={d: dict(u) for d, u in ACCOUNTS.items()},
            rosters={"alice": ALICE_ROSTER, "big": big_roster()},
            log_path=server.log_path,
            debug_log_path=server.debug_log_path,
            component_port=server.component_port,
            components=dict(server.components),
        )
    except BaseException:
        server.stop()
        raise


def start_web_server(
    base_dir: str | os.PathLike[str], *, https: tuple[Path, Path] | None = None
) -> tuple[ProsodyServer, int, int | None]:
    """Start Prosody with ``mod_websocket`` and ``mod_bosh`` on a loopback HTTP port.

    The sessions are "secure" (``consider_websocket_secure``,
    ``consider_bosh_secure``), so PLAIN is offered over plain HTTP too.
    With ``https`` (the certificate chain's and the key's files), also on a loopback HTTPS port.
    Users as :func:`start_seeded_server` (:data:`ACCOUNTS`).  Returns the
    server, the HTTP port and the HTTPS port (or ``None``); the caller must
    ``server.stop()``.
    """
    http_port, https_port = servers.free_ports(2)
    options: dict[str, object] = {
        "http_ports": [http_port],
        "http_interfaces": [LOOPBACK],
        "consider_websocket_secure": True,
        "consider_bosh_secure": True,
        "cross_domain_websocket": True,
        "cross_domain_bosh": True,
    }
    if https is not None:
        options["https_ports"] = [https_port]
        options["https_ssl"] = LuaRaw(
            f"{{ certificate = {lua_string(str(https[0]))}, key = {lua_string(str(https[1]))} }}"
        )
    server = ProsodyServer(
        base_dir, modules=(*DEFAULT_MODULES, "websocket", "bosh"), global_options=options
    )
    for domain, users in ACCOUNTS.items():
        for user, password in users.items():
            server.register(user, domain, password)
    server.start()
    return server, http_port, https_port if https is not None else None


# --------------------------------------------------------------------------
# A demo server for trying the service by hand (README: "Try it")


def main(argv: list[str] | None = None) -> int:
    """Run the seeded test server in the foreground until interrupted.

    The ports are exactly those asked for: when one is taken (say by Debian's
    own Prosody on 5222), it says so in one line and exits with status 2
    rather than moving elsewhere.
    """
    import argparse

    parser = argparse.ArgumentParser(
        description="Run a throw-away Prosody on 127.0.0.1 with the test accounts and rosters."
    )
    parser.add_argument("--port", type=int, default=5222, help="c2s port (default 5222)")
    parser.add_argument("--s2s-port", type=int, default=5269, help="s2s port (default 5269)")
    parser.add_argument(
        "--component-port", type=int, default=5347, help="component port (default 5347)"
    )
    parser.add_argument("--dir", help="state directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    base = servers.demo_dir(args.dir, "portofcall-prosody-")
    server = seeded_prosody(
        base, c2s_port=args.port, s2s_port=args.s2s_port, component_port=args.component_port
    )
    try:
        server.start()
    except servers.PortClash:
        print(
            f"prosody.py: port {args.port}, {args.s2s_port} or {args.component_port} on "
            f"{server.host} is already in use (Debian's own Prosody?): choose others with "
            "--port, --s2s-port and --component-port",
            file=sys.stderr,
        )
        return 2
    except ProsodyError as e:
        print(f"prosody.py: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    accounts = ", ".join(
        f"{user}@{domain} / {password!r}"
        for domain, users in ACCOUNTS.items()
        for user, password in users.items()
    )
    components = ", ".join(f"{name} / {secret!r}" for name, secret in server.components.items())
    print(
        f"Prosody on {server.host}: c2s {server.c2s_port}, s2s {server.s2s_port}, "
        f"component {server.component_port} (state in {base}); accounts: {accounts}; "
        f"components: {components}",
        flush=True,
    )
    return servers.serve_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
