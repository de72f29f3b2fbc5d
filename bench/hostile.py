#!/usr/bin/env python3
"""
Issue 8's table, measured: what one hostile server (or 200) costs the service.

Each row starts a fresh service (``twistd -n portofcall-xmpp --allow-private``
on a free loopback port, as a subprocess, so its CPU time and peak RSS are its
own) and small hostile XMPP servers on 127.0.0.1 (tests/support/hostile.py),
sends the row's probes, and while they run asks ``GET /api/health`` every
100 ms from a thread.  Per row it prints:

 - ``cpu s``: the service's user+system CPU seconds from the first probe
   until it is idle again (``/proc/PID/stat``), and in brackets this
   script's own (the hostile servers and HTTP clients: when it nears the
   row's duration, the load generator, not the service, set the pace);
 - ``health worst``: the slowest /api/health answer (a sample not answered
   within 5 s counts as 5 s and as failed);
 - ``peak RSS``: the service's VmHWM (``/proc/PID/status``);
 - ``answers``: the slowest and median answer time of the probes beside
   their ``timeout``, and their outcomes (``ok`` or the ``errorType``).

A row is cut after ``--cap`` seconds (default 120): probes not answered by
then are reported as ``cut``, and the CPU figure is a lower bound (``>``).
Everything runs on loopback; nothing is sent elsewhere.

    python bench/hostile.py [--rows ns50k,mech50k] [--quick] [--cap 120]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

import treq  # noqa: E402
from hostile import (  # noqa: E402
    BOUND_FEATURES,
    HEADER,
    Endless,
    HealthSampler,
    HostileFactory,
    Paced,
    Scripted,
    SendAfterHeader,
    ServiceProcess,
    disco_script,
    features_block,
    login_script,
    mechanisms,
    namespaced_children,
    padding,
)
from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults  # noqa: E402
from twisted.internet.task import deferLater, react  # noqa: E402

MB = 1000 * 1000


def rows(quick: bool) -> dict:
    """name -> (description, endpoint, concurrent probes, timeout ms, factory builder)."""
    k = 10 if quick else 1
    big = 4 * MB // (4 if quick else 1)
    probes = 20 if quick else 200
    return {
        "ns50k": (
            f"1 /connect, features of {50000 // k:,} children each in its own namespace",
            "connect", 1, 10000,
            lambda: HostileFactory(SendAfterHeader,
                                   payload=features_block(namespaced_children(50000 // k))),
        ),
        "ns100k": (
            f"1 /connect, features of {100000 // k:,} children each in its own namespace",
            "connect", 1, 10000,
            lambda: HostileFactory(SendAfterHeader,
                                   payload=features_block(namespaced_children(100000 // k))),
        ),
        "mech50k": (
            f"1 /connect, {50000 // k:,} SASL mechanisms",
            "connect", 1, 10000,
            lambda: HostileFactory(SendAfterHeader,
                                   payload=features_block(mechanisms(50000 // k))),
        ),
        "big_fast": (
            f"{probes} /connect, a {big / MB:g} MB features block sent at once",
            "connect", probes, 10000,
            lambda: HostileFactory(SendAfterHeader, payload=features_block(padding(big))),
        ),
        "big_slow": (
            f"{probes} /connect, a {big / MB:g} MB features block at 640 KB/s",
            "connect", probes, 10000,
            lambda: HostileFactory(Paced, payload=features_block(padding(big)),
                                   chunk=64000, interval=0.1),
        ),
        "big_tiny": (
            f"{probes} /connect, a {big / MB:g} MB features block of <a/> elements",
            "connect", probes, 10000,
            lambda: HostileFactory(SendAfterHeader,
                                   payload=features_block(padding(big, b"<a/>"))),
        ),
        "endless": (
            f"{probes} /connect, endless <a/> elements inside <stream:features>",
            "connect", probes, 10000,
            lambda: HostileFactory(Endless, script=[(b"version='1.0'",
                                                     HEADER + b"<stream:features>")],
                                   unit=b"<a/>" * 16384),
        ),
        "flood200": (
            f"{probes} /login, tiny top-level elements flooded while waiting for bind",
            "login", probes, 15000,
            lambda: HostileFactory(Endless, script=login_script(bound=BOUND_FEATURES)
                                   + [(b"</iq>", b"")], unit=b"<presence/>" * 6000),
        ),
        "flood40": (
            f"{probes // 5} /login, tiny top-level elements flooded while waiting for bind",
            "login", probes // 5, 15000,
            lambda: HostileFactory(Endless, script=login_script(bound=BOUND_FEATURES)
                                   + [(b"</iq>", b"")], unit=b"<presence/>" * 6000),
        ),
        "disco30k": (
            f"1 /server-info, a disco#info of {30000 // k:,} features",
            "server-info", 1, 20000,
            lambda: HostileFactory(Scripted, script=disco_script(30000 // k)),
        ),
    }  # fmt: skip


async def probe(service, endpoint, port, timeout, cap):
    """POST one probe; (seconds to the answer or None if cut, outcome)."""
    body = {"host": "127.0.0.1", "port": port, "domain": "localhost", "timeout": timeout}
    if endpoint != "connect":
        body.update(username="probe", password="probe-password", tls="none")
    started = time.monotonic()
    d = treq.post(service.url(f"/api/xmpp/{endpoint}"), json=body, persistent=False)
    deadline = reactor.callLater(cap, d.cancel)
    try:
        response = await d
        result = json.loads(await response.content())
    except Exception:
        return None, "cut" if not deadline.active() else "http-error"
    finally:
        if deadline.active():
            deadline.cancel()
    took = time.monotonic() - started
    if response.code != 200:
        return took, f"http-{response.code}"
    return took, "ok" if result["success"] else result["errorType"]


async def wait_idle(service, until):
    """Wait until the service's CPU time stops growing (or C{until}); True if idle."""
    last = service.cpu_seconds()
    while time.monotonic() < until:
        await deferLater(reactor, 0.5, lambda: None)
        now = service.cpu_seconds()
        if now - last < 0.05:
            return True
        last = now
    return False


async def run_row(name, row, cap):
    description, endpoint, count, timeout, build = row
    factory = build()
    listening = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=1024)
    service = ServiceProcess("--max-concurrent", "1000")
    try:
        service.wait_listening()
        await deferLater(reactor, 0.5, lambda: None)
        idle_rss = service.rss()
        cpu0 = service.cpu_seconds()
        own0 = time.process_time()
        sampler = HealthSampler(service.port).start()
        started = time.monotonic()
        port = listening.getHost().port
        answers = await gatherResults(
            [Deferred.fromCoroutine(probe(service, endpoint, port, timeout, cap))
             for _ in range(count)]
        )  # fmt: skip
        idle = await wait_idle(service, started + cap)
        cpu = service.cpu_seconds() - cpu0
        own = time.process_time() - own0
        sampler.stop()
        peak = service.peak_rss()
    finally:
        service.stop()
        for proto in list(factory.live):
            proto.transport.abortConnection()
        await listening.stopListening()
    times = sorted(t for t, _ in answers if t is not None)
    outcomes: dict = {}
    for _, outcome in answers:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {
        "row": name,
        "what": description,
        "cpu_s": round(cpu, 1),
        "cpu_cut": not idle,
        "bench_cpu_s": round(own, 1),
        "health_worst_s": round(sampler.worst, 2),
        "health_samples": len(sampler.samples),
        "health_failed": sampler.failures,
        "idle_rss_mib": round(idle_rss / 2**20),
        "peak_rss_mib": round(peak / 2**20),
        "answer_max_s": round(times[-1], 1) if times else None,
        "answer_median_s": round(statistics.median(times), 1) if times else None,
        "timeout_s": timeout / 1000,
        "outcomes": outcomes,
    }


def show(r):
    cpu = (">" if r["cpu_cut"] else "") + f"{r['cpu_s']} (bench {r['bench_cpu_s']})"
    print(
        f"| {r['row']} | {r['what']} | {cpu} | {r['health_worst_s']} s "
        f"({r['health_failed']}/{r['health_samples']} failed) | {r['peak_rss_mib']} MiB "
        f"(idle {r['idle_rss_mib']}) | max {r['answer_max_s']} s, median "
        f"{r['answer_median_s']} s (timeout {r['timeout_s']:g} s) | "
        + ", ".join(f"{k} {v}" for k, v in sorted(r["outcomes"].items()))
        + " |",
        flush=True,
    )


async def main(reactor_, args):
    table = rows(args.quick)
    names = args.rows.split(",") if args.rows else list(table)
    unknown = set(names) - set(table)
    if unknown:
        raise SystemExit(f"unknown rows: {', '.join(sorted(unknown))}; rows: {', '.join(table)}")
    print("| row | what | cpu s | health worst | peak RSS | answers | outcomes |")
    print("|---|---|---|---|---|---|---|")
    results = []
    for name in names:
        result = await run_row(name, table[name], args.cap)
        results.append(result)
        show(result)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", help="comma-separated rows (default: all)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes: a tenth of the children, a quarter of the 4 MB, 20 probes for 200",
    )
    parser.add_argument("--cap", type=float, default=120.0, help="seconds a row may take")
    parser.add_argument("--json", help="also write the results to this file")
    react(lambda r: Deferred.fromCoroutine(main(r, parser.parse_args())))
