#!/usr/bin/env python3
"""
SCRAM key derivation and the reactor: other probes' latency while logins
derive keys.

A real Prosody serves a virtual host whose accounts are hashed with 200,000
PBKDF2 iterations, so each SCRAM-SHA-1 login costs the client a noticeable
derivation.  The service runs in this process twice over: once as in
production (derivation in the reactor's thread pool) and once with the
derivation inline on the reactor thread (the baseline a careless port would
be).  While LOGINS logins run back to back, /api/xmpp/connect probes are
timed; their p50/p99 are compared to the same probes with no logins running.

    python bench/scram_latency.py [--seconds 5] [--logins 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "support"))
sys.path.insert(0, str(ROOT))

from prosody import DEFAULT_VHOSTS, ProsodyServer  # noqa: E402

DOMAIN = "slow.localhost"
ITERATIONS = 200_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--logins", type=int, default=4, help="concurrent login loops")
    args = parser.parse_args()

    vhosts = dict(DEFAULT_VHOSTS)
    vhosts[DOMAIN] = {
        "authentication": "internal_hashed",
        "c2s_require_encryption": False,
        "default_iteration_count": ITERATIONS,
    }
    server = ProsodyServer(Path(tempfile.mkdtemp(prefix="portofcall-scram-")), vhosts=vhosts)
    server.register("slow", DOMAIN, "slow-password")
    server.start()
    try:
        results = run(server, args)
    finally:
        server.stop()
    base = results["no logins"]
    print("SCRAM-SHA-1 logins with %d iterations, %d concurrent" % (ITERATIONS, args.logins))
    print(
        "%-34s %9s %9s %8s %8s %7s" % ("/connect latency", "p50", "p99", "p50 x", "p99 x", "logins")
    )
    for name, r in results.items():
        print(
            "%-34s %7.2fms %7.2fms %8.2f %8.2f %7d"
            % (
                name,
                r["p50"],
                r["p99"],
                r["p50"] / base["p50"],
                r["p99"] / base["p99"],
                r["logins"],
            )
        )
    return 0


def run(server, args):
    import treq
    from twisted.internet import reactor, task
    from twisted.internet.defer import Deferred, gatherResults
    from twisted.internet.threads import deferToThreadPool
    from twisted.web.server import Site

    from portofcall_xmpp import tap, web

    def api(threaded: bool):
        options = tap.Options()
        options.parseOptions(
            ["--allow-private", "--max-concurrent", "1000", "--per-target-rate", "0",
             "--max-failed-logins", "0"]
        )  # fmt: skip
        instance = tap.build_api(options, reactor)
        env = instance._env
        to_thread = (
            (lambda f: deferToThreadPool(reactor, reactor.getThreadPool(), f)) if threaded else None
        )
        instance._env = type(env)(
            env.connect, env.clock, env.read_timeout, env.limits, to_thread=to_thread
        )
        site = Site(instance.resource())
        site.requestFactory = web.LimitedRequest
        port = reactor.listenTCP(0, site, interface="127.0.0.1")
        return "http://127.0.0.1:%d" % port.getHost().port

    async def post(base, path, body):
        response = await treq.post(base + path, json=body)
        return json.loads(await response.content())

    async def phase(base, logins: int):
        stop_at = reactor.seconds() + args.seconds
        done = {"logins": 0}
        latencies = []

        async def login_loop(n):
            while reactor.seconds() < stop_at:
                answer = await post(
                    base,
                    "/api/xmpp/login",
                    {
                        "host": "127.0.0.1",
                        "port": server.c2s_port,
                        "domain": DOMAIN,
                        "username": "slow",
                        "password": "slow-password",
                        "resource": "r%d" % n,
                        "timeout": 60000,
                    },
                )
                assert answer["success"], answer
                done["logins"] += 1

        async def probe_loop():
            while reactor.seconds() < stop_at:
                started = time.perf_counter()
                answer = await post(
                    base,
                    "/api/xmpp/connect",
                    {"host": "127.0.0.1", "port": server.c2s_port, "domain": DOMAIN},
                )
                assert answer["success"], answer
                latencies.append((time.perf_counter() - started) * 1000)
                await task.deferLater(reactor, 0.02, lambda: None)

        loops = [Deferred.fromCoroutine(login_loop(n)) for n in range(logins)]
        loops.append(Deferred.fromCoroutine(probe_loop()))
        await gatherResults(loops)
        latencies.sort()
        return {
            "p50": statistics.median(latencies),
            "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
            "logins": done["logins"],
        }

    async def everything():
        threaded, inline = api(True), api(False)
        return {
            "no logins": await phase(threaded, 0),
            "logins, derivation in threads": await phase(threaded, args.logins),
            "logins, derivation inline": await phase(inline, args.logins),
        }

    results = {}

    def go():
        d = Deferred.fromCoroutine(everything())
        d.addCallback(results.update)
        d.addErrback(lambda f: (f.printTraceback(), results.update({"error": f})))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if "error" in results:
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    raise SystemExit(main())
