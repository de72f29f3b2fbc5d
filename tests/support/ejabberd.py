"""Run a real ejabberd XMPP server for integration tests.

Everything lives under one temporary directory (config, Mnesia spool, logs,
a private copy of ``ejabberdctl``); ejabberd listens on free ports on
127.0.0.1 only and is always stopped again.

Typical use::

    with EjabberdServer(tmp_path) as server:   # waits until c2s accepts and
        server.register("alice", "localhost", "secret")   # ``status`` = started
        server.add_rosteritem("alice", "localhost", "bob", "localhost",
                              "Bob", ["Friends", "Work"], "both")
        ...                                     # connect to server.host:server.c2s_port

How it is run (Debian's ejabberd 23.01, Erlang/OTP 25):

* The stock ``ejabberdctl`` re-executes itself as the ``ejabberd`` user
  (``su``).  We run a *copy* (``<base_dir>/ejabberdctl``) with ``INSTALLUSER``
  emptied, so it runs as the current user (root prints a harmless "not
  recommended" warning), and whose ``foreground`` command ``exec``s ``erl``, so
  ``beam.smp`` is our direct child and inherits ``setpriv --pdeathsig``.
* Every run passes ``--config-dir/--ctl-config/--config/--logs/--spool/--node``
  and a generated ``ejabberdctl.cfg``: the system ``/etc/ejabberd/ejabberdctl.cfg``
  (which would force ``/etc/ejabberd/ejabberd.yml``) is never read.
* Erlang distribution stays on loopback and needs no epmd: ``ERL_DIST_PORT`` is a
  free port (ejabberdctl then adds ``-erl_epmd_port PORT -start_epmd false``,
  and ``-dist_listen false`` for its control clients), the node listens on
  127.0.0.1 only (``-kernel inet_dist_use_interface``), the cookie is fixed per
  instance (``-setcookie``, so no ``~/.erlang.cookie`` is read or written;
  ``HOME`` is the base directory anyway), and the node name is unique
  (``ejabberd_test_<pid>_<n>@localhost``).
* ejabberd runs as ``ejabberdctl foreground`` in its own session/process group;
  :meth:`EjabberdServer.stop` runs ``ejabberdctl stop``, waits, then SIGTERMs
  and SIGKILLs the process group: no ``beam.smp``/``epmd`` is left behind.
* Each ``ejabberdctl`` command starts a hidden Erlang node (about 0.2 s), so
  registering users and adding roster items costs about 0.2 s per call.
  Starting takes about 1-1.5 s, the seeded session fixture about 2-3 s,
  stopping about 2.3 s (``ejabberdctl stop`` returns after ~1.2 s, the VM
  exits ~1 s later).

Facts about ejabberd 23.01 that the tests rely on:

* SASL PLAIN over a plaintext stream is offered and accepted as long as the
  c2s listener does not require STARTTLS (``starttls_required: false``); no
  extra option is needed.  ejabberd itself would offer DIGEST-MD5 and X-OAUTH2
  too; like Debian's stock config we disable both, so the offer is PLAIN,
  SCRAM-SHA-512, SCRAM-SHA-256, SCRAM-SHA-1 with ``auth_password_format:
  plain`` and PLAIN, SCRAM-SHA-1 with ``scram`` (``auth_scram_hash: sha``, the
  default).  A wrong password: ``<failure><not-authorized/><text
  xml:lang='en'>Invalid username or password</text></failure>``.
* A stream to an unknown domain gets ``<host-unknown/>``; one without ``to``
  gets ``<improper-addressing/>`` (text "Missing 'to' attribute").  A message
  to an unknown local user bounces as ``type='error'`` with
  ``<error type='cancel'><service-unavailable/></error>``.
* ``add_rosteritem`` takes groups as one ``;``-separated string, cannot set
  ``ask``, does not check that the local user exists, and stores *any*
  subscription string verbatim (``bogus`` ends up in the roster XML): the
  wrapper validates.  JIDs are stringprepped (``Bob@Example.ORG`` ->
  ``bob@example.org``).  Do not rely on the order of roster items.
* ``register`` fails (exit 1, "conflict") for an existing user;
  :meth:`EjabberdServer.register` then changes the password instead.
* Users and rosters live in Mnesia under ``<base_dir>/spool`` and need the node
  running: unlike Prosody, nothing can be seeded before :meth:`start`.

This is test-setup code: it blocks (``subprocess``, ``time.sleep``) on purpose
and must not be imported by the service.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import secrets
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import servers
from servers import LOOPBACK

__all__ = [
    "ACCOUNTS",
    "ALICE_ROSTER",
    "DEFAULT_MODULES",
    "DEFAULT_OPTIONS",
    "DOMAIN",
    "EjabberdAccount",
    "EjabberdError",
    "EjabberdInfo",
    "EjabberdServer",
    "PASSWORD_FORMATS",
    "find_ejabberd",
    "patch_ejabberdctl",
    "start_seeded_server",
    "yaml_dump",
]

#: Modules loaded for every host.  ``mod_admin_extra`` provides
#: ``add_rosteritem``/``get_roster`` for ejabberdctl; ejabberd's name for
#: XEP-0280 carbons is ``mod_carboncopy`` (there is no ``mod_carbons``).
DEFAULT_MODULES: dict[str, dict[str, object]] = {
    "mod_admin_extra": {},
    "mod_roster": {},
    "mod_disco": {},
    "mod_ping": {},
    "mod_version": {},
    "mod_offline": {},
    "mod_caps": {},
    "mod_carboncopy": {},
    "mod_stream_mgmt": {},
    "mod_client_state": {},
}

#: Top-level options every generated config has (before ``extra_config``).
#: Nothing here is required for PLAIN over plaintext.  ACME is off (no
#: certificate requests), and no HTTP, s2s, STUN or MQTT listener exists unless
#: asked for.
DEFAULT_OPTIONS: dict[str, object] = {
    "loglevel": "info",
    "log_rotate_count": 0,
    "auth_method": "internal",
    # As Debian's stock ejabberd.yml: no DIGEST-MD5, no X-OAUTH2 (SCRAM-* and PLAIN stay).
    "disable_sasl_mechanisms": ["digest-md5", "X-OAUTH2"],
    "acme": {"auto": False},
    "acl": {
        "local": {"user_regexp": ""},
        "loopback": {"ip": ["127.0.0.0/8", "::1/128"]},
    },
    "access_rules": {
        "local": {"allow": "local"},
        "c2s": {"deny": "blocked", "allow": "all"},
        "announce": {"deny": "all"},
        "configure": {"deny": "all"},
    },
    # ejabberdctl may run every command (the stock default, spelled out).
    "api_permissions": {
        "console commands": {"from": ["ejabberd_ctl"], "who": "all", "what": "*"},
    },
}

PASSWORD_FORMATS = ("plain", "scram")
_SUBSCRIPTIONS = ("none", "to", "from", "both")
# Variables ejabberdctl reads from the environment (or uses internally): none
# may leak in from the caller; ours are set explicitly.
_ENV_PREFIXES = ("ERL", "EJABBERD", "CONTRIB_", "INET_DIST", "FIREWALL_", "MNESIA")
_ENV_NAMES = frozenset(
    {
        "SCRIPT", "SCRIPT_DIR", "CONFIG_DIR", "LOGS_DIR", "SPOOL_DIR", "VMARGS",
        "INSTALLUSER", "POLL", "NO_TIMEOUT", "EXEC_CMD", "IEX", "EPMD", "S", "PS",
    }
)  # fmt: skip
_ROOT_WARNING = "WARNING: It is not recommended to run ejabberd as root"


class EjabberdError(RuntimeError):
    """ejabberd could not be started, or an ejabberdctl command failed."""


class _PortClash(EjabberdError, servers.PortClash):
    pass


# --------------------------------------------------------------------------
# YAML (a small emitter: no PyYAML needed)

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def _yaml_scalar(value: object) -> str:
    scalar = servers.plain_scalar(value, null="~", language="the config")
    if scalar is not None:
        return scalar
    if isinstance(value, str):
        value.encode("utf-8")  # reject lone surrogates early
        # A JSON string (BMP escapes only, non-ASCII kept) is a YAML double-quoted scalar.
        return json.dumps(value, ensure_ascii=False)
    raise TypeError(f"cannot write {type(value).__name__} to YAML")


def _yaml_key(key: object) -> str:
    if not isinstance(key, str):
        raise TypeError(f"YAML keys must be str, got {type(key).__name__}")
    if _PLAIN_KEY.match(key) and key.lower() not in _YAML_WORDS:
        return key
    return _yaml_scalar(key)


def _yaml_lines(value: object, indent: int) -> list[str]:
    pad = " " * indent
    lines: list[str] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            head = f"{pad}{_yaml_key(key)}:"
            if isinstance(item, Mapping | list | tuple) and item:
                lines.append(head)
                lines.extend(_yaml_lines(item, indent + 2))
            else:
                lines.append(f"{head} {_yaml_inline(item)}")
    elif isinstance(value, list | tuple):
        for item in value:
            if isinstance(item, Mapping | list | tuple) and item:
                sub = _yaml_lines(item, indent + 2)
                lines.append(f"{pad}- {sub[0].lstrip()}")
                lines.extend(sub[1:])
            else:
                lines.append(f"{pad}- {_yaml_inline(item)}")
    else:
        lines.append(pad + _yaml_scalar(value))
    return lines


def _yaml_inline(value: object) -> str:
    if isinstance(value, Mapping):
        return "{}"  # only ever empty here
    if isinstance(value, list | tuple):
        return "[]"
    return _yaml_scalar(value)


def yaml_dump(document: Mapping[str, object]) -> str:
    """Block-style YAML for a mapping of str/int/bool/None/lists/mappings.

    Strings are always double-quoted (JSON escaping), keys only when needed.
    """
    return "\n".join(_yaml_lines(document, 0)) + "\n"


# --------------------------------------------------------------------------
# Binaries and the private ejabberdctl


def find_ejabberd() -> str | None:
    """Path of ``ejabberdctl`` (``$EJABBERDCTL`` overrides), or None.

    Also None if the Erlang runtime the script names (``ERL=...``, Debian:
    ``/usr/bin/erl``) is missing, since then nothing can run.
    """
    found = servers.find_binary(
        "EJABBERDCTL",
        "ejabberdctl",
        ("/usr/sbin", "/usr/local/sbin", "/opt/ejabberd/bin", "/usr/bin"),
    )
    if not found:
        return None
    try:
        with open(found, encoding="utf-8", errors="replace") as f:
            match = re.search(r'(?m)^ERL="?([^"\s]+)"?\s*$', f.read())
    except OSError:
        return None
    if match and "$" not in match.group(1) and not os.access(match.group(1), os.X_OK):
        return None
    return found


def _without_root_warning(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() != _ROOT_WARNING)


_FOREGROUND_LINE = '        exec_erl "$ERLANG_NODE" $EJABBERD_OPTS -noinput\n'
_FOREGROUND_EXEC = (
    "        # ejabberd.py: exec, so beam.smp replaces this shell (pdeathsig, signals)\n"
    '        exec "$ERL" ${S:--}name "$ERLANG_NODE" $ERLANG_OPTS $EJABBERD_OPTS -noinput\n'
)


def patch_ejabberdctl(text: str) -> tuple[str, bool]:
    """The private ejabberdctl: ``INSTALLUSER`` emptied (run as the current
    user, no ``su``); ``foreground`` ``exec``s erl if the stock line is found.

    Returns ``(script, foreground_execs)``.  Raises :class:`EjabberdError` if
    the script has no ``INSTALLUSER=`` line (not an ejabberdctl we know).
    """
    patched, count = re.subn(r"(?m)^INSTALLUSER=.*$", "INSTALLUSER=", text, count=1)
    if count != 1:
        raise EjabberdError("ejabberdctl has no INSTALLUSER= line; cannot run it unprivileged")
    execs = _FOREGROUND_LINE in patched
    if execs:
        patched = patched.replace(_FOREGROUND_LINE, _FOREGROUND_EXEC, 1)
    lines = patched.split("\n", 1)
    header = "# Copy made by tests/support/ejabberd.py: INSTALLUSER emptied, foreground exec's erl."
    if lines[0].startswith("#!"):
        patched = lines[0] + "\n" + header + "\n" + (lines[1] if len(lines) > 1 else "")
    else:
        patched = "#!/bin/bash\n" + header + "\n" + patched
    return patched, execs


# --------------------------------------------------------------------------
# The server

_instance_counter = itertools.count()


class EjabberdServer(servers.ServerProcess):
    """One ejabberd node with one or more hosts, confined to ``base_dir``.

    ``hosts``: XMPP domains (the first is the default).  ``password_format``:
    ``"plain"`` (stored in clear; every SASL mechanism works) or ``"scram"``
    (stored hashed with ``scram_hash``, ejabberd's default ``sha``; PLAIN still
    works, SCRAM only with that hash).  ``modules`` replaces
    :data:`DEFAULT_MODULES`; ``extra_config`` is merged last into the top level
    of ``ejabberd.yml`` (shallow: a key replaces the generated value).

    TLS hook (no certificates are made here; bring your own PEM files with
    key + chain): ``certfiles`` -> top-level ``certfiles``; ``starttls`` /
    ``starttls_required`` go on the plaintext c2s listener; ``direct_tls=True``
    adds a second c2s listener with ``tls: true`` on :attr:`c2s_tls_port`;
    ``c2s_options`` are merged into every c2s listener, then
    ``direct_tls_options`` into the direct-TLS one only (e.g.
    ``{"protocol_options": ["no_sslv3", "no_tlsv1_3"]}`` for a TLS 1.2-only
    port next to a STARTTLS port that negotiates TLS 1.3).  TLS options without
    ``certfiles`` raise :class:`ValueError`.  ``s2s=True`` adds an
    ``ejabberd_s2s_in`` listener on :attr:`s2s_port` (loopback).  ``http=True``
    adds an ``ejabberd_http`` listener on :attr:`http_port` (loopback) with the
    WebSocket handler on ``/ws`` and ``mod_bosh`` on ``/bosh``.

    The paths must not contain whitespace (ejabberdctl expands them unquoted).

    :meth:`start` writes the config, runs ``ejabberdctl foreground`` and waits
    until the c2s port accepts and ``ejabberdctl status`` reports "started";
    :meth:`stop` runs ``ejabberdctl stop``, waits, then SIGTERMs and SIGKILLs
    the process group (see :class:`servers.ServerProcess`).
    """

    label = "ejabberd"
    error = EjabberdError
    port_clash = _PortClash

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        *,
        hosts: Iterable[str] = ("localhost",),
        password_format: str = "plain",
        scram_hash: str | None = None,
        modules: Mapping[str, Mapping[str, object]] | None = None,
        extra_config: Mapping[str, object] | None = None,
        certfiles: Iterable[str] = (),
        starttls: bool = False,
        starttls_required: bool = False,
        direct_tls: bool = False,
        c2s_options: Mapping[str, object] | None = None,
        direct_tls_options: Mapping[str, object] | None = None,
        s2s: bool = False,
        http: bool = False,
        ejabberdctl: str | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        super().__init__(base_dir, startup_timeout=startup_timeout, stop_timeout=stop_timeout)
        if re.search(r"[\s'\"$`\\]", str(self.base_dir)):
            raise ValueError(f"base_dir must not contain whitespace or quotes: {self.base_dir}")
        self.hosts: list[str] = list(hosts)
        if not self.hosts:
            raise ValueError("at least one host is needed")
        if password_format not in PASSWORD_FORMATS:
            raise ValueError(f"password_format must be one of {PASSWORD_FORMATS}")
        self.password_format = password_format
        self.scram_hash = scram_hash
        self.modules: dict[str, dict[str, object]] = {
            name: dict(options)
            for name, options in (DEFAULT_MODULES if modules is None else modules).items()
        }
        self.extra_config: dict[str, object] = dict(extra_config or {})
        self.certfiles: list[str] = [str(p) for p in certfiles]
        self.starttls = starttls
        self.starttls_required = starttls_required
        self.direct_tls = direct_tls
        self.c2s_options: dict[str, object] = dict(c2s_options or {})
        self.direct_tls_options: dict[str, object] = dict(direct_tls_options or {})
        self.s2s = s2s
        self.http = http
        self.ejabberdctl = ejabberdctl or find_ejabberd()
        self.command_timeout = command_timeout

        self.node = f"ejabberd_test_{os.getpid()}_{next(_instance_counter)}@localhost"
        self.cookie = "test" + secrets.token_hex(12)
        self.conf_dir = self.base_dir / "conf"
        self.config_path = self.conf_dir / "ejabberd.yml"
        self.ctl_config_path = self.conf_dir / "ejabberdctl.cfg"
        self.ctl_path = self.base_dir / "ejabberdctl"
        self.spool_dir = self.base_dir / "spool"  # Mnesia
        self.log_dir = self.base_dir / "logs"
        self.log_path = self.log_dir / "ejabberd.log"
        self.error_log_path = self.log_dir / "error.log"
        self.console_path = self.base_dir / "ejabberd.console.log"  # stdout/stderr
        self.pid_path = self.base_dir / "ejabberd.pid"
        self.contrib_dir = self.base_dir / "contrib"

        self.c2s_tls_port: int | None = None
        self.s2s_port: int | None = None
        self.http_port: int | None = None
        self.dist_port: int | None = None
        self.foreground_execs = False

    # -- informational ----------------------------------------------------

    @property
    def domain(self) -> str:
        return self.hosts[0]

    # -- configuration ----------------------------------------------------

    def _listeners(self) -> list[dict[str, object]]:
        c2s_common: dict[str, object] = {
            "module": "ejabberd_c2s",
            "ip": LOOPBACK,
            "access": "c2s",
            "max_stanza_size": 1048576,
        }
        listeners: list[dict[str, object]] = [
            {
                "port": self.c2s_port,
                **c2s_common,
                "starttls": self.starttls,
                "starttls_required": self.starttls_required,
                **self.c2s_options,
            }
        ]
        if self.direct_tls:
            listeners.append(
                {
                    "port": self.c2s_tls_port,
                    **c2s_common,
                    "tls": True,
                    **self.c2s_options,
                    **self.direct_tls_options,
                }
            )
        if self.s2s:
            listeners.append({"port": self.s2s_port, "ip": LOOPBACK, "module": "ejabberd_s2s_in"})
        if self.http:
            listeners.append(
                {
                    "port": self.http_port,
                    "ip": LOOPBACK,
                    "module": "ejabberd_http",
                    "request_handlers": {"/ws": "ejabberd_http_ws", "/bosh": "mod_bosh"},
                }
            )
        return listeners

    def config(self) -> dict[str, object]:
        """The ``ejabberd.yml`` document for the current ports and options."""
        if self.direct_tls_options and not self.direct_tls:
            raise ValueError("direct_tls_options need direct_tls=True")
        if (self.starttls or self.starttls_required or self.direct_tls) and not self.certfiles:
            raise ValueError("starttls/starttls_required/direct_tls need certfiles")
        config: dict[str, object] = {"hosts": list(self.hosts)}
        config.update(DEFAULT_OPTIONS)
        config["auth_password_format"] = self.password_format
        if self.scram_hash is not None:
            config["auth_scram_hash"] = self.scram_hash
        if self.certfiles:
            config["certfiles"] = list(self.certfiles)
        config["listen"] = self._listeners()
        config["modules"] = {name: dict(opts) for name, opts in self.modules.items()}
        if self.http:
            config["modules"].setdefault("mod_bosh", {})
        config.update(self.extra_config)
        return config

    def config_text(self) -> str:
        return "# Generated by tests/support/ejabberd.py; do not edit.\n" + yaml_dump(self.config())

    def _ctl_config_text(self) -> str:
        erl_options = " ".join(
            [
                f"-setcookie {self.cookie}",
                "-kernel inet_dist_use_interface {127,0,0,1}",
                "-env ERL_CRASH_DUMP_BYTES 0",
            ]
        )
        values = {
            "ERL_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_ADDRESS": LOOPBACK,
            "ERL_OPTIONS": erl_options,
            "ERL_MAX_PORTS": "65536",
            "EJABBERD_PID_PATH": str(self.pid_path),
            "CONTRIB_MODULES_PATH": str(self.contrib_dir),
            "CONTRIB_MODULES_CONF_DIR": str(self.contrib_dir / "conf"),
            "EJABBERD_BYPASS_WARNINGS": "true",
        }
        lines = ["# Generated by tests/support/ejabberd.py; sourced by ejabberdctl."]
        lines += [f"{key}='{value}'" for key, value in values.items()]
        return "\n".join(lines) + "\n"

    def write_config(self) -> Path:
        if self.c2s_port is None:
            ports = servers.free_ports(5)
            self.c2s_port, self.dist_port = ports[0], ports[1]
            self.c2s_tls_port = ports[2] if self.direct_tls else None
            self.s2s_port = ports[3] if self.s2s else None
            self.http_port = ports[4] if self.http else None
        for directory in (self.conf_dir, self.spool_dir, self.log_dir, self.contrib_dir):
            directory.mkdir(parents=True, exist_ok=True)
        servers.atomic_write(self.config_path, self.config_text().encode("utf-8"))
        servers.atomic_write(self.ctl_config_path, self._ctl_config_text().encode("utf-8"))
        servers.atomic_write(
            self.conf_dir / "inetrc",
            b'{lookup,["file","native"]}.\n'
            b'{host,{127,0,0,1}, ["localhost"]}.\n{file, resolv, "/etc/resolv.conf"}.\n',
        )
        self._write_ctl()
        return self.config_path

    def _write_ctl(self) -> None:
        self._require_binary()
        assert self.ejabberdctl is not None
        original = Path(self.ejabberdctl).read_text("utf-8", "surrogateescape")
        script, self.foreground_execs = patch_ejabberdctl(original)
        servers.atomic_write(self.ctl_path, script.encode("utf-8", "surrogateescape"))
        self.ctl_path.chmod(0o755)

    def _env(self) -> dict[str, str]:
        extra = {
            "HOME": str(self.base_dir),  # no ~/.erlang.cookie, no ~/.ejabberd-modules
            # Erlang decodes argv (nicks, groups, passwords) by the locale.
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "EJABBERD_CONFIG_PATH": str(self.config_path),
            "EJABBERDCTL_CONFIG_PATH": str(self.ctl_config_path),
            "LOGS_DIR": str(self.log_dir),
            "SPOOL_DIR": str(self.spool_dir),
        }
        return servers.clean_env(_ENV_PREFIXES, _ENV_NAMES, extra)

    def _ctl_argv(self, *args: str) -> list[str]:
        return [
            str(self.ctl_path),
            "--config-dir", str(self.conf_dir),
            "--ctl-config", str(self.ctl_config_path),
            "--config", str(self.config_path),
            "--logs", str(self.log_dir),
            "--spool", str(self.spool_dir),
            "--node", self.node,
            *args,
        ]  # fmt: skip

    # -- lifecycle hooks (see servers.ServerProcess) ----------------------

    def _require_binary(self) -> None:
        if not self.ejabberdctl:
            raise EjabberdError("ejabberdctl not found (set $EJABBERDCTL or install ejabberd)")

    def _log_files(self) -> tuple[Path, ...]:
        return (self.log_path, self.error_log_path, self.console_path)

    def _launch(self, console: IO[bytes]) -> subprocess.Popen[bytes]:
        # Under setpriv --pdeathsig, beam.smp dies with the test process even
        # if that is SIGKILLed (beam.smp *is* this process when foreground_execs);
        # its own process group lets stop() kill erl_child_setup, inet_gethost
        # and a hung control node too.
        return servers.spawn(
            self._ctl_argv("foreground"), console=console, cwd=self.spool_dir, env=self._env()
        )

    def _port_clash_logged(self) -> bool:
        logs = servers.read_text(self.log_path) + servers.read_text(self.console_path)
        return "eaddrinuse" in logs

    def _ready(self) -> bool:
        if not super()._ready():  # the c2s port accepts
            return False
        status = self.ctl("status", check=False, timeout=10)
        return status.returncode == 0 and "status: started" in status.stdout

    def _stop_politely(self, process: subprocess.Popen[bytes]) -> None:
        """``ejabberdctl stop``, and wait up to :attr:`stop_timeout` seconds."""
        try:
            self.ctl("stop", check=False, timeout=self.stop_timeout)
        except (subprocess.TimeoutExpired, OSError):
            pass
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            pass

    # -- ejabberdctl ------------------------------------------------------

    def ctl(
        self, *args: str, check: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``ejabberdctl args...`` against this node (which must be running).

        ``stdout``/``stderr`` are text, without the "not recommended to run
        ejabberd as root" warning.  ``check``: raise :class:`EjabberdError` on a
        non-zero exit (3 means the node is down).
        """
        if not self.ctl_path.exists():
            self.write_config()
        result = servers.run_in_group(
            self._ctl_argv(*args),
            env=self._env(),
            cwd=self.spool_dir,
            timeout=self.command_timeout if timeout is None else timeout,
        )
        result.stdout = _without_root_warning(result.stdout)
        result.stderr = _without_root_warning(result.stderr)
        if check and result.returncode != 0:
            shown = args[:3] if args and args[0] in ("register", "change_password") else args
            raise EjabberdError(
                f"ejabberdctl {' '.join(shown)} ... exited with {result.returncode}\n"
                f"{result.stdout}{result.stderr}".rstrip()
            )
        return result

    def _check_host(self, host: str) -> None:
        if host not in self.hosts:
            raise ValueError(f"{host!r} is not a host of this server ({self.hosts})")

    def register(self, user: str, host: str, password: str) -> None:
        """Create ``user@host``, or reset its password if it exists."""
        self._check_host(host)
        result = self.ctl("register", user, host, password, check=False)
        if result.returncode == 0:
            return
        if "conflict" in result.stdout + result.stderr:
            self.ctl("change_password", user, host, password)
            return
        raise EjabberdError(
            f"ejabberdctl register {user} {host} ... exited with {result.returncode}\n"
            f"{result.stdout}{result.stderr}".rstrip()
        )

    def unregister(self, user: str, host: str) -> None:
        self.ctl("unregister", user, host)

    def user_exists(self, user: str, host: str) -> bool:
        """``ejabberdctl check_account`` (exit 0 = exists, 1 = not)."""
        return self.ctl("check_account", user, host, check=False).returncode == 0

    def add_rosteritem(
        self,
        localuser: str,
        localhost: str,
        user: str,
        host: str,
        nick: str | None,
        group: str | Iterable[str] | None,
        subs: str,
    ) -> None:
        """``ejabberdctl add_rosteritem``: put ``user@host`` on
        ``localuser@localhost``'s roster (replacing an existing item).

        ``group``: one group, an iterable of groups, or None/"" for none (sent
        ``;``-separated, so a group name must not contain ``;``).  ``subs``:
        none/to/from/both (ejabberd itself would store anything).  ``nick``
        None or "" means no name.  The local user need not exist yet.
        """
        self._check_host(localhost)
        if subs not in _SUBSCRIPTIONS:
            raise ValueError(f"subs must be one of {_SUBSCRIPTIONS}, not {subs!r}")
        if group is None:
            groups: list[str] = []
        elif isinstance(group, str):
            groups = [group] if group else []
        else:
            groups = list(dict.fromkeys(group))
        for name in groups:
            if not isinstance(name, str) or not name or ";" in name:
                raise ValueError(f"group names must be non-empty and without ';': {name!r}")
        if not user or not host or "/" in host or "@" in user + host:
            raise ValueError(f"bad contact {user!r} @ {host!r}")
        self.ctl(
            "add_rosteritem", localuser, localhost, user, host, nick or "", ";".join(groups), subs
        )

    def seed_roster(self, user: str, host: str, items: Iterable[Mapping[str, object]]) -> None:
        """Add Prosody-style roster items (``jid``, ``name``, ``subscription``,
        ``groups``; ``ask`` must be None: add_rosteritem cannot set it)."""
        for item in items:
            jid = item["jid"]
            if not isinstance(jid, str) or jid.count("@") != 1 or "/" in jid:
                raise ValueError(f"roster item jid must be a bare user@host JID: {jid!r}")
            if item.get("ask"):
                raise ValueError(f"ejabberdctl cannot set ask for {jid}")
            contact, contact_host = jid.split("@")
            self.add_rosteritem(
                user,
                host,
                contact,
                contact_host,
                item.get("name"),  # type: ignore[arg-type]
                item.get("groups") or [],  # type: ignore[arg-type]
                str(item.get("subscription") or "none"),
            )

    def get_roster(self, user: str, host: str) -> list[dict[str, object]]:
        """``ejabberdctl get_roster`` as Prosody-style dicts (sorted by jid).

        ejabberd prints one tab-separated line per (item, group); a nick with a
        tab or newline would confuse this parser.
        """
        self._check_host(host)
        out = self.ctl("get_roster", user, host).stdout
        items: dict[str, dict[str, object]] = {}
        for line in out.splitlines():
            if not line.strip():
                continue
            jid, nick, subscription, ask, group = (line.split("\t") + [""] * 5)[:5]
            item = items.setdefault(
                jid,
                {
                    "jid": jid,
                    "name": nick or None,
                    "subscription": subscription,
                    "ask": None if ask in ("", "none", "undefined") else ask,
                    "groups": [],
                },
            )
            if group:
                item["groups"].append(group)  # type: ignore[union-attr]
        return [items[jid] for jid in sorted(items)]


# --------------------------------------------------------------------------
# The seeded server used by tests/conftest.py

DOMAIN = "localhost"

#: Accounts of the shared test server on :data:`DOMAIN`: ``{user: password}``.
ACCOUNTS: dict[str, str] = {
    "alice": "alice-ej-pw-1",
    "bob": "bob-ej-pw-2",
}

#: alice@localhost's roster: several groups, a name needing XML escaping,
#: non-ASCII, no groups at all; ``ask`` cannot be seeded through ejabberdctl.
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
        "name": "Carol \u2615 Zo\u00eb",
        "subscription": "to",
        "ask": None,
        "groups": ["Friends", "Book Club"],
    },
    {
        "jid": "obrien@example.org",
        "name": "O'Brien & <Co>",
        "subscription": "from",
        "ask": None,
        "groups": [],
    },
]


class EjabberdAccount(servers.Account):
    """An account on the ejabberd test server (a :class:`servers.Account`)."""


@dataclass
class EjabberdInfo(servers.ServerInfo):
    """What the ``ejabberd`` fixture yields.

    Treat the seeded accounts as read-only (other tests share them); a test
    that changes a roster or leaves offline messages should use :meth:`new_user`.
    """

    server: EjabberdServer
    host: str
    port: int
    domain: str
    users: dict[str, str]
    rosters: dict[str, list[dict[str, object]]]
    log_dir: Path

    def new_user(
        self,
        prefix: str = "user",
        *,
        password: str | None = None,
        roster: Iterable[Mapping[str, object]] | None = None,
    ) -> EjabberdAccount:
        """Register a fresh account (unique name) and optionally seed its roster."""
        user, password = self._unique_user(prefix, password)
        self.server.register(user, self.domain, password)
        if roster is not None:
            self.server.seed_roster(user, self.domain, roster)
        return EjabberdAccount(user, self.domain, password)


def start_seeded_server(base_dir: str | os.PathLike[str], **options: object) -> EjabberdInfo:
    """Start ejabberd, register :data:`ACCOUNTS`, seed alice's roster.

    ``options`` go to :class:`EjabberdServer`.  The caller must
    ``info.server.stop()``.
    """
    server = EjabberdServer(base_dir, **options)  # type: ignore[arg-type]
    server.start()
    try:
        for user, password in ACCOUNTS.items():
            server.register(user, DOMAIN, password)
        server.seed_roster("alice", DOMAIN, ALICE_ROSTER)
        assert server.c2s_port is not None
        return EjabberdInfo(
            server=server,
            host=server.host,
            port=server.c2s_port,
            domain=DOMAIN,
            users=dict(ACCOUNTS),
            rosters={"alice": ALICE_ROSTER},
            log_dir=server.log_dir,
        )
    except BaseException:
        server.stop()
        raise


# --------------------------------------------------------------------------
# A demo server for trying the service by hand


def main(argv: list[str] | None = None) -> int:
    """Run the seeded test server in the foreground until interrupted."""
    import argparse

    parser = argparse.ArgumentParser(
        description="Run a throw-away ejabberd on 127.0.0.1 with the test accounts and roster."
    )
    parser.add_argument("--dir", help="state directory (default: a new temporary one)")
    parser.add_argument("--scram", action="store_true", help="store passwords as SCRAM")
    args = parser.parse_args(argv)
    base = servers.demo_dir(args.dir, "portofcall-ejabberd-")
    info = start_seeded_server(base, password_format="scram" if args.scram else "plain")
    server = info.server
    print(
        "ejabberd on %s:%d in %.2f s (state in %s)"
        % (info.host, info.port, server.startup_seconds or 0, base),
        flush=True,
    )
    for user, password in info.users.items():
        print("  %s@%s  password %r" % (user, info.domain, password), flush=True)
    return servers.serve_until_interrupted(server)


if __name__ == "__main__":
    raise SystemExit(main())
