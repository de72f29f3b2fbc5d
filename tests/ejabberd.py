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

import atexit
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

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

LOOPBACK = "127.0.0.1"

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


class _PortClash(EjabberdError):
    pass


# --------------------------------------------------------------------------
# YAML (a small emitter: no PyYAML needed)

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_YAML_WORDS = frozenset({"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"})


def _yaml_scalar(value: object) -> str:
    if value is None:
        return "~"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("NaN/inf cannot be written to the config")
        return repr(value)
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
# Binaries, ports, processes


def find_ejabberd() -> str | None:
    """Path of ``ejabberdctl`` (``$EJABBERDCTL`` overrides), or None.

    Also None if the Erlang runtime the script names (``ERL=...``, Debian:
    ``/usr/bin/erl``) is missing, since then nothing can run.
    """
    explicit = os.environ.get("EJABBERDCTL")
    found: str | None = None
    if explicit:
        found = explicit if os.access(explicit, os.X_OK) else None
    else:
        candidates = [shutil.which("ejabberdctl")]
        candidates += [
            os.path.join(d, "ejabberdctl")
            for d in ("/usr/sbin", "/usr/local/sbin", "/opt/ejabberd/bin", "/usr/bin")
        ]
        found = next((c for c in candidates if c and os.access(c, os.X_OK)), None)
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


def _free_ports(count: int, host: str = LOOPBACK) -> list[int]:
    """``count`` distinct ports that were free a moment ago (bind to port 0)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _port_open(host: str, port: int | None) -> bool:
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def _read(path: Path) -> str:
    try:
        return path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _without_root_warning(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.strip() != _ROOT_WARNING)


_pdeathsig_cache: dict[str, bool] = {}


def _setpriv_has_pdeathsig(setpriv: str) -> bool:
    if setpriv not in _pdeathsig_cache:
        try:
            out = subprocess.run(
                [setpriv, "--help"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        _pdeathsig_cache[setpriv] = "--pdeathsig" in out
    return _pdeathsig_cache[setpriv]


def _kill_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _group_alive(pgid: int) -> bool:
    return _kill_group(pgid, 0)


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _run_in_group(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a new process group that is killed entirely on
    timeout (the Erlang control node is a grandchild of the shell script)."""
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        _kill_group(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        # Nothing of a finished control command may linger.
        _kill_group(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


_FOREGROUND_LINE = '        exec_erl "$ERLANG_NODE" $EJABBERD_OPTS -noinput\n'
_FOREGROUND_EXEC = (
    "        # tests/ejabberd.py: exec, so beam.smp replaces this shell (pdeathsig, signals)\n"
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
    header = "# Copy made by tests/ejabberd.py: INSTALLUSER emptied, foreground exec's erl."
    if lines[0].startswith("#!"):
        patched = lines[0] + "\n" + header + "\n" + (lines[1] if len(lines) > 1 else "")
    else:
        patched = "#!/bin/bash\n" + header + "\n" + patched
    return patched, execs


# --------------------------------------------------------------------------
# The server

_instance_counter = itertools.count()


class EjabberdServer:
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
    ``ejabberd_s2s_in`` listener on :attr:`s2s_port` (loopback).

    The paths must not contain whitespace (ejabberdctl expands them unquoted).
    """

    host = LOOPBACK

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
        ejabberdctl: str | None = None,
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        command_timeout: float = 30.0,
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
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
        self.ejabberdctl = ejabberdctl or find_ejabberd()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
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

        self.c2s_port: int | None = None
        self.c2s_tls_port: int | None = None
        self.s2s_port: int | None = None
        self.dist_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.foreground_execs = False
        self.startup_seconds: float | None = None
        self._console = None

    # -- informational ----------------------------------------------------

    @property
    def port(self) -> int | None:
        """Alias of :attr:`c2s_port`."""
        return self.c2s_port

    @property
    def domain(self) -> str:
        return self.hosts[0]

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)

    def __repr__(self) -> str:
        state = f"pid={self.process.pid}" if self.running else "stopped"
        return f"<EjabberdServer {self.base_dir} c2s={self.c2s_port} {state}>"

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
        config.update(self.extra_config)
        return config

    def config_text(self) -> str:
        return "# Generated by tests/ejabberd.py; do not edit.\n" + yaml_dump(self.config())

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
        lines = ["# Generated by tests/ejabberd.py; sourced by ejabberdctl."]
        lines += [f"{key}='{value}'" for key, value in values.items()]
        return "\n".join(lines) + "\n"

    def write_config(self) -> Path:
        if self.c2s_port is None:
            ports = _free_ports(4)
            self.c2s_port, self.dist_port = ports[0], ports[1]
            self.c2s_tls_port = ports[2] if self.direct_tls else None
            self.s2s_port = ports[3] if self.s2s else None
        for directory in (self.conf_dir, self.spool_dir, self.log_dir, self.contrib_dir):
            directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.config_path, self.config_text().encode("utf-8"))
        _atomic_write(self.ctl_config_path, self._ctl_config_text().encode("utf-8"))
        _atomic_write(
            self.conf_dir / "inetrc",
            b'{lookup,["file","native"]}.\n'
            b'{host,{127,0,0,1}, ["localhost"]}.\n{file, resolv, "/etc/resolv.conf"}.\n',
        )
        self._write_ctl()
        return self.config_path

    def _write_ctl(self) -> None:
        if not self.ejabberdctl:
            raise EjabberdError("ejabberdctl not found (set $EJABBERDCTL or install ejabberd)")
        original = Path(self.ejabberdctl).read_text("utf-8", "surrogateescape")
        script, self.foreground_execs = patch_ejabberdctl(original)
        _atomic_write(self.ctl_path, script.encode("utf-8", "surrogateescape"))
        self.ctl_path.chmod(0o755)

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(_ENV_PREFIXES) and k not in _ENV_NAMES
        }
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(
            {
                "HOME": str(self.base_dir),  # no ~/.erlang.cookie, no ~/.ejabberd-modules
                # Erlang decodes argv (nicks, groups, passwords) by the locale.
                "LANG": "C.UTF-8",
                "LC_ALL": "C.UTF-8",
                "EJABBERD_CONFIG_PATH": str(self.config_path),
                "EJABBERDCTL_CONFIG_PATH": str(self.ctl_config_path),
                "LOGS_DIR": str(self.log_dir),
                "SPOOL_DIR": str(self.spool_dir),
            }
        )
        return env

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

    # -- lifecycle --------------------------------------------------------

    def start(self) -> EjabberdServer:
        """Write the config, run ``ejabberdctl foreground`` and wait until the
        c2s port accepts and ``ejabberdctl status`` reports "started".

        Retries with new ports if one was taken in the meantime.  Raises
        :class:`EjabberdError` (with the log tail) on failure or timeout.
        """
        if self.running:
            return self
        if not self.ejabberdctl:
            raise EjabberdError("ejabberdctl not found (set $EJABBERDCTL or install ejabberd)")
        last_error: EjabberdError | None = None
        for _attempt in range(3):
            try:
                self._start_once()
                return self
            except _PortClash as exc:
                last_error = exc
                self.stop()
                self.c2s_port = None  # pick new ports
            except BaseException:
                self.stop()  # e.g. timed out: do not leave it running
                raise
        assert last_error is not None
        raise last_error

    def _start_once(self) -> None:
        started = time.monotonic()
        self.write_config()
        for path in (self.log_path, self.error_log_path, self.console_path):
            path.unlink(missing_ok=True)
        self._console = open(self.console_path, "ab")
        argv = self._ctl_argv("foreground")
        setpriv = shutil.which("setpriv")
        if setpriv and _setpriv_has_pdeathsig(setpriv):
            # beam.smp dies with the test process even if that is SIGKILLed
            # (beam.smp *is* this process when foreground_execs).
            argv = [setpriv, "--pdeathsig", "TERM", "--", *argv]
        self.process = subprocess.Popen(
            argv,
            cwd=self.spool_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            env=self._env(),
            start_new_session=True,  # own process group: stop() kills all of it
        )
        _register_for_exit(self)
        self._wait_until_ready(started)
        self.startup_seconds = time.monotonic() - started

    def _wait_until_ready(self, started: float) -> None:
        assert self.process is not None
        deadline = started + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                reason = f"ejabberd exited with status {self.process.returncode}"
                if self._port_clash_logged():
                    raise _PortClash(self._failure(reason + " (a port was already in use)"))
                raise EjabberdError(self._failure(reason))
            if self._port_clash_logged():
                raise _PortClash(self._failure("a port was already in use"))
            if _port_open(self.host, self.c2s_port):
                status = self.ctl("status", check=False, timeout=10)
                if status.returncode == 0 and "status: started" in status.stdout:
                    return
            if time.monotonic() > deadline:
                raise EjabberdError(
                    self._failure(
                        f"c2s port {self.host}:{self.c2s_port} not ready "
                        f"after {self.startup_timeout:.1f} s"
                    )
                )
            time.sleep(0.05)

    def _port_clash_logged(self) -> bool:
        text = _read(self.log_path) + _read(self.console_path)
        return "eaddrinuse" in text

    def _failure(self, reason: str) -> str:
        return (
            f"ejabberd failed to start: {reason}\n"
            f"--- {self.log_path} (tail) ---\n{self.log_tail()}\n"
            f"--- {self.console_path} (tail) ---\n{_tail(self.console_path, 20)}"
        )

    def stop(self) -> None:
        """``ejabberdctl stop``; then SIGTERM, then SIGKILL the process group
        after :attr:`stop_timeout` seconds.  Idempotent."""
        process = self.process
        if process is not None:
            pgid = process.pid  # start_new_session: the leader's pid
            try:
                if process.poll() is None:
                    try:
                        self.ctl("stop", check=False, timeout=self.stop_timeout)
                    except (subprocess.TimeoutExpired, OSError):
                        pass
                    try:
                        process.wait(self.stop_timeout)
                    except subprocess.TimeoutExpired:
                        _kill_group(pgid, signal.SIGTERM)
                        try:
                            process.wait(self.stop_timeout)
                        except subprocess.TimeoutExpired:
                            pass
            finally:
                # Also reached on KeyboardInterrupt: never leave anything behind
                # (beam.smp, erl_child_setup, inet_gethost, a hung control node).
                _kill_group(pgid, signal.SIGKILL)
                if process.poll() is None:
                    process.kill()
                process.wait()
                _wait_group_gone(pgid, 5)
                self.process = None
                _unregister_for_exit(self)
        if self._console is not None:
            self._console.close()
            self._console = None

    def restart(self) -> EjabberdServer:
        """Stop and start again (same ports and spool; config regenerated)."""
        self.stop()
        return self.start()

    def __enter__(self) -> EjabberdServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

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
        result = _run_in_group(
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


@dataclass(frozen=True)
class EjabberdAccount:
    user: str
    domain: str
    password: str

    @property
    def jid(self) -> str:
        return f"{self.user}@{self.domain}"


@dataclass
class EjabberdInfo:
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
    _counter: itertools.count = field(default_factory=itertools.count, repr=False)

    def jid(self, user: str, domain: str | None = None) -> str:
        return f"{user}@{domain or self.domain}"

    def new_user(
        self,
        prefix: str = "user",
        *,
        password: str | None = None,
        roster: Iterable[Mapping[str, object]] | None = None,
    ) -> EjabberdAccount:
        """Register a fresh account (unique name) and optionally seed its roster."""
        user = f"{prefix}{os.getpid()}x{next(self._counter)}".lower()
        password = password or f"pw-{user}"
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
# helpers


def _atomic_write(path: Path, data: bytes) -> None:
    scratch = path.with_name(path.name + ".tmp%d" % os.getpid())
    with open(scratch, "wb") as f:
        f.write(data)
    os.replace(scratch, path)


_live_servers: set[EjabberdServer] = set()
_atexit_registered = False


def _register_for_exit(server: EjabberdServer) -> None:
    global _atexit_registered
    _live_servers.add(server)
    if not _atexit_registered:
        atexit.register(_stop_all)
        _atexit_registered = True


def _unregister_for_exit(server: EjabberdServer) -> None:
    _live_servers.discard(server)


def _stop_all() -> None:
    """atexit safety net: no ejabberd outlives the interpreter."""
    for server in list(_live_servers):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# --------------------------------------------------------------------------
# A demo server for trying the service by hand


def main(argv: list[str] | None = None) -> int:
    """Run the seeded test server in the foreground until interrupted."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(
        description="Run a throw-away ejabberd on 127.0.0.1 with the test accounts and roster."
    )
    parser.add_argument("--dir", help="state directory (default: a new temporary one)")
    parser.add_argument("--scram", action="store_true", help="store passwords as SCRAM")
    args = parser.parse_args(argv)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="portofcall-ejabberd-"))
    base.mkdir(parents=True, exist_ok=True)
    info = start_seeded_server(base, password_format="scram" if args.scram else "plain")
    server = info.server
    print(
        "ejabberd on %s:%d in %.2f s (state in %s)"
        % (info.host, info.port, server.startup_seconds or 0, base),
        flush=True,
    )
    for user, password in info.users.items():
        print("  %s@%s  password %r" % (user, info.domain, password), flush=True)
    try:
        while server.running:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
