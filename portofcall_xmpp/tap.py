"""
The twistd plugin's options and service (SPEC §1).

C{twistd -n portofcall-xmpp [options]} -- only L{makeService} chooses the
real reactor.
"""

from __future__ import annotations

from twisted.application import service, strports
from twisted.python import usage
from twisted.web.server import Site

from .stream import DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_STANZA_BYTES, Budget, Limits

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"


def _positive_int(name, low, high):
    def parse(value):
        try:
            number = int(value)
        except (TypeError, ValueError) as e:
            raise usage.UsageError("--%s must be an integer" % (name,)) from e
        if not low <= number <= high:
            raise usage.UsageError("--%s must be from %d to %d" % (name, low, high))
        return number

    return parse


def _host_port(value):
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise usage.UsageError("--dns-server must be HOST:PORT")
    return host, _positive_int("dns-server port", 1, 65535)(port)


class Options(usage.Options):
    """Command-line options of C{twistd portofcall-xmpp}."""

    synopsis = "[options]"
    longdesc = (
        "Serve the portofcall-xmpp HTTP JSON API, which probes XMPP servers: "
        "POST /api/xmpp/connect, /login, /roster, /message; GET /api/health."
    )

    optFlags = [
        [
            "allow-private",
            None,
            "Also allow destinations that are not globally routable (loopback, RFC 1918, "
            "CGNAT, link-local, ULA, ...). Off: such destinations get 403.",
        ],
    ]

    optParameters = [
        [
            "listen",
            None,
            DEFAULT_LISTEN,
            "Twisted server endpoint string to serve HTTP on (tcp:..., ssl:..., unix:...).",
        ],
        ["ca-file", None, None, "Extra PEM trust roots for TLS verification."],
        [
            "max-concurrent",
            None,
            200,
            "Probes in flight at once; one more gets 429 with Retry-After.",
            _positive_int("max-concurrent", 1, 100000),
        ],
        [
            "read-timeout",
            None,
            5000,
            "Per-read timeout in milliseconds (each wait for one reply from the server).",
            _positive_int("read-timeout", 1, 120000),
        ],
        [
            "dns-server",
            None,
            None,
            "HOST:PORT of the DNS server for A/AAAA questions (default: the system resolver).",
        ],
        [
            "max-stanza-bytes",
            None,
            DEFAULT_MAX_STANZA_BYTES,
            "The largest element accepted from a server, in bytes. A probe may read at most "
            "four times this (at least 16 MiB) in all.",
            _positive_int("max-stanza-bytes", 1024, 1024 * 1024 * 1024),
        ],
        [
            "max-buffered-bytes",
            None,
            DEFAULT_MAX_BUFFERED_BYTES,
            "Server data all probes together may hold, in bytes; the probe that would "
            "pass it fails with errorType too_large.",
            _positive_int("max-buffered-bytes", 1024 * 1024, 1 << 40),
        ],
    ]

    def postOptions(self):
        if self["dns-server"] is not None:
            self["dns-server"] = _host_port(self["dns-server"])
        if self["ca-file"] is not None:
            try:
                with open(self["ca-file"], "rb") as f:
                    pem = f.read()
            except OSError as e:
                raise usage.UsageError("--ca-file: %s" % (e.strerror or e,)) from e
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                raise usage.UsageError("--ca-file: no PEM certificate in %s" % (self["ca-file"],))
            from .tlsinfo import CAFileError, Trust

            try:
                Trust(self["ca-file"], system=False)
            except CAFileError as e:
                raise usage.UsageError("--ca-file: %s" % (e,)) from e


def build_api(options, reactor):
    """The L{web.Api} for parsed C{options}, on C{reactor}."""
    from twisted.internet.threads import deferToThreadPool

    from .connect import Connector
    from .flows import Environment
    from .policy import Policy
    from .resolve import DNSServerResolver, SystemResolver
    from .srv import make_srv_resolver
    from .tlsinfo import Trust
    from .web import Api

    read_timeout = options["read-timeout"] / 1000.0
    if options["dns-server"] is not None:
        resolver = DNSServerResolver(reactor, *options["dns-server"])
    else:
        resolver = SystemResolver(reactor)
    policy = Policy(allow_private=options["allow-private"])
    connector = Connector(reactor, resolver, policy, read_timeout)
    env = Environment(
        connect=connector.connect,
        clock=reactor,
        read_timeout=read_timeout,
        limits=Limits(
            max_stanza_bytes=options["max-stanza-bytes"],
            budget=Budget(options["max-buffered-bytes"]),
        ),
        to_thread=lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f),
        trust=Trust(options["ca-file"]),
        resolver=resolver,
        srv_resolver=make_srv_resolver(reactor, options["dns-server"]),
        policy=policy,
    )
    return Api(env, max_concurrent=options["max-concurrent"])


def makeService(options, reactor=None):
    """A C{MultiService} serving the API on C{--listen}."""
    if reactor is None:
        from twisted.internet import reactor
    from .web import LimitedRequest

    site = Site(build_api(options, reactor).resource())
    site.requestFactory = LimitedRequest
    site.displayTracebacks = False
    top = service.MultiService()
    strports.service(options["listen"], site, reactor=reactor).setServiceParent(top)
    return top
