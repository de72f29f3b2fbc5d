"""Tests for portofcall_xmpp.tap and the twistd plugin."""

import gc
import os
import subprocess
import sys
import tempfile

from certs import session_certs
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from portofcall_xmpp import __version__, tap
from portofcall_xmpp.endpoints import ENDPOINTS
from portofcall_xmpp.probe_config import BUILTIN_MODULES

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def temp_file(testcase, content):
    """A temporary file holding C{content}, removed after the test."""
    fd, path = tempfile.mkstemp()
    with os.fdopen(fd, "w") as f:
        f.write(content)
    testcase.addCleanup(os.remove, path)
    return path


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


class OptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """Every SPEC §1 option has its documented default."""
        options = parse()
        self.assertEqual(
            {k: options[k] for k in options.keys()},
            {
                "listen": "tcp:8080:interface=127.0.0.1",
                "allow-private": 0,
                "ca-file": None,
                "max-concurrent": 200,
                "read-timeout": 5000,
                "dns-server": None,
                "max-stanza-bytes": 4194304,
                "max-connections": 1000,
                "per-target-rate": 60,
                "max-failed-logins": 10,
                "max-buffered-bytes": 268435456,
                "workers": 1,
                "probe-config": None,
                "access-log": 0,
                "demo": 0,
                "log-format": "text",
            },
        )

    def test_all_options(self):
        """Every option is parsed and converted."""
        ca = str(session_certs().directory / "ca.pem")
        options = parse(
            "--listen", "tcp:0:interface=127.0.0.1", "--allow-private", "--ca-file", ca,
            "--max-concurrent", "7", "--read-timeout", "1500", "--dns-server", "127.0.0.53:5353",
            "--max-stanza-bytes", "8388608", "--max-buffered-bytes", "33554432",
            "--max-connections", "50", "--per-target-rate", "0", "--max-failed-logins", "3",
        )  # fmt: skip
        self.assertEqual(options["allow-private"], 1)
        self.assertEqual(options["max-concurrent"], 7)
        self.assertEqual(options["read-timeout"], 1500)
        self.assertEqual(options["dns-server"], ("127.0.0.53", 5353))
        self.assertEqual(options["max-stanza-bytes"], 8388608)
        self.assertEqual(options["max-buffered-bytes"], 33554432)
        self.assertEqual(options["ca-file"], ca)
        self.assertEqual(options["max-connections"], 50)
        self.assertEqual(options["per-target-rate"], 0)
        self.assertEqual(options["max-failed-logins"], 3)

    def write_config(self, text: str) -> str:
        """A probe config file holding C{text}, removed after the test."""
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return f.name

    def test_probe_config(self):
        """--probe-config adds its modules to the built-in ones."""
        path = self.write_config("modules:\n  strict:\n    prober: c2s\n")
        options = parse("--probe-config", path)
        self.assertEqual(options["probe-config"], path)
        self.assertEqual(
            sorted(options.modules),
            ["c2s_direct_tls", "c2s_normal_auth", "s2s_direct_tls", "s2s_normal", "strict"],
        )
        self.assertEqual(sorted(parse().modules), sorted(BUILTIN_MODULES))

    def test_bad_probe_config(self):
        """A probe config that does not load stops start-up with one line naming file:line."""
        path = self.write_config("modules:\n  x:\n    prober: icmp\n")
        with self.assertRaises(SystemExit) as cm:
            parse("--probe-config", path)
        self.assertEqual(
            str(cm.exception.code),
            f"portofcall-xmpp: --probe-config: {path}:3: modules.x: unknown prober 'icmp' "
            "(this service runs c2s, s2s, login, ping)",
        )

    def test_bad_values(self):
        """Bad values are usage errors naming the option."""
        for argv, word in [
            (["--max-concurrent", "0"], "max-concurrent"),
            (["--max-concurrent", "lots"], "max-concurrent"),
            (["--read-timeout", "-1"], "read-timeout"),
            (["--max-stanza-bytes", "10"], "max-stanza-bytes"),
            (["--max-connections", "0"], "max-connections"),
            (["--per-target-rate", "-1"], "per-target-rate"),
            (["--max-failed-logins", "many"], "max-failed-logins"),
            (["--max-buffered-bytes", "10"], "max-buffered-bytes"),
            (["--dns-server", "nohost"], "dns-server"),
            (["--dns-server", "1.2.3.4:99999"], "dns-server"),
            (["--ca-file", "/nonexistent/ca.pem"], "ca-file"),
        ]:
            with self.assertRaises(usage.UsageError) as cm:
                parse(*argv)
            self.assertIn(word, str(cm.exception))

    def test_ca_file_not_pem(self):
        """A --ca-file without a PEM certificate is refused."""
        path = temp_file(self, "hello")
        self.assertRaises(usage.UsageError, parse, "--ca-file", path)

    def test_ca_file_broken_pem(self):
        """A --ca-file whose certificate does not parse is refused."""
        path = temp_file(self, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
        self.assertRaises(usage.UsageError, parse, "--ca-file", path)


class ServiceTests(SynchronousTestCase):
    def test_listens(self):
        """makeService listens where --listen says."""
        reactor = MemoryReactorClock()
        service = tap.makeService(parse("--listen", "tcp:8181:interface=127.0.0.2"), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8181, "127.0.0.2"))
        self.assertEqual(factory.requestFactory.__name__, "LimitedRequest")
        self.assertEqual(type(factory).__name__, "BoundedSite")
        self.assertEqual(factory.max_connections, 1000)

    def test_dns_server(self):
        """--dns-server builds a resolver bound to that server."""
        reactor = MemoryReactorClock()
        service = tap.makeService(parse("--dns-server", "127.0.0.53:53"), reactor)
        service.startService()
        self.addCleanup(service.stopService)
        self.assertEqual(len(reactor.tcpServers), 1)


    def test_limits(self):
        """--max-stanza-bytes and --max-buffered-bytes reach every probe's limits."""
        api = tap.build_api(
            parse("--max-stanza-bytes", "8388608", "--max-buffered-bytes", "33554432"),
            MemoryReactorClock(),
        )
        limits = api._env.limits
        self.assertEqual(
            (limits.max_stanza_bytes, limits.max_element_bytes, limits.budget.limit),
            (8388608, 262144, 33554432),
        )


def twistd(*argv):
    """Run C{twistd argv} in a child process; its C{CompletedProcess}."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
    )


class GarbageCollectorTests(SynchronousTestCase):
    def test_tune_gc(self):
        """Once running: what exists is frozen out of the collector's sight, thresholds kept."""
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)
        tap.tune_gc()
        self.assertEqual(gc.get_threshold(), thresholds)
        self.assertGreater(gc.get_freeze_count(), 0)
        # A cycle made after the freeze is still collected.
        cycle = []
        cycle.append(cycle)
        del cycle
        self.assertGreater(gc.collect(), 0)


class PluginTests(SynchronousTestCase):
    def test_help_lists_endpoints(self):
        """twistd -n portofcall-xmpp --help lists every endpoint of the table, one a line."""
        out = twistd("-n", "portofcall-xmpp", "--help")
        self.assertEqual(out.returncode, 0, out.stderr)
        lines = out.stdout.splitlines()
        for endpoint in ENDPOINTS:
            listed = [line for line in lines if line.split()[:2] == ["POST", endpoint.path]]
            self.assertEqual(len(listed), 1, endpoint.path)
            self.assertIn(endpoint.summary, listed[0])
        for path in ("/api/health", "/api/openapi.json", "/"):
            self.assertEqual(
                len([line for line in lines if line.split()[:2] == ["GET", path]]), 1, path
            )

    def test_version(self):
        """twistd -n portofcall-xmpp --version prints this service's version, not Twisted's."""
        out = twistd("-n", "portofcall-xmpp", "--version")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(out.stdout, f"portofcall-xmpp {__version__}\n")
        self.assertNotIn("Twisted", out.stdout)

    def test_help(self):
        """twistd lists the plugin and its --help shows every SPEC §1 option."""
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        out = subprocess.run(
            [sys.executable, "-m", "twisted", "portofcall-xmpp", "--help"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
        )
        self.assertEqual(out.returncode, 0, out.stderr)
        for option in (
            "--listen",
            "--allow-private",
            "--ca-file",
            "--max-concurrent",
            "--read-timeout",
            "--dns-server",
            "--max-stanza-bytes",
            "--max-buffered-bytes",
            "--workers",
        ):
            self.assertIn(option, out.stdout)
