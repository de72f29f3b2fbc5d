"""
The command line (python -m portofcall_xmpp) against the test Prosody: every
subcommand, the exit status of a monitoring plugin, --json as the HTTP
answer, no colour off a terminal, and the password only in the environment.
"""

import json
import os
import subprocess
import sys

import pytest
import pytest_twisted
import treq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def cli(*argv, password=None):
    """Run the command line; its CompletedProcess (text)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PORTOFCALL_PASSWORD", "NO_COLOR")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
    if password is not None:
        env["PORTOFCALL_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "portofcall_xmpp", *argv],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )


def at(prosody, *extra):
    return [prosody.host, "--port", str(prosody.port), "--domain", prosody.domain, *extra]


def account(prosody, user="alice"):
    return dict(password=prosody.users[user])


@pytest.mark.parametrize(
    "command, extra, expect",
    [
        ("connect", (), "XMPP server reachable"),
        ("login", ("--username", "alice"), "Bound JID: alice@localhost/portofcall"),
        ("roster", ("--username", "alice"), "Roster: 5 contacts"),
        ("server-info", ("--username", "alice"), "Software: Prosody"),
        ("message", ("--username", "alice", "--recipient", "bob@localhost", "--wait-ms", "0"),
         "Message sent to bob@localhost"),
    ],
)  # fmt: skip
def test_subcommands(prosody, command, extra, expect):
    """
    Each client subcommand gets through: a verdict line, the main facts.  The
    test Prosody has no TLS, so a login is a warning (exit 1): it ran without
    TLS (SCRAM kept the password off the wire; SPEC §2).
    """
    password = None if command == "connect" else prosody.users["alice"]
    result = cli(command, *at(prosody, *extra), password=password)
    status, verdict = (0, "OK") if password is None else (1, "WARNING")
    assert result.returncode == status, result.stdout + result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"XMPP {verdict} - {command} {prosody.host}:{prosody.port}: "), first
    if password is not None:
        assert "logged in without TLS" in result.stdout
    assert expect in result.stdout
    assert "\x1b[" not in result.stdout + result.stderr
    if password is not None:
        assert password not in result.stdout + result.stderr
        assert "Phases:" in result.stdout
        assert "ms  session_established" in result.stdout


def test_s2s(prosody):
    """s2s probes the server-to-server port."""
    result = cli("s2s", prosody.host, "--port", str(prosody.s2s_port), "--domain", "localhost")
    assert result.returncode in (0, 1), result.stdout + result.stderr
    assert result.stdout.startswith("XMPP ")


def test_srv():
    """srv looks a domain up (here one without records: the fallbacks)."""
    result = cli("srv", "localhost", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    body = json.loads(result.stdout)
    assert set(body["services"]) == {"xmpp-client", "xmpps-client", "xmpp-server", "xmpps-server"}


def test_critical(prosody):
    """A wrong password is critical (2); the verdict says why."""
    result = cli("login", *at(prosody, "--username", "alice"), password="wrong-pw")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.startswith("XMPP CRITICAL - login ")
    assert "[sasl]" in result.stdout.splitlines()[0]
    assert "wrong-pw" not in result.stdout + result.stderr


def test_warning(prosody):
    """A login that got through with a warning (PLAIN without TLS) is a warning (1)."""
    result = cli(
        "login", *at(prosody, "--username", "alice", "--mechanism", "PLAIN", "--tls", "none"),
        **account(prosody),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.startswith("XMPP WARNING - login ")
    assert "Warning: credentials sent without TLS" in result.stdout


@pytest.mark.parametrize(
    "argv, password",
    [
        (("login", "127.0.0.1", "--port", "0", "--username", "alice"), "pw"),  # 400
        (("connect",), None),  # no host
        (("login", "127.0.0.1", "--username", "alice", "--password", "pw"), "pw"),  # no such option
        (("login", "127.0.0.1", "--username", "alice"), None),  # no password, no terminal
        (("frobnicate",), None),
        (("connect", "127.0.0.1", "--deny-private"), None),  # the 403 of the service
    ],
)
def test_unknown(argv, password):
    """Bad arguments, no password, and a refusal are unknown (3), never a traceback."""
    result = cli(*argv, password=password)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


@pytest_twisted.ensureDeferred
async def test_json_is_the_http_answer(prosody, service):
    """--json prints what the service answers over HTTP (same fields, same values)."""
    body = {"host": prosody.host, "port": prosody.port, "domain": prosody.domain,
            "username": "alice", "password": prosody.users["alice"]}  # fmt: skip
    response = await treq.post(service.url("/api/xmpp/roster"), json=body)
    http = json.loads(await response.content())
    result = cli("roster", *at(prosody, "--username", "alice", "--json"), **account(prosody))
    assert result.returncode == 1, result.stderr  # a warning: no TLS on the test Prosody
    answer = json.loads(result.stdout)
    assert set(answer) == set(http)
    assert set(answer["timings"]) == set(http["timings"])
    for key in ("success", "host", "port", "jid", "phases", "message"):
        assert answer[key] == http[key], key
    # Prosody gives the contacts in Lua hash order.
    assert answer["roster"]["total"] == http["roster"]["total"]
    jids = sorted(c["jid"] for c in answer["roster"]["contacts"])
    assert jids == sorted(c["jid"] for c in http["roster"]["contacts"])
