"""
Run a local XMPP server process on loopback: free ports, atomic writes, log
reading, a clean environment, finding a binary, starting the server in its
own process group (with C{setpriv --pdeathsig} where available, so it dies
with its parent even if that is SIGKILLed), and L{ServerProcess}: the start /
wait-until-ready / stop (SIGTERM, then SIGKILL the process group) life
cycle, with an atexit registry so that no server outlives the interpreter.

Used by the demo (L{demo}, C{--demo}) and by the tests' fixtures
(tests/support/prosody.py, tests/support/ejabberd.py).  It blocks
(C{subprocess}, C{time.sleep}) on purpose: the service calls it only before
its reactor runs and when it stops, never while serving.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from typing import Self

LOOPBACK = "127.0.0.1"
DEFAULT_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


class PortClash(Exception):
    """Mixed into a server module's error: a port was taken; retry with new ones."""


# --------------------------------------------------------------------------
# Files, ports, binaries, environment, config values


def find_binary(env_var: str, name: str, directories: Iterable[str]) -> str | None:
    """``$env_var`` if set (None unless executable), else ``name`` on PATH or
    in ``directories`` (first executable one), else None."""
    explicit = os.environ.get(env_var)
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    candidates = [shutil.which(name), *(os.path.join(d, name) for d in directories)]
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def free_ports(count: int, host: str = LOOPBACK) -> list[int]:
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


def port_open(host: str, port: int | None) -> bool:
    """Whether ``host:port`` accepts a TCP connection (within 0.5 s)."""
    if port is None:
        return False
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it."""
    scratch = path.with_name(path.name + ".tmp%d" % os.getpid())
    with open(scratch, "wb") as f:
        f.write(data)
    os.replace(scratch, path)


def read_text(path: Path) -> str:
    """The whole file as text ("" if it does not exist yet)."""
    try:
        return path.read_text("utf-8", "replace")
    except FileNotFoundError:
        return ""


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file (from its last 64 KiB)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"<{path}: {exc}>"
    return "\n".join(data.splitlines()[-lines:])


def clean_env(
    prefixes: tuple[str, ...],
    names: Collection[str] = (),
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """This process's environment without variables starting with one of
    ``prefixes`` or named in ``names``, with a PATH, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes) and k not in names}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(extra or {})
    return env


def plain_scalar(value: object, *, null: str, language: str) -> str | None:
    """None (as ``null``), a bool, an int or a finite float as both Lua and
    YAML write it; None for any other value.  NaN and infinities raise
    ValueError ("cannot be written to ``language``")."""
    if value is None:
        return null
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"NaN/inf cannot be written to {language}")
        return repr(value)
    return None


# --------------------------------------------------------------------------
# Processes


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


def pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig TERM --`` if this setpriv has it, else nothing."""
    setpriv = shutil.which("setpriv")
    if setpriv and _setpriv_has_pdeathsig(setpriv):
        return [setpriv, "--pdeathsig", "TERM", "--"]
    return []


def spawn(
    argv: list[str], *, console: IO[bytes], cwd: Path, env: Mapping[str, str]
) -> subprocess.Popen[bytes]:
    """Start a server: stdout and stderr to ``console``, no stdin, in its own
    session and process group (a ^C to pytest does not hit it mid-test, and
    :meth:`ServerProcess.stop` can kill all of it), under ``setpriv
    --pdeathsig`` where possible (it dies with the test process even if that
    is SIGKILLed; setpriv execs, so the server is still our direct child)."""
    return subprocess.Popen(
        [*pdeathsig_prefix(), *argv],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,
    )


def kill_group(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_alive(pgid: int) -> bool:
    return kill_group(pgid, 0)


def wait_group_gone(pgid: int, timeout: float) -> bool:
    """Wait until no process of group ``pgid`` is left; False on timeout."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------
# Every live server is stopped at exit


_live_servers: set[ServerProcess] = set()
_atexit_registered = False


def register_for_exit(server: ServerProcess) -> None:
    global _atexit_registered
    _live_servers.add(server)
    if not _atexit_registered:
        atexit.register(stop_all)
        _atexit_registered = True


def unregister_for_exit(server: ServerProcess) -> None:
    _live_servers.discard(server)


def stop_all() -> None:
    """atexit safety net: no server outlives the interpreter."""
    for server in list(_live_servers):
        try:
            server.stop()
        except Exception:  # noqa: BLE001 - best effort at exit
            pass


# --------------------------------------------------------------------------
# The life cycle


class ServerProcess:
    """One XMPP server process on loopback, confined to ``base_dir``.

    A subclass sets :attr:`label`, :attr:`error` and :attr:`port_clash` (a
    subclass of both ``error`` and :class:`PortClash`), ``log_path`` and
    ``console_path``, and implements ``write_config()`` (which picks free
    ports when ``c2s_port`` is None) and the hooks below.  :meth:`start`
    retries with new ports (up to three times) when the server reports a
    port in use (unless :attr:`fixed_ports`), and raises :attr:`error` with
    the log tails on failure or timeout.
    """

    host = LOOPBACK
    #: For messages: "<label> failed to start: <label in lower case> exited ...".
    label: ClassVar[str] = "server"
    error: ClassVar[type[Exception]] = RuntimeError
    port_clash: ClassVar[type[Exception]] = PortClash
    #: True: the ports set before :meth:`start` are the only ones tried (a
    #: port in use fails the start); False: a clash retries with free ones.
    fixed_ports = False

    log_path: Path
    console_path: Path

    def __init__(
        self, base_dir: str | os.PathLike[str], *, startup_timeout: float, stop_timeout: float
    ) -> None:
        self.base_dir = Path(base_dir).resolve()
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.c2s_port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        #: Seconds the last successful :meth:`start` took.
        self.startup_seconds: float | None = None
        self._console: IO[bytes] | None = None

    # -- hooks ------------------------------------------------------------

    def write_config(self) -> Path:
        raise NotImplementedError

    def _require_binary(self) -> None:
        """Raise :attr:`error` if the server is not installed."""

    def _log_files(self) -> Iterable[Path]:
        """Removed before each start."""
        return (self.log_path, self.console_path)

    def _launch(self, console: IO[bytes]) -> subprocess.Popen[bytes]:
        """Start the server process (with :func:`spawn`)."""
        raise NotImplementedError

    def _port_clash_logged(self) -> bool:
        raise NotImplementedError

    def _ready(self) -> bool:
        """Whether the started server is ready for tests."""
        return port_open(self.host, self.c2s_port)

    def _stop_politely(self, process: subprocess.Popen[bytes]) -> None:
        """Ask the server to stop before it gets SIGTERM (and wait for it)."""

    # -- informational ----------------------------------------------------

    @property
    def port(self) -> int | None:
        """Alias of :attr:`c2s_port`."""
        return self.c2s_port

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        return tail(self.log_path, lines)

    def __repr__(self) -> str:
        state = f"pid={self.process.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.base_dir} c2s={self.c2s_port} {state}>"

    # -- lifecycle --------------------------------------------------------

    def start(self) -> Self:
        """Write the config, start the server and wait until it is ready."""
        if self.running:
            return self
        self._require_binary()
        last_error: Exception | None = None
        for _attempt in range(1 if self.fixed_ports else 3):
            try:
                self._start_once()
                return self
            except PortClash as exc:
                last_error = exc
                self.stop()
                self.c2s_port = None  # write_config picks new ports
            except BaseException:
                self.stop()  # e.g. timed out: do not leave it running
                raise
        assert last_error is not None
        raise last_error

    def _start_once(self) -> None:
        started = time.monotonic()
        self.write_config()
        for path in self._log_files():
            path.unlink(missing_ok=True)
        self._console = open(self.console_path, "ab")
        self.process = self._launch(self._console)
        register_for_exit(self)
        self._wait_until_ready(started + self.startup_timeout)
        self.startup_seconds = time.monotonic() - started

    def _wait_until_ready(self, deadline: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                reason = f"{self.label.lower()} exited with status {self.process.returncode}"
                if self._port_clash_logged():
                    raise self.port_clash(self._failure(reason + " (a port was already in use)"))
                raise self.error(self._failure(reason))
            if self._port_clash_logged():
                raise self.port_clash(self._failure("a port was already in use"))
            if self._ready():
                return
            if time.monotonic() > deadline:
                raise self.error(
                    self._failure(
                        f"c2s port {self.host}:{self.c2s_port} not ready "
                        f"after {self.startup_timeout:.1f} s"
                    )
                )
            time.sleep(0.05)

    def _failure(self, reason: str) -> str:
        return (
            f"{self.label} failed to start: {reason}\n"
            f"--- {self.log_path} (tail) ---\n{self.log_tail()}\n"
            f"--- {self.console_path} (tail) ---\n{tail(self.console_path, 20)}"
        )

    def stop(self) -> None:
        """Ask politely (subclass), then SIGTERM, then after :attr:`stop_timeout`
        seconds SIGKILL the whole process group.  Idempotent."""
        process = self.process
        if process is not None:
            pgid = process.pid  # start_new_session: the leader's pid
            try:
                if process.poll() is None:
                    self._stop_politely(process)
                if process.poll() is None:
                    kill_group(pgid, signal.SIGTERM)
                    try:
                        process.wait(self.stop_timeout)
                    except subprocess.TimeoutExpired:
                        pass
            finally:
                # Also reached on KeyboardInterrupt: never leave anything behind.
                kill_group(pgid, signal.SIGKILL)
                if process.poll() is None:
                    process.kill()
                process.wait()
                wait_group_gone(pgid, 5)
                self.process = None
                unregister_for_exit(self)
        if self._console is not None:
            self._console.close()
            self._console = None

    def restart(self) -> Self:
        """Stop and start again (same ports; config regenerated from options)."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
