"""The Prosody fixture itself: it starts, it registers, it seeds rosters.

These talk XMPP with a tiny blocking client (plain sockets) so that they
check the fixture, not the service under test.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prosody import lua_string
from xmpp_blocking import BlockingClient, mechanisms, normalised_roster


def _roster_of(prosody, user: str) -> list[dict[str, object]]:
    with BlockingClient(prosody.host, prosody.port, prosody.domain) as client:
        assert client.login(user, prosody.users[user]) == f"{user}@{prosody.domain}/fixture-test"
        return client.roster()


def test_c2s_port_serves_the_localhost_domain(prosody):
    """The c2s port on 127.0.0.1 answers a stream to 'localhost' with
    PLAIN, SCRAM-SHA-1 and SCRAM-SHA-256 offered over plaintext."""
    with BlockingClient(prosody.host, prosody.port, prosody.domain) as client:
        features = client.open()
        assert client.header.get("from") == "localhost"
        # Prosody lists mechanisms in (randomised) hash order.
        assert sorted(mechanisms(features)) == ["PLAIN", "SCRAM-SHA-1", "SCRAM-SHA-256"]


def test_hashed_domain_offers_scram_only(prosody):
    """hashed.localhost (internal_hashed) offers SCRAM-SHA-1 and nothing else."""
    with BlockingClient(prosody.host, prosody.port, prosody.hashed_domain) as client:
        features = client.open()
        assert client.header.get("from") == "hashed.localhost"
        assert mechanisms(features) == ["SCRAM-SHA-1"]


def test_registered_user_can_log_in_while_server_runs(prosody):
    """prosodyctl register works against the running server; the new account
    logs in with PLAIN at once and starts with an empty roster."""
    account = prosody.new_user("fixture")
    assert prosody.server.user_exists(account.user, account.domain)
    with BlockingClient(prosody.host, prosody.port, account.domain) as client:
        assert client.login(account.user, account.password) == f"{account.jid}/fixture-test"
        assert client.roster() == []


def test_seeded_roster_comes_back_from_prosody(prosody):
    """alice's roster, written as a Prosody storage file, is served whole:
    names with quotes/&/</non-ASCII, missing names, ask, every group."""
    roster = _roster_of(prosody, "alice")
    assert normalised_roster(roster) == normalised_roster(prosody.rosters["alice"])


def test_ten_thousand_item_roster_is_served(prosody):
    """big's 10,000-item roster file loads and comes back item for item."""
    roster = _roster_of(prosody, "big")
    assert len(roster) == 10_000
    assert normalised_roster(roster) == normalised_roster(prosody.rosters["big"])


@pytest.mark.skipif(not shutil.which("lua5.4") and not shutil.which("lua"), reason="no lua")
def test_lua_string_round_trips_through_lua():
    """lua_string() quotes anything (quotes, backslashes, controls, digits after
    an escape, non-ASCII) so that Lua reads back the same bytes."""
    tricky = 'O\'Brien "&" <Co> \\ \n\r\t\x00\x01' + "7\x7f é ☕ 𝄞 ]]"
    lua = shutil.which("lua5.4") or shutil.which("lua")
    out = subprocess.run(
        [lua, "-e", f"io.write({lua_string(tricky)})"], capture_output=True, check=True, timeout=10
    ).stdout
    assert out == tricky.encode("utf-8")
