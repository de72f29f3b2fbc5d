"""Run a real Prosody XMPP server for integration tests.

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

Facts about Prosody 0.12 that the tests rely on:

* The XMPP domain is the ``VirtualHost`` name; a client connects to 127.0.0.1
  and sends ``to='localhost'`` (or ``to='hashed.localhost'``).  An unknown ``to``
  gets ``<host-unknown/>``; no ``to`` at all gets ``<improper-addressing/>``.
* SASL PLAIN over a plaintext connection needs *both* ``c2s_require_encryption =
  false`` (else no ``<mechanisms>`` at all) and ``allow_unencrypted_plain_auth =
  true`` (else PLAIN/LOGIN are dropped from the list on insecure streams).
* Roster items, groups, SASL mechanisms and even attributes come back in Lua
  hash order, which is randomised per Prosody process: never assert on order.
* ``hashed.localhost`` offers only SCRAM-SHA-1 (``password_hash`` defaults to
  SHA-1); ``localhost`` (internal_plain) offers PLAIN, SCRAM-SHA-1, SCRAM-SHA-256.
* Prosody runs as ``lua5.4 /usr/bin/prosody``: look for it with
  ``pgrep -af prosody`` (plain ``pgrep prosody`` matches the name ``lua5.4``).

This is test-setup code: it blocks (``subprocess``, ``time.sleep``) on purpose
and must not be imported by the service.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import servers
from servers import LOOPBACK, Account

__all__ = [
    "ACCOUNTS",
    "ALICE_ROSTER",
    "Account",
    "BIG_ROSTER_SIZE",
    "DEFAULT_MODULES",
    "DEFAULT_VHOSTS",
    "LuaRaw",
    "ProsodyError",
    "ProsodyInfo",
    "ProsodyServer",
    "big_roster",
    "encode_path_component",
    "find_prosody",
    "find_prosodyctl",
    "lua_string",
    "lua_value",
    "start_seeded_server",
]

#: Modules loaded for every host.  ``c2s``, ``s2s``, ``presence``, ``message``,
#: ``iq``, ``offline``, ``posix`` are always auto-loaded by Prosody.  ``tls`` is
#: deliberately absent until certificates are configured (add it then).
#: ``smacks`` (XEP-0198) *is* part of Debian's Prosody 0.12 core.
DEFAULT_MODULES: tuple[str, ...] = (
    "roster",
    "saslauth",
    "disco",
    "ping",
    "version",
    "pep",
    "carbons",
    "smacks",
    "csi_simple",
    "dialback",  # keeps s2s usable without TLS
    "server_contact_info",  # XEP-0157, configured by CONTACT_INFO
)

#: Per-VirtualHost options.  Keys are XMPP domains, values Prosody options.
DEFAULT_VHOSTS: dict[str, dict[str, object]] = {
    # PLAIN (and SCRAM-SHA-1/-256) over plaintext.
    "localhost": {
        "authentication": "internal_plain",
        "c2s_require_encryption": False,
        "allow_unencrypted_plain_auth": True,
    },
    # Hashed passwords, SCRAM only (PLAIN is disabled even once TLS exists).
    "hashed.localhost": {
        "authentication": "internal_hashed",
        "c2s_require_encryption": False,
        "allow_unencrypted_plain_auth": False,
        "disable_sasl_mechanisms": ["PLAIN", "LOGIN", "DIGEST-MD5"],
    },
}

_SUBSCRIPTIONS = frozenset({"none", "to", "from", "both"})


class ProsodyError(RuntimeError):
    """Prosody could not be started, or prosodyctl failed."""


class _PortClash(ProsodyError, servers.PortClash):
    pass


class LuaRaw(str):
    """A string that is pasted into the Lua config verbatim (not quoted)."""


# --------------------------------------------------------------------------
# Lua serialisation


def _make_escape_table() -> dict[int, str]:
    table = {c: "\\%03d" % c for c in range(0x20)}
    table[0x7F] = "\\127"
    table[ord("\\")] = "\\\\"
    table[ord('"')] = '\\"'
    table[ord("\n")] = "\\n"
    table[ord("\t")] = "\\t"
    return table


_LUA_ESCAPES = _make_escape_table()


def lua_string(value: str) -> str:
    """Quote ``value`` as a Lua string literal.

    Control characters become ``\\ddd`` (three digits, so a following digit is
    never swallowed); non-ASCII text is left as is and the file is written in
    UTF-8, which Lua (8-bit clean) stores byte for byte.
    """
    if not isinstance(value, str):
        raise TypeError(f"expected str, got {type(value).__name__}")
    value.encode("utf-8")  # reject lone surrogates early
    return '"' + value.translate(_LUA_ESCAPES) + '"'


def lua_value(value: object) -> str:
    """Serialise a Python value as a Lua expression (for config files)."""
    if isinstance(value, LuaRaw):
        return str(value)
    scalar = servers.plain_scalar(value, null="nil", language="Lua")
    if scalar is not None:
        return scalar
    if isinstance(value, str):
        return lua_string(value)
    if isinstance(value, Mapping):
        parts = [f"[{lua_value(k)}] = {lua_value(v)}" for k, v in value.items()]
        return "{ " + "; ".join(parts) + " }"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return "{ " + ", ".join(lua_value(v) for v in items) + " }"
    raise TypeError(f"cannot serialise {type(value).__name__} to Lua")


def encode_path_component(value: str) -> str:
    """Prosody's datamanager ``encode``: every byte that is not ASCII alphanumeric
    becomes ``%xx`` (lower-case hex), e.g. ``hashed.localhost`` -> ``hashed%2elocalhost``."""
    out = []
    for byte in value.encode("utf-8"):
        if (48 <= byte <= 57) or (65 <= byte <= 90) or (97 <= byte <= 122):
            out.append(chr(byte))
        else:
            out.append("%%%02x" % byte)
    return "".join(out)


# --------------------------------------------------------------------------
# Binaries


_BINARY_DIRS = ("/usr/bin", "/usr/local/bin", "/usr/sbin")

#: tests/conftest.py imports this name.
_free_ports = servers.free_ports


def find_prosody() -> str | None:
    """Path of the ``prosody`` binary (``$PROSODY`` overrides), or None."""
    return servers.find_binary("PROSODY", "prosody", _BINARY_DIRS)


def find_prosodyctl() -> str | None:
    """Path of ``prosodyctl`` (``$PROSODYCTL`` overrides), or None."""
    return servers.find_binary("PROSODYCTL", "prosodyctl", _BINARY_DIRS)


# --------------------------------------------------------------------------
# The server


class ProsodyServer(servers.ServerProcess):
    """One Prosody process with several VirtualHosts, confined to ``base_dir``.

    ``vhosts`` maps XMPP domains to per-host options (defaults:
    :data:`DEFAULT_VHOSTS`); ``global_options`` are added to / override the
    generated global section; ``extra_global_lines`` are raw Lua lines placed
    after the global options (before the first VirtualHost), e.g. for TLS.
    Options can be changed before :meth:`start` (or before :meth:`restart`).

    :meth:`start` writes the config, starts ``prosody -F`` and waits until c2s
    is activated and accepts connections; :meth:`stop` sends SIGTERM, then
    SIGKILL after :attr:`stop_timeout` seconds, to its process group (Prosody
    alone; see :class:`servers.ServerProcess`).
    """

    label = "Prosody"
    error = ProsodyError
    port_clash = _PortClash

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        vhosts: Mapping[str, Mapping[str, object]] | None = None,
        modules: Iterable[str] = DEFAULT_MODULES,
        global_options: Mapping[str, object] | None = None,
        extra_global_lines: Iterable[str] = (),
        prosody: str | None = None,
        prosodyctl: str | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 5.0,
    ) -> None:
        super().__init__(base_dir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        self.vhosts: dict[str, dict[str, object]] = {
            domain: dict(options)
            for domain, options in (DEFAULT_VHOSTS if vhosts is None else vhosts).items()
        }
        self.modules: list[str] = list(modules)
        self.global_options: dict[str, object] = dict(global_options or {})
        self.extra_global_lines: list[str] = list(extra_global_lines)
        self.prosody = prosody or find_prosody()
        self.prosodyctl = prosodyctl or find_prosodyctl()

        self.config_path = self.base_dir / "prosody.cfg.lua"
        self.data_path = self.base_dir / "data"
        self.pidfile = self.base_dir / "prosody.pid"
        self.certs_path = self.base_dir / "certs"
        self.log_path = self.base_dir / "prosody.log"  # level info and up
        self.debug_log_path = self.base_dir / "prosody.debug.log"  # everything
        self.console_path = self.base_dir / "prosody.console.log"  # stdout/stderr

        self.s2s_port: int | None = None

    # -- informational ----------------------------------------------------

    @property
    def domains(self) -> list[str]:
        return list(self.vhosts)

    # -- configuration ----------------------------------------------------

    def _global_options(self) -> dict[str, object]:
        options: dict[str, object] = {
            "daemonize": False,
            "pidfile": str(self.pidfile),
            "data_path": str(self.data_path),
            "plugin_paths": [],
            "log": LuaRaw(
                "{\n"
                f'\t{{ levels = {{ min = "info" }}, to = "file", '
                f"filename = {lua_string(str(self.log_path))} }};\n"
                f'\t{{ levels = {{ min = "debug" }}, to = "file", '
                f"filename = {lua_string(str(self.debug_log_path))} }};\n"
                "}"
            ),
            "admins": [],
            "modules_enabled": self.modules,
            "storage": "internal",
            "authentication": "internal_plain",
            # Network: loopback only, for every service that might appear.
            "interfaces": [LOOPBACK],
            "local_interfaces": [LOOPBACK],
            "c2s_ports": [self.c2s_port],
            "c2s_interfaces": [LOOPBACK],
            "c2s_direct_tls_ports": [],
            "legacy_ssl_ports": [],
            "s2s_ports": [self.s2s_port],
            "s2s_interfaces": [LOOPBACK],
            "s2s_direct_tls_ports": [],
            "http_ports": [],
            "https_ports": [],
            "http_interfaces": [LOOPBACK],
            "https_interfaces": [LOOPBACK],
            "component_ports": [],
            "component_interface": LOOPBACK,
            # s2s stays usable (dialback, no TLS) but nothing here needs it.
            "s2s_require_encryption": False,
            "s2s_secure_auth": False,
            "certificates": str(self.certs_path),
            "umask": "077",
        }
        if os.geteuid() == 0:
            options["run_as_root"] = True
        options.update(self.global_options)
        return options

    def config_text(self) -> str:
        """The Lua configuration for the current ports and options."""
        lines = ["-- Generated by tests/support/prosody.py; do not edit.", ""]
        for key, value in self._global_options().items():
            lines.append(f"{key} = {lua_value(value)}")
        if self.extra_global_lines:
            lines.append("")
            lines.extend(self.extra_global_lines)
        for domain, options in self.vhosts.items():
            lines.append("")
            lines.append(f"VirtualHost {lua_string(domain)}")
            for key, value in options.items():
                lines.append(f"\t{key} = {lua_value(value)}")
        lines.append("")
        return "\n".join(lines)

    def write_config(self) -> Path:
        if self.c2s_port is None or self.s2s_port is None:
            self.c2s_port, self.s2s_port = servers.free_ports(2)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_path.mkdir(parents=True, exist_ok=True)
        # An empty certificate directory (a missing one is logged as an error);
        # TLS support can drop certificates in here.
        self.certs_path.mkdir(parents=True, exist_ok=True)
        servers.atomic_write(self.config_path, self.config_text().encode("utf-8"))
        return self.config_path

    def _env(self) -> dict[str, str]:
        return servers.clean_env(("PROSODY",))

    # -- lifecycle hooks (see servers.ServerProcess) ----------------------

    def _require_binary(self) -> None:
        if not self.prosody:
            raise ProsodyError("prosody binary not found (set $PROSODY or install prosody)")

    def _log_files(self) -> tuple[Path, ...]:
        return (self.log_path, self.debug_log_path, self.console_path)

    def _launch(self, console: IO[bytes]) -> subprocess.Popen[bytes]:
        assert self.prosody is not None
        argv = [self.prosody, "-F", "--config", str(self.config_path)]
        return servers.spawn(argv, console=console, cwd=self.base_dir, env=self._env())

    def _port_clash_logged(self) -> bool:
        return "Failed to open server port" in servers.read_text(self.log_path)

    def _ready(self) -> bool:
        activated = rf"Activated service 'c2s' on .*\[{re.escape(LOOPBACK)}\]:{self.c2s_port}\b"
        return bool(re.search(activated, servers.read_text(self.log_path))) and super()._ready()

    # -- accounts and storage --------------------------------------------

    def prosodyctl_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``prosodyctl --config <cfg> args...``; works whether or not the
        server is running (internal storage is plain files)."""
        if not self.prosodyctl:
            raise ProsodyError("prosodyctl not found (set $PROSODYCTL or install prosody)")
        if not self.config_path.exists() or self.c2s_port is None:
            self.write_config()
        result = subprocess.run(
            [self.prosodyctl, "--config", str(self.config_path), *args],
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self._env(),
            timeout=60,
        )
        if check and result.returncode != 0:
            shown = args[:3] if args and args[0] in ("register", "passwd") else args
            raise ProsodyError(
                f"prosodyctl {' '.join(shown)} ... exited with {result.returncode}\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def register(self, user: str, host: str, password: str) -> None:
        """Create (or reset the password of) ``user@host``."""
        if host not in self.vhosts:
            raise ValueError(f"{host!r} is not a VirtualHost of this server")
        self.prosodyctl_run("register", user, host, password)

    def unregister(self, user: str, host: str) -> None:
        self.prosodyctl_run("deluser", f"{user}@{host}")

    def user_exists(self, user: str, host: str) -> bool:
        return self.store_path(user, host, "accounts").exists()

    def store_path(self, user: str | None, host: str, store: str) -> Path:
        """Path of Prosody's internal ``.dat`` file for ``store`` (e.g. ``roster``).

        ASCII names are lower-cased as nodeprep/nameprep would; other names
        must already be in Prosody's normalised form.
        """
        host_dir = self.data_path / encode_path_component(_ascii_lower(host))
        if user is None:
            return host_dir / f"{_store_encode(store)}.dat"
        return host_dir / _store_encode(store) / f"{encode_path_component(_ascii_lower(user))}.dat"

    def roster_path(self, user: str, host: str) -> Path:
        return self.store_path(user, host, "roster")

    def set_roster(
        self,
        user: str,
        host: str,
        items: Iterable[Mapping[str, object]],
        *,
        version: int = 1,
        pending: Iterable[str] = (),
    ) -> Path:
        """Replace ``user@host``'s roster by writing Prosody's storage file.

        ``items``: dicts with ``jid`` (bare and already normalised, i.e.
        lower-case: Prosody keys rosters by prepped JIDs), ``name`` (str or
        None), ``subscription`` (none/to/from/both, default none), ``ask``
        ("subscribe" or None), ``groups`` (iterable of str).  ``version`` is
        the roster version Prosody reports (``ver``); ``pending`` lists
        JIDs with an inbound subscription request.

        When to call: before ``user`` logs in, and before anything makes
        Prosody load that roster (a presence to or from the user; Prosody
        keeps rosters of offline users it has loaded in a per-host cache).
        Prosody reads the file when it first needs the roster, so seeding
        while the server runs is fine under those conditions (also after the
        user's last session ended, if nothing loaded it since); otherwise
        seed before :meth:`start` or :meth:`restart` afterwards.  Writes
        atomically (temp file + rename); 10,000 items take about 50 ms.
        """
        if version < 0:
            raise ValueError("version must be >= 0")
        out = ["return {\n", "\t[false] = {\n", f'\t\t["version"] = {int(version)};\n']
        out.append('\t\t["pending"] = {')
        for jid in pending:
            out.append(f" [{lua_string(jid)}] = true;")
        out.append(" };\n\t};\n")
        seen: set[str] = set()
        for item in items:
            jid = item["jid"]
            if not isinstance(jid, str) or not jid or "/" in jid:
                raise ValueError(f"roster item jid must be a bare JID: {jid!r}")
            if jid in seen:
                raise ValueError(f"duplicate roster item {jid!r}")
            seen.add(jid)
            subscription = item.get("subscription") or "none"
            if subscription not in _SUBSCRIPTIONS:
                raise ValueError(f"bad subscription {subscription!r} for {jid}")
            ask = item.get("ask")
            if ask not in (None, "subscribe"):
                raise ValueError(f"bad ask {ask!r} for {jid}")
            name = item.get("name")
            groups = item.get("groups") or ()
            if isinstance(groups, str):
                raise TypeError(f"groups of {jid} must be a list, not a string")
            out.append(f"\t[{lua_string(jid)}] = {{\n")
            out.append(f'\t\t["subscription"] = {lua_string(subscription)};\n')
            if name:
                out.append(f'\t\t["name"] = {lua_string(name)};\n')
            if ask:
                out.append(f'\t\t["ask"] = {lua_string(ask)};\n')
            out.append('\t\t["groups"] = {')
            for group in dict.fromkeys(groups):
                out.append(f" [{lua_string(group)}] = true;")
            out.append(" };\n\t};\n")
        out.append("};\n")
        path = self.roster_path(user, host)
        path.parent.mkdir(parents=True, exist_ok=True)
        servers.atomic_write(path, "".join(out).encode("utf-8"))
        return path


# --------------------------------------------------------------------------
# The seeded server used by tests/conftest.py

DOMAIN = "localhost"
HASHED_DOMAIN = "hashed.localhost"

#: Accounts of the shared test server, per domain: ``{domain: {user: password}}``.
#: carol's password exercises escaping (space, ``&``, ``<``, quotes).
ACCOUNTS: dict[str, dict[str, str]] = {
    DOMAIN: {
        "alice": "alice-pw-1",
        "bob": "bob-pw-2",
        "carol": "carol pass & <chars> \"'",
        "big": "big-pw-3",
    },
    HASHED_DOMAIN: {
        "alice": "alice-hashed-pw",
    },
}

#: alice@localhost's roster: every subscription state, an ``ask``, names that
#: need XML escaping or are non-ASCII or absent, several groups, no groups.
ALICE_ROSTER: list[dict[str, object]] = [
    {
        "jid": "bob@localhost",
        "name": "Bob",
        "subscription": "both",
        "ask": None,
        "groups": ["Friends", "Work"],
    },
    {
        "jid": "carol@localhost",
        "name": "Carol",
        "subscription": "to",
        "ask": None,
        "groups": ["Friends", "Family", "Book Club"],
    },
    {
        "jid": "obrien@example.org",
        "name": "O'Brien & <Co>",
        "subscription": "from",
        "ask": None,
        "groups": ["Work", "Clients & <Partners>"],
    },
    {
        "jid": "dave@example.net",
        "name": None,
        "subscription": "none",
        "ask": "subscribe",
        "groups": ["Pending", "Work"],
    },
    {
        "jid": "zoe@example.com",
        "name": "Zo\u00eb \u2615",
        "subscription": "none",
        "ask": None,
        "groups": [],
    },
]

BIG_ROSTER_SIZE = 10_000


def big_roster(count: int = BIG_ROSTER_SIZE) -> list[dict[str, object]]:
    """A deterministic roster of ``count`` contacts (10,000 -> about 1.1 MB of XML)."""
    subscriptions = ("none", "to", "from", "both")
    items: list[dict[str, object]] = []
    for i in range(count):
        subscription = subscriptions[i % 4]
        groups = [f"Group {i % 50:02d}", "Everyone"]
        if i % 3 == 0:
            groups.append("Third")
        items.append(
            {
                "jid": f"contact{i:05d}@example.com",
                "name": None if i % 7 == 0 else f"Contact {i:05d}",
                "subscription": subscription,
                "ask": "subscribe" if (i % 10 == 0 and subscription in ("none", "from")) else None,
                "groups": groups,
            }
        )
    return items


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


#: XEP-0157 contact addresses of the seeded server (``contact_info``).
CONTACT_INFO: dict[str, list[str]] = {
    "abuse": ["mailto:abuse@localhost", "xmpp:abuse@localhost"],
    "admin": ["xmpp:admin@localhost"],
}


def start_seeded_server(base_dir: str | os.PathLike[str]) -> ProsodyInfo:
    """Start Prosody with :data:`ACCOUNTS`, alice's and big's rosters.

    Accounts and rosters are written before the server starts, so no roster
    can be in Prosody's cache yet.  The caller must ``info.server.stop()``.
    """
    server = ProsodyServer(base_dir, global_options={"contact_info": CONTACT_INFO})
    rosters = {"alice": ALICE_ROSTER, "big": big_roster()}
    for domain, users in ACCOUNTS.items():
        for user, password in users.items():
            server.register(user, domain, password)
    for user, items in rosters.items():
        server.set_roster(user, DOMAIN, items)
    server.start()
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
            rosters=rosters,
            log_path=server.log_path,
            debug_log_path=server.debug_log_path,
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
# helpers


def _ascii_lower(name: str) -> str:
    return name.lower() if name.isascii() else name


def _store_encode(store: str) -> str:
    return "".join(
        c
        if (c.isascii() and (c.isalnum() or c == "_"))
        else "".join("%%%02x" % b for b in c.encode("utf-8"))
        for c in store
    )


# --------------------------------------------------------------------------
# A demo server for trying the service by hand (README: "Try it")


def main(argv: list[str] | None = None) -> int:
    """Run the seeded test server in the foreground until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Run a throw-away Prosody on 127.0.0.1 with the test accounts and rosters."
    )
    parser.add_argument("--port", type=int, default=5222, help="c2s port (default 5222)")
    parser.add_argument("--s2s-port", type=int, default=5269, help="s2s port (default 5269)")
    parser.add_argument("--dir", help="state directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    base = servers.demo_dir(args.dir, "portofcall-prosody-")
    server = ProsodyServer(base)
    server.c2s_port = args.port
    server.s2s_port = args.s2s_port
    for domain, users in ACCOUNTS.items():
        for user, password in users.items():
            server.register(user, domain, password)
    server.set_roster("alice", DOMAIN, ALICE_ROSTER)
    server.set_roster("big", DOMAIN, big_roster())
    server.start()
    print(
        "Prosody on %s: c2s %d, s2s %d (state in %s)"
        % (server.host, server.c2s_port, server.s2s_port, base),
        flush=True,
    )
    for domain, users in ACCOUNTS.items():
        for user, password in users.items():
            print("  %s@%s  password %r" % (user, domain, password), flush=True)
    return servers.serve_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
