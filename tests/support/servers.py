"""What the real-server test fixtures share (tests/support/prosody.py, tests/support/ejabberd.py).

The process life cycle (free ports, spawning, L{ServerProcess}, ...) lives in
the package (L{portofcall_xmpp.localserver}), shared with C{--demo}; here are
the test-only parts: running a command in a process group, accounts, the
fixtures' info base class, and the demo mode of ``python tests/support/<server>.py``.

This is test-setup code: it blocks (``subprocess``, ``time.sleep``) on purpose.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from portofcall_xmpp.localserver import (  # noqa: F401 (the fixtures use them as servers.X)
    LOOPBACK,
    PortClash,
    ServerProcess,
    atomic_write,
    clean_env,
    find_binary,
    free_ports,
    kill_group,
    plain_scalar,
    port_open,
    read_text,
    spawn,
    tail,
)


def run_in_group(
    argv: list[str], *, env: Mapping[str, str], cwd: Path, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` (text, no stdin) in a new process group that is
    killed entirely when it ends or times out, grandchildren included."""
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
        kill_group(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    finally:
        # Nothing of a finished command may linger.
        kill_group(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


# --------------------------------------------------------------------------
# Seeded servers: accounts, and the demo mode of ``python tests/support/<server>.py``


@dataclass(frozen=True)
class Account:
    user: str
    domain: str
    password: str

    @property
    def jid(self) -> str:
        return f"{self.user}@{self.domain}"


@dataclass
class ServerInfo:
    """Base of what a seeded-server fixture yields (a subclass adds the
    fields, among them ``domain``, and ``new_user()``)."""

    _counter: itertools.count = field(default_factory=itertools.count, repr=False, kw_only=True)

    def jid(self, user: str, domain: str | None = None) -> str:
        return f"{user}@{domain or self.domain}"

    def _unique_user(self, prefix: str, password: str | None) -> tuple[str, str]:
        """A user name no other test process or call uses, and its password."""
        user = f"{prefix}{os.getpid()}x{next(self._counter)}".lower()
        return user, password or f"pw-{user}"


def demo_dir(directory: str | None, prefix: str) -> Path:
    """``--dir`` of a demo server (created), or a new temporary directory."""
    import tempfile

    base = Path(directory) if directory else Path(tempfile.mkdtemp(prefix=prefix))
    base.mkdir(parents=True, exist_ok=True)
    return base


def serve_until_interrupted(server: ServerProcess) -> int:
    """Keep a demo server running until it exits or ^C; then stop it."""
    try:
        while server.running:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0
