"""
python tests/support/prosody.py, the throw-away Prosody of the README: the
ports asked for or a loud failure, never other ports without a word.
"""

import os
import signal
import socket
import subprocess
import sys

from servers import free_ports

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tests", "support", "prosody.py")


def script(*argv, **kwargs):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, SCRIPT, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def test_port_taken(prosody_installed, tmp_path):
    """A c2s port in use: one line naming it and --port, exit 2, no Prosody elsewhere."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        s2s, component = free_ports(2)
        process = script(
            "--port", str(port), "--s2s-port", str(s2s), "--component-port", str(component),
            "--dir", str(tmp_path),
        )  # fmt: skip
        out, err = process.communicate(timeout=60)
    finally:
        taken.close()
    assert process.returncode == 2, out + err
    assert out == ""
    [line] = err.splitlines()
    assert f"port {port}, {s2s} or {component} on 127.0.0.1 is already in use" in line
    assert "--port" in line


def test_ports_in_one_line(prosody_installed, tmp_path):
    """Free ports: one line names them (and the accounts), and Prosody listens there."""
    c2s, s2s, component = free_ports(3)
    process = script(
        "--port", str(c2s), "--s2s-port", str(s2s), "--component-port", str(component),
        "--dir", str(tmp_path),
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.startswith(
            f"Prosody on 127.0.0.1: c2s {c2s}, s2s {s2s}, component {component} "
        ), line
        assert "carol@localhost" in line
        assert "component.localhost" in line
        with socket.create_connection(("127.0.0.1", c2s), timeout=5):
            pass
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)
