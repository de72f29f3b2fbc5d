"""
The twistd plugin's options and service (SPEC §1).

C{twistd -n portofcall-xmpp [options]} -- only L{makeService} chooses the
real reactor.
"""

from __future__ import annotations

import sys

from twisted.application import service, strports
from twisted.logger import Logger
from twisted.python import usage

from . import __version__
from .endpoints import ENDPOINTS
from .listener import DEFAULT_MAX_CONNECTIONS, BoundedSite, raise_open_file_limit
from .ratelimit import (
    DEFAULT_MAX_FAILED_LOGINS,
    DEFAULT_PER_TARGET_RATE,
    FailedLogins,
    TargetRate,
)
from .stream import DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_STANZA_BYTES, Budget, Limits

_log = Logger()

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"
#: The most processes C{--workers} runs.
MAX_WORKERS = 256
LOG_FORMATS = ("text", "json")


def _positive_int(name, low, high):
    def parse(value):
        try:
            number = int(value)
        except (TypeError, ValueError) as e:
            raise usage.UsageError(f"--{name} must be an integer") from e
        if not low <= number <= high:
            raise usage.UsageError(f"--{name} must be from {low} to {high}")
        return number

    return parse


def _choice(name, choices):
    def parse(value):
        if value not in choices:
            raise usage.UsageError(f"--{name} must be one of: {', '.join(choices)}")
        return value

    return parse


def _host_port(value):
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host:
        raise usage.UsageError("--dns-server must be HOST:PORT")
    return host, _positive_int("dns-server port", 1, 65535)(port)


def _endpoint_list() -> str:
    """The endpoints, one a line: every row of the endpoint table, then the service's own."""
    rows = [("POST", endpoint.path, endpoint.summary) for endpoint in ENDPOINTS]
    rows += [
        ("GET", "/api/health", "Liveness"),
        ("GET", "/api/openapi.json", "The OpenAPI document of all of the above"),
        ("GET", "/metrics", "The service's Prometheus metrics"),
        ("GET", "/probe", "A Blackbox-exporter probe: ?module=M&target=xmpp:DOMAIN"),
        ("GET", "/", "A web page to run every probe"),
    ]
    width = max(len(path) for _, path, _ in rows)
    lines = [f"  {method:<4} {path:<{width}}  {summary}" for method, path, summary in rows]
    return "\n".join(["Endpoints:", *lines, ""])


class Options(usage.Options):
    """Command-line options of C{twistd portofcall-xmpp}."""

    synopsis = "[options]"
    longdesc = "Serve the portofcall-xmpp HTTP JSON API, which probes XMPP servers."

    optFlags = [
        [
            "allow-private",
            None,
            "Also allow destinations that are not globally routable (loopback, RFC 1918, "
            "CGNAT, link-local, ULA, ...). Off: such destinations get 403.",
        ],
        ["access-log", None, "Also log every HTTP request (off: one line per probe only)."],
        [
            "demo",
            None,
            "Also start a throw-away local Prosody (accounts, rosters, TLS with its own CA) "
            "to try the service on; implies --allow-private. Needs Prosody installed.",
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
        [
            "max-connections",
            None,
            DEFAULT_MAX_CONNECTIONS,
            "Open HTTP connections at once; at the cap a new one evicts the oldest that has "
            "not sent a whole request, else it is refused. A request must arrive whole within "
            "10 s; idle keep-alive connections close after 15 s.",
            _positive_int("max-connections", 1, 1000000),
        ],
        [
            "per-target-rate",
            None,
            DEFAULT_PER_TARGET_RATE,
            "Probes per minute to one target address, all callers together; one more gets "
            "429 with Retry-After. 0 turns it off.",
            _positive_int("per-target-rate", 0, 1000000),
        ],
        [
            "max-failed-logins",
            None,
            DEFAULT_MAX_FAILED_LOGINS,
            "Failed logins of one account within 10 minutes before 429. 0 turns it off.",
            _positive_int("max-failed-logins", 0, 1000000),
        ],
        [
            "workers",
            None,
            1,
            "Processes serving the one listening socket, each with its own reactor (use "
            "every core: --workers $(nproc)). --max-concurrent, --max-connections and "
            "--max-buffered-bytes are shared out among them; --per-target-rate, "
            "--max-failed-logins and /metrics count per process.",
            _positive_int("workers", 1, MAX_WORKERS),
        ],
        [
            "probe-config",
            None,
            None,
            "YAML file of modules for GET /probe, in the XMPP Blackbox Exporter's shape "
            "(prober c2s, s2s, login or ping); the built-in modules are always there.",
        ],
        [
            "log-format",
            None,
            "text",
            "text or json: json writes one JSON object per line (one line per probe, with "
            "endpoint, host, port, domain, outcome, errorType, elapsedMs, phases), to where "
            "twistd's --logfile says.",
            _choice("log-format", LOG_FORMATS),
        ],
    ]

    def getUsage(self, width=None):
        return f"{super().getUsage(width)}\n{_endpoint_list()}"

    def opt_version(self):
        """Display the version of portofcall-xmpp and exit."""
        print(f"portofcall-xmpp {__version__}")
        sys.exit(0)

    def postOptions(self):
        #: The /probe modules: the built-in ones, and those of --probe-config.
        self.modules = probe_modules(self["probe-config"])
        if self["demo"]:
            self["allow-private"] = True
        if self["dns-server"] is not None:
            self["dns-server"] = _host_port(self["dns-server"])
        if self["ca-file"] is not None:
            try:
                with open(self["ca-file"], "rb") as f:
                    pem = f.read()
            except OSError as e:
                raise usage.UsageError(f"--ca-file: {e.strerror or e}") from e
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                raise usage.UsageError(f"--ca-file: no PEM certificate in {self['ca-file']}")
            from .tlsinfo import CAFileError, Trust

            try:
                Trust(self["ca-file"], system=False)
            except CAFileError as e:
                raise usage.UsageError(f"--ca-file: {e}") from e


def probe_modules(path: str | None) -> dict:
    """
    The C{/probe} modules: the built-in ones, and those of the C{--probe-config}
    file at C{path} (if not None).

    @raise SystemExit: with one line naming the file and line, when it does not load.
    """
    from .probe_config import BUILTIN_MODULES, ConfigError, load

    if path is None:
        return dict(BUILTIN_MODULES)
    try:
        return load(path)
    except ConfigError as e:
        # One line, without the usage text twistd prints for a UsageError.
        raise SystemExit(f"portofcall-xmpp: --probe-config: {e}") from None


#: Threads for SCRAM key derivation, a pool of their own (never shared with
#: name lookups, which have theirs: resolve.SYSTEM_LOOKUPS).
SCRAM_THREADS = 4


def _thread_pool(reactor, name, size):
    """
    A pool of at most C{size} threads, started now and stopped when the
    reactor shuts down (as the reactor's own pool is).
    """
    from twisted.python.threadpool import ThreadPool

    pool = ThreadPool(0, size, name)
    pool.start()
    reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    return pool


def build_env(options, reactor, *, getaddrinfo=None, resolv_servers=None):
    """
    The L{flows.Environment} every probe runs in, for parsed C{options}
    (C{read-timeout}, C{dns-server}, C{allow-private}, C{ca-file},
    C{max-stanza-bytes}: a mapping such as L{Options}), on C{reactor}.  The
    service (L{build_api}) and the command line (L{cli}) both build theirs here.

    @param getaddrinfo: the system resolver's C{getaddrinfo} (tests pass a
        stand-in); by default L{socket.getaddrinfo}.
    @param resolv_servers: C{(host, port)} name servers for SRV questions
        instead of those of C{/etc/resolv.conf} (tests), without C{--dns-server}.
    """
    import socket

    from twisted.internet.threads import deferToThreadPool

    from .connect import Connector
    from .flows import Environment
    from .policy import Policy
    from .resolve import (
        SYSTEM_LOOKUPS,
        SYSTEM_WAITING,
        DNSServerResolver,
        Slots,
        SystemResolver,
        make_srv_resolver,
    )
    from .tlsinfo import Trust

    read_timeout = options["read-timeout"] / 1000.0
    if options["dns-server"] is not None:
        resolver = srv_resolver = DNSServerResolver(reactor, *options["dns-server"])
    else:
        lookups = _thread_pool(reactor, "portofcall-dns", SYSTEM_LOOKUPS)
        resolver = SystemResolver(
            lambda f: deferToThreadPool(reactor, lookups, f),
            Slots(SYSTEM_LOOKUPS, SYSTEM_WAITING),
            getaddrinfo or socket.getaddrinfo,
        )
        if resolv_servers is None:
            srv_resolver = make_srv_resolver(reactor, None)
        else:
            srv_resolver = DNSServerResolver(reactor, servers=resolv_servers)
    scram = _thread_pool(reactor, "portofcall-scram", SCRAM_THREADS)
    policy = Policy(allow_private=options["allow-private"])
    targets = TargetRate(reactor, options["per-target-rate"])
    connector = Connector(reactor, resolver, policy, read_timeout, admit=targets.acquire)
    return Environment(
        connect=connector.connect,
        clock=reactor,
        read_timeout=read_timeout,
        limits=Limits(
            max_stanza_bytes=options["max-stanza-bytes"],
            budget=Budget(options["max-buffered-bytes"]),
        ),
        to_thread=lambda f: deferToThreadPool(reactor, scram, f),
        trust=Trust(options["ca-file"]),
        resolver=resolver,
        srv_resolver=srv_resolver,
        policy=policy,
    )


def build_api(options, reactor, *, getaddrinfo=None, resolv_servers=None, demo=None, worker=None):
    """
    The L{web.Api} for parsed C{options}, on C{reactor} (the environment of
    L{build_env}, which documents the keywords).

    @param demo: what C{GET /api/demo} answers, or None (a 404).
    @param worker: the index of this worker process of C{--workers} (which
        C{GET /api/health} names), or None in a single process.
    """
    from .web import Api

    env = build_env(options, reactor, getaddrinfo=getaddrinfo, resolv_servers=resolv_servers)
    return Api(
        env,
        max_concurrent=options["max-concurrent"],
        failed_logins=FailedLogins(reactor, options["max-failed-logins"]),
        modules=getattr(options, "modules", None),
        demo=demo,
        worker=worker,
    )


def build_site(options, reactor, *, demo=None, worker=None):
    """
    The L{BoundedSite} serving the API of L{build_api} for parsed C{options}
    (C{max-connections}, C{access-log} and those of L{build_api}), on C{reactor}.
    """
    from .web import LimitedRequest

    site = BoundedSite(
        build_api(options, reactor, demo=demo, worker=worker).resource(),
        reactor,
        max_connections=options["max-connections"],
        access_log=options["access-log"],
    )
    site.requestFactory = LimitedRequest
    site.displayTracebacks = False
    return site


class ServiceTop(service.MultiService):
    """
    The service's top: its children, the log observer of C{--log-format}
    (set on the application, which twistd's logger then uses), and a
    one-line error when C{--listen} cannot listen.

    @param listen: the C{--listen} endpoint, for the error.
    @param observer: an L{ILogObserver} for the application, or None for
        twistd's own (text, where C{--logfile} says).
    """

    def __init__(self, listen, observer=None):
        super().__init__()
        self.listen = listen
        self.observer = observer

    def setServiceParent(self, parent):
        super().setServiceParent(parent)
        if self.observer is not None:
            from twisted.logger import ILogObserver

            parent.setComponent(ILogObserver, self.observer)

    def startService(self):
        super().startService()
        from twisted.internet import reactor

        # Once running: by then the reactor handles SIGTERM itself.
        reactor.callWhenRunning(tune_gc)

    def privilegedStartService(self):
        from twisted.internet.error import CannotListenError

        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = e.socketError.strerror if e.socketError is not None else e
            raise SystemExit(
                f"portofcall-xmpp: cannot listen on {self.listen}: {reason} "
                "(choose another endpoint with --listen)"
            ) from None


def tune_gc() -> None:
    """
    Make the cyclic garbage collector cheap for a long-running service: move
    what exists once the service has started (modules, classes, the
    service's own objects) out of its sight (C{gc.freeze}), so that a full
    collection walks only what probes allocated since.  Its thresholds stay
    Python's: collecting less often saved little CPU and let the cyclic
    garbage of probes (a transport and its protocol, failures' tracebacks)
    pile up: a 1000-probe burst ended up to 50% larger.
    """
    import gc

    gc.collect()
    gc.freeze()


def log_observer(options):
    """
    The log observer of C{--log-format}: None for text (twistd's own), for
    json L{logs.json_observer} writing where twistd would have written
    (C{--logfile FILE}, C{-} or C{-n} without C{--logfile}: stdout,
    otherwise C{twistd.log}).
    """
    if options["log-format"] == "text":
        return None
    from twisted.python.logfile import LogFile

    from .logs import json_observer

    twistd = getattr(options, "parent", None) or {}
    logfile = twistd.get("logfile")
    if logfile == "-" or (not logfile and twistd.get("nodaemon", True)):
        out = sys.stdout
    else:
        out = LogFile.fromFullPath(logfile or "twistd.log")
    return json_observer(out)


def makeService(options, reactor=None):
    """
    A L{ServiceTop} serving the API on C{--listen}, with the throw-away
    Prosody of C{--demo} (started before it serves, stopped after).  With
    C{--workers} N > 1, it listens on C{--listen} and runs N worker processes
    that serve that socket (L{workers.WorkerPool}); it serves nothing itself.
    """
    if reactor is None:
        from twisted.internet import reactor

    limit = raise_open_file_limit()
    if limit is not None:
        _log.info("open-file limit {before} -> {after}", before=limit[0], after=limit[1])
    top = ServiceTop(options["listen"], log_observer(options))
    demo = None
    if options["demo"]:
        from .demo import DemoService

        demo = DemoService()
        demo.setServiceParent(top)
        demo.prepare(options["ca-file"])
        options["ca-file"] = str(demo.ca_path)
    if options["workers"] > 1:
        from twisted.internet.endpoints import serverFromString

        from .workers import WorkerPool, worker_config

        endpoint = serverFromString(reactor, options["listen"])
        if demo is not None:
            from .demo import Announcing

            endpoint = Announcing(endpoint, demo.announce)
        pool = WorkerPool(
            reactor,
            endpoint,
            options["workers"],
            worker_config(options, reactor, demo=demo and demo.info),
        )
        pool.setServiceParent(top)
        return top
    site = build_site(options, reactor, demo=demo and demo.info)
    http = strports.service(options["listen"], site, reactor=reactor)
    if demo is not None:
        from .demo import Announcing

        http.endpoint = Announcing(http.endpoint, demo.announce)
    http.setServiceParent(top)
    return top
