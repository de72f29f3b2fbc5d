"""Tests for portofcall_xmpp.probe_config: the Blackbox-exporter-style module file."""

import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp.probe_config import (
    BUILTIN_MODULES,
    ConfigError,
    PingResult,
    load,
    parse,
)

EXAMPLE = """\
modules:
  c2s_strict:
    timeout: 15s
    prober: c2s
    c2s:
      export_sasl_mechanisms: true
      fail_if_sasl_mechanism_not_offered:
      - scram-sha-1
      fail_if_sasl_mechanism_offered:
      - PLAIN
      restrict_ip_version: ipv6
      tls_config:
        insecure_skip_verify: true
  s2s_dialback:
    timeout: 500ms
    prober: s2s
    s2s:
      directtls: true
      from: "Monitor.Example.org"
      fail_if_dialback_not_offered: true
  ping:
    prober: ping
    ping:
      account: pingaccount
      fail_if_not:
      - success: true
      - error_condition: remote-server-not-found
  login_home:
    prober: login
    login:
      account: pingaccount
accounts:
  pingaccount:
    client_address: blackbox@domain.example
    client_password: sup3rs3cur3p4ssw0rd
    directtls: true
"""


class ParseTests(SynchronousTestCase):
    def test_builtins(self):
        """Without a file, the four built-in modules prosodyctl and the exporter name exist."""
        modules = parse("{}")
        self.assertEqual(
            sorted(modules),
            ["c2s_direct_tls", "c2s_normal_auth", "s2s_direct_tls", "s2s_normal"],
        )
        self.assertEqual(modules["c2s_normal_auth"].prober, "c2s")
        self.assertFalse(modules["c2s_normal_auth"].directtls)
        self.assertTrue(modules["s2s_direct_tls"].directtls)

    def test_example(self):
        """The exporter's shapes come through: rules, durations, ip versions, TLS, accounts."""
        modules = parse(EXAMPLE)
        c2s = modules["c2s_strict"]
        self.assertEqual(c2s.timeout, 15)
        self.assertEqual(c2s.fail_if_sasl_mechanism_not_offered, ("SCRAM-SHA-1",))
        self.assertEqual(c2s.fail_if_sasl_mechanism_offered, ("PLAIN",))
        self.assertEqual(c2s.restrict_ip_version, 6)
        self.assertFalse(c2s.tls_verify)
        s2s = modules["s2s_dialback"]
        self.assertEqual(s2s.timeout, 0.5)
        self.assertEqual(s2s.from_, "monitor.example.org")
        self.assertTrue(s2s.fail_if_dialback_not_offered)
        ping = modules["ping"]
        self.assertEqual(ping.account.address, "blackbox@domain.example")
        self.assertTrue(ping.directtls)
        self.assertEqual(
            ping.fail_if_not,
            (PingResult(success=True), PingResult(error_condition="remote-server-not-found")),
        )
        self.assertEqual(modules["login_home"].account.name, "pingaccount")
        self.assertIn("c2s_normal_auth", modules)

    def test_password_not_in_repr(self):
        """An account's password never shows in a repr (so never in a log or an error)."""
        modules = parse(EXAMPLE)
        self.assertNotIn("sup3rs3cur3p4ssw0rd", repr(modules))
        self.assertEqual(modules["ping"].account.password, "sup3rs3cur3p4ssw0rd")

    def test_file_may_override_builtin(self):
        """A module of the file with a built-in's name replaces it."""
        modules = parse("modules:\n  c2s_normal_auth:\n    prober: c2s\n    c2s:\n"
                        "      directtls: true\n")
        self.assertTrue(modules["c2s_normal_auth"].directtls)

    def assertConfigError(self, text, line, *fragments):
        e = self.assertRaises(ConfigError, parse, text, "probes.yml")
        self.assertTrue(str(e).startswith(f"probes.yml:{line}: "), str(e))
        for fragment in fragments:
            self.assertIn(fragment, str(e))
        return e

    def test_unknown_prober(self):
        """An unknown prober is refused, naming file, line and the probers known."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: ibr\n", 3, "unknown prober 'ibr'", "c2s, s2s"
        )

    def test_missing_prober(self):
        """A module without a prober is refused."""
        self.assertConfigError("modules:\n  x:\n    timeout: 1s\n", 3, "prober is required")

    def test_unknown_key(self):
        """A misspelt key is refused, not ignored."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: c2s\n    c2s:\n      directls: true\n",
            5,
            "unknown key 'directls'",
        )

    def test_bad_yaml(self):
        """A file that is not YAML is refused with the line of the problem."""
        self.assertConfigError("modules:\n  x: [\n", 3, "not valid YAML")

    def test_bad_duration(self):
        """A timeout must be a duration."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: c2s\n    timeout: 10\n", 4, "duration"
        )

    def test_bad_ip_version(self):
        """restrict_ip_version is ipv4 or ipv6."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: c2s\n    c2s:\n      restrict_ip_version: 4\n",
            5,
            "ipv4 or ipv6",
        )

    def test_unknown_account(self):
        """A ping module must name an account of the file."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: ping\n    ping:\n      account: nobody\n",
            5,
            "no account named 'nobody'",
        )

    def test_account_required(self):
        """login and ping modules need an account."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: login\n", 3, "account is required"
        )

    def test_account_needs_password(self):
        """An account without a password is refused (and no password is echoed)."""
        self.assertConfigError(
            "accounts:\n  a:\n    client_address: a@b.example\n", 3, "client_password"
        )

    def test_account_address_must_be_jid(self):
        """An account's address is a user@domain JID."""
        self.assertConfigError(
            "accounts:\n  a:\n    client_address: b.example\n    client_password: x\n",
            3,
            "user@domain",
        )

    def test_dialback_both_ways(self):
        """Requiring and forbidding dialback at once is refused."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: s2s\n    s2s:\n      fail_if_dialback_offered: true\n"
            "      fail_if_dialback_not_offered: true\n",
            5,
            "both require and forbid",
        )

    def test_wrong_section(self):
        """A module's section must match its prober."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: c2s\n    s2s:\n      from: a.example\n",
            5,
            "no s2s section",
        )

    def test_bad_from(self):
        """s2s from must be a domain."""
        self.assertConfigError(
            "modules:\n  x:\n    prober: s2s\n    s2s:\n      from: 'a b'\n", 5, "from"
        )


class PingResultTests(SynchronousTestCase):
    def test_matching(self):
        """fail_if_not items match as the exporter's do."""
        pong = PingResult(success=True)
        not_found = PingResult(error_condition="remote-server-not-found")
        cancel = PingResult(error_type="cancel")
        self.assertTrue(pong.matches(True, None, None))
        self.assertFalse(pong.matches(False, "cancel", "remote-server-not-found"))
        self.assertTrue(not_found.matches(False, "cancel", "remote-server-not-found"))
        self.assertFalse(not_found.matches(False, "cancel", "item-not-found"))
        self.assertFalse(not_found.matches(True, None, None))
        self.assertTrue(cancel.matches(False, "cancel", "anything"))
        self.assertFalse(cancel.matches(False, "wait", "anything"))


class LoadTests(SynchronousTestCase):
    def test_load_file(self):
        """load reads a file and names it in errors."""
        fd, path = tempfile.mkstemp(suffix=".yml")
        with os.fdopen(fd, "w") as f:
            f.write("modules:\n  x:\n    prober: nope\n")
        self.addCleanup(os.remove, path)
        e = self.assertRaises(ConfigError, load, path)
        self.assertTrue(str(e).startswith(f"{path}:3: "))

    def test_missing_file(self):
        """A missing file is a ConfigError, not a traceback."""
        e = self.assertRaises(ConfigError, load, "/nonexistent/probes.yml")
        self.assertIn("/nonexistent/probes.yml", str(e))

    def test_builtins_unchanged(self):
        """Parsing a file never changes the built-in table."""
        parse(EXAMPLE)
        self.assertEqual(len(BUILTIN_MODULES), 4)
