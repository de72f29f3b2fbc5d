"""Tests for portofcall_xmpp.cli: arguments, password, exit status, human output, progress."""

from __future__ import annotations

import io

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import cli
from portofcall_xmpp.endpoints import ENDPOINTS

BY_NAME = {endpoint.name: endpoint for endpoint in ENDPOINTS}


def parse(*argv):
    return cli.parse_arguments(list(argv))


class Terminal(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


class ArgumentTests(SynchronousTestCase):
    def test_subcommands(self):
        """One subcommand per row of the endpoint table."""
        parser = cli.build_parser()
        [commands] = [a for a in parser._actions if a.dest == "command"]
        self.assertEqual(list(commands.choices), [e.name for e in ENDPOINTS])

    def test_fields_as_options(self):
        """
        The request fields are options after the subcommand, host its
        argument; the body holds those given, in the API's names.
        """
        args = parse("message", "xmpp.example.org", "--port", "5223", "--domain", "example.org",
                     "--username", "alice", "--recipient", "bob@example.org", "--wait-ms", "0",
                     "--no-tls-verify", "--channel-binding", "tls-exporter", "--json")  # fmt: skip
        body = cli.request_body(args, {"PORTOFCALL_PASSWORD": "pw"}, isatty=False)
        self.assertEqual(
            body,
            {"host": "xmpp.example.org", "port": 5223, "domain": "example.org",
             "username": "alice", "recipient": "bob@example.org", "waitMs": 0,
             "tlsVerify": False, "channelBinding": "tls-exporter", "password": "pw"},
        )  # fmt: skip
        self.assertTrue(args.json)
        self.assertIs(args.endpoint, BY_NAME["message"])

    def test_srv_domain(self):
        """srv takes the domain as its argument."""
        args = parse("srv", "example.org", "--timeout", "3000")
        self.assertEqual(cli.request_body(args, {}, isatty=False),
                         {"domain": "example.org", "timeout": 3000})  # fmt: skip

    def test_no_password_option(self):
        """There is no --password: a bad argument, exit 3."""
        with self.assertRaises(SystemExit) as cm:
            with self.redirect():
                parse("login", "h.example", "--username", "a", "--password", "pw")
        self.assertEqual(cm.exception.code, cli.UNKNOWN)

    def test_bad_arguments(self):
        """argparse's errors exit 3 (unknown), not its usual 2 (critical)."""
        for argv in (["connect"], ["nope"], ["connect", "h.example", "--port", "x"]):
            with self.assertRaises(SystemExit) as cm:
                with self.redirect():
                    parse(*argv)
            self.assertEqual(cm.exception.code, cli.UNKNOWN, argv)

    def redirect(self):
        import contextlib

        return contextlib.redirect_stderr(io.StringIO())

    def test_service_options(self):
        """The service's options: private destinations allowed unless --deny-private."""
        options = cli.service_options(parse("connect", "h.example", "--read-timeout", "1500",
                                            "--dns-server", "127.0.0.1:53"))  # fmt: skip
        self.assertEqual(options["allow-private"], 1)
        self.assertEqual(options["read-timeout"], 1500)
        self.assertEqual(options["dns-server"], ("127.0.0.1", 53))
        denied = cli.service_options(parse("connect", "h.example", "--deny-private"))
        self.assertFalse(denied["allow-private"])
        with self.assertRaises(cli.Usage):
            cli.service_options(parse("connect", "h.example", "--read-timeout", "0"))


class PasswordTests(SynchronousTestCase):
    def args(self):
        return parse("login", "h.example", "--username", "alice")

    def test_environment(self):
        """PORTOFCALL_PASSWORD gives the password; nothing is asked."""
        body = cli.request_body(self.args(), {"PORTOFCALL_PASSWORD": "pw"}, isatty=True,
                                ask=lambda prompt: self.fail("asked"))  # fmt: skip
        self.assertEqual(body["password"], "pw")

    def test_prompt(self):
        """Without it, on a terminal, it is asked for, naming the account."""
        prompts = []
        body = cli.request_body(self.args(), {}, isatty=True,
                                ask=lambda prompt: prompts.append(prompt) or "typed")  # fmt: skip
        self.assertEqual(body["password"], "typed")
        self.assertEqual(prompts, ["Password for alice@h.example: "])

    def test_no_terminal(self):
        """Without it and without a terminal: a usage error, never a wait on stdin."""
        with self.assertRaises(cli.Usage) as cm:
            cli.request_body(self.args(), {}, isatty=False, ask=lambda p: self.fail("asked"))
        self.assertIn("PORTOFCALL_PASSWORD", str(cm.exception))

    def test_not_needed(self):
        """A probe without credentials never asks."""
        body = cli.request_body(parse("connect", "h.example"), {}, isatty=False)
        self.assertNotIn("password", body)


class ExitStatusTests(SynchronousTestCase):
    def test_mapping(self):
        """0 ok, 1 warning, 2 critical or failed, 3 unknown (refusals)."""
        cases = [
            (200, {"success": True}, 0),
            (200, {"success": True, "warnings": []}, 0),
            (200, {"success": True, "warnings": ["credentials sent without TLS"]}, 1),
            (200, {"success": False, "errorType": "sasl"}, 2),
            (200, {"success": True, "status": "warning"}, 1),
            (200, {"success": True, "status": "critical"}, 2),
            (200, {"success": True, "status": "ok"}, 0),
            (400, {"success": False}, 3),
            (403, {"success": False, "blocked": True}, 3),
            (429, {"success": False}, 3),
            (500, {"success": False}, 3),
        ]
        for status, body, code in cases:
            self.assertEqual(cli.exit_status(status, body), code, (status, body))


LOGIN = {
    "success": True, "message": "XMPP login successful", "jid": "alice@localhost/portofcall",
    "phases": ["stream_opened", "authenticated"],
    "timings": {"stream_opened": 3, "authenticated": 40},
    "saslMechanisms": ["SCRAM-SHA-256", "PLAIN"], "mechanism": "SCRAM-SHA-256",
    "tls": {"available": True, "negotiated": True, "protocol": "TLSv1.3", "cipher": "X",
            "certificate": {"subject": "CN=localhost", "verified": True,
                            "notAfter": "2027-01-01T00:00:00Z", "daysUntilExpiry": 30}},
    "warnings": [], "elapsedMs": 41,
}  # fmt: skip


class HumanTests(SynchronousTestCase):
    def test_verdict_and_facts(self):
        """A verdict line, phases with their timings, the TLS, mechanism and JID."""
        text = cli.human(BY_NAME["login"], "h:5222", 200, LOGIN, colour=False)
        lines = text.splitlines()
        self.assertEqual(lines[0], "XMPP OK - login h:5222: XMPP login successful (41 ms)")
        self.assertIn("       3 ms  stream_opened", lines)
        self.assertIn("      40 ms  authenticated", lines)
        self.assertIn("TLS: TLSv1.3 X", lines)
        self.assertIn("Mechanism used: SCRAM-SHA-256", lines)
        self.assertIn("Bound JID: alice@localhost/portofcall", lines)
        self.assertNotIn("\x1b[", text)

    def test_colour(self):
        """With colour, the verdict line is coloured by its status; nothing else."""
        text = cli.human(BY_NAME["login"], "h:5222", 200, LOGIN, colour=True)
        self.assertTrue(text.startswith("\x1b[32mXMPP OK - "))
        self.assertEqual(text.count("\x1b["), 2)
        failed = {"success": False, "error": "SASL authentication failed: not-authorized",
                  "errorType": "sasl", "elapsedMs": 9}  # fmt: skip
        text = cli.human(BY_NAME["login"], "h:5222", 200, failed, colour=True)
        self.assertTrue(text.startswith("\x1b[31mXMPP CRITICAL - login h:5222: SASL "))
        self.assertIn("[sasl] (9 ms)", text)

    def test_findings(self):
        """Findings are listed by severity, each with its fix."""
        body = {"success": True, "status": "warning", "findings": [
            {"severity": "info", "message": "IPv6 reachable"},
            {"severity": "warning", "message": "certificate expires in 5 days", "fix": "renew"},
            {"severity": "critical", "message": "no SRV record", "fix": "add _xmpp-client"},
        ]}  # fmt: skip
        lines = cli.human(BY_NAME["connect"], "d", 200, body, colour=False).splitlines()
        start = lines.index("Findings:")
        self.assertEqual(
            lines[start + 1 : start + 6],
            ["  [critical] no SRV record", "      fix: add _xmpp-client",
             "  [warning] certificate expires in 5 days", "      fix: renew",
             "  [info] IPv6 reachable"],
        )  # fmt: skip
        self.assertTrue(lines[0].startswith("XMPP WARNING - connect d: "))

    def test_refusal(self):
        """A refusal is unknown, with its error."""
        body = {"success": False, "error": "Destination 127.0.0.1 is not allowed", "blocked": True}
        text = cli.human(BY_NAME["connect"], "127.0.0.1:5222", 403, body, colour=False)
        self.assertEqual(
            text.splitlines()[0],
            "XMPP UNKNOWN - connect 127.0.0.1:5222: Destination 127.0.0.1 is not allowed",
        )

    def test_empty_contact_addresses(self):
        """Kinds of contact address without any are not listed."""
        body = {"success": True, "serverInfo": {"contactAddresses": {
            "abuse-addresses": [], "admin-addresses": ["xmpp:admin@localhost"]}}}  # fmt: skip
        text = cli.human(BY_NAME["server-info"], "h:5222", 200, body, colour=False)
        self.assertIn("admin-addresses: xmpp:admin@localhost", text)
        self.assertNotIn("abuse-addresses", text)


class ProgressTests(SynchronousTestCase):
    def test_after_a_second(self):
        """Nothing for a second; then an updated line; cleared at the end."""
        clock = Clock()
        stream = Terminal()
        progress = cli._Progress(clock, stream, "login h:5222")
        clock.advance(0.9)
        self.assertEqual(stream.getvalue(), "")
        clock.advance(0.2)
        self.assertIn("\rlogin h:5222: 1.1 s ...", stream.getvalue())
        clock.advance(0.1)
        self.assertIn("\rlogin h:5222: 1.2 s ...", stream.getvalue())
        progress.stop()
        self.assertTrue(stream.getvalue().endswith("\r\x1b[K"))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_quick(self):
        """A run shorter than a second leaves no trace."""
        clock = Clock()
        stream = Terminal()
        progress = cli._Progress(clock, stream, "connect h:5222")
        clock.advance(0.5)
        progress.stop()
        self.assertEqual(stream.getvalue(), "")
        self.assertEqual(clock.getDelayedCalls(), [])
