#!/usr/bin/env python3
"""
Load benchmark: the service against a minimal raw-socket client, same run.

Both sides log in with SASL PLAIN (so the comparison is of the same
exchange; SCRAM costs are measured by bench/scram_latency.py).

It starts a real Prosody (tests/support/prosody.py) and the service (`twist
portofcall-xmpp --allow-private`) on loopback, then for /connect and /login
at 1, 100 and 1000 concurrent requests measures:

 - through the service over HTTP: p50/p99 latency, probes per second;
 - a minimal raw-socket asyncio client doing the same XMPP exchange straight
   to Prosody (substring matching, no XML parser, no HTTP): the baseline;

and prints both with their ratios, plus the service's peak RSS (VmHWM).
Every target is on 127.0.0.1.  Run by hand (not part of CI's pass/fail):

    python bench/load.py [--levels 1,100,1000] [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]

from prosody import ACCOUNTS, DOMAIN, ProsodyServer  # noqa: E402

USER = "alice"
PASSWORD = ACCOUNTS[DOMAIN][USER]
HEADER = (
    "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" % DOMAIN
).encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int, field: str) -> int:
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# -- the raw baseline -------------------------------------------------------


async def _read_until(reader, marker: bytes, buf: bytearray) -> None:
    while marker not in buf:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    del buf[: buf.index(marker) + len(marker)]


async def raw_connect(port: int, n: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        buf = bytearray()
        writer.write(HEADER)
        await _read_until(reader, b"</stream:features>", buf)
        writer.write(b"</stream:stream>")
        return True
    finally:
        writer.close()


async def raw_login(port: int, n: int) -> bool:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        buf = bytearray()
        writer.write(HEADER)
        await _read_until(reader, b"</stream:features>", buf)
        token = base64.b64encode(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())
        writer.write(
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>"
            + token
            + b"</auth>"
        )
        await _read_until(reader, b"<success", buf)
        buf.clear()
        writer.write(HEADER)
        await _read_until(reader, b"</stream:features>", buf)
        writer.write(
            b"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>raw-%d</resource></bind></iq>" % n
        )
        await _read_until(reader, b"</iq>", buf)
        writer.write(
            b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
        )
        await _read_until(reader, b"id='sess1'", buf)
        writer.write(b"</stream:stream>")
        return True
    finally:
        writer.close()


# -- through the service ----------------------------------------------------


async def http_post(port: int, path: str, body: dict) -> tuple[int, dict]:
    payload = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n"
            % (path.encode(), len(payload))
            + payload
        )
        data = await reader.read()
    finally:
        writer.close()
    head, _, content = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(content) if content else {}


def service_probe(service_port: int, xmpp_port: int, endpoint: str):
    async def probe(port: int, n: int) -> bool:
        body = {"host": "127.0.0.1", "port": xmpp_port, "domain": DOMAIN, "timeout": 60000}
        if endpoint == "login":
            body.update(
                username=USER, password=PASSWORD, resource=f"svc-{n}", mechanism="PLAIN", tls="none"
            )
        status, answer = await http_post(service_port, "/api/xmpp/" + endpoint, body)
        return status == 200 and answer.get("success") is True

    return probe


# -- driver -----------------------------------------------------------------


async def run_level(probe, port: int, concurrency: int, total: int) -> dict:
    latencies: list[float] = []
    failures = 0
    counter = iter(range(total))

    async def worker():
        nonlocal failures
        for n in counter:
            started = time.perf_counter()
            try:
                ok = await probe(port, n)
            except (OSError, ConnectionError, ValueError):
                ok = False
            latencies.append(time.perf_counter() - started)
            if not ok:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    latencies.sort()
    return {
        "p50": statistics.median(latencies) * 1000,
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "rate": len(latencies) / wall,
        "failures": failures,
        "count": len(latencies),
    }


def start_service(xmpp_dir: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    log = open(xmpp_dir / "service.out", "wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
            "--pidfile=",
            "-l", str(xmpp_dir / "service.log"), "portofcall-xmpp", "--allow-private",
            "--listen", "tcp:%d:interface=127.0.0.1:backlog=4096" % port,
            "--max-concurrent", "5000", "--read-timeout", "30000",
            "--per-target-rate", "0", "--max-failed-logins", "0", "--max-connections", "5000",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("the service did not start; see %s" % (xmpp_dir / "service.log"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,100,1000", help="concurrency levels")
    parser.add_argument("--requests", type=int, default=3000, help="requests per level (max)")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    base = Path(tempfile.mkdtemp(prefix="portofcall-bench-"))
    server = ProsodyServer(
        base / "prosody", extra_global_lines=["network_settings = { tcp_backlog = 4096 }"]
    )
    server.register(USER, DOMAIN, PASSWORD)
    server.start()
    service, service_port = start_service(base)
    results = []
    try:
        time.sleep(0.5)
        idle_rss = rss_kib(service.pid, "VmRSS")
        for endpoint, raw in (("connect", raw_connect), ("login", raw_login)):
            for level in levels:
                total = min(args.requests, max(200, level * 3))
                raw_result = asyncio.run(run_level(raw, server.c2s_port, level, total))
                svc_result = asyncio.run(
                    run_level(
                        service_probe(service_port, server.c2s_port, endpoint),
                        server.c2s_port,
                        level,
                        total,
                    )
                )
                results.append(
                    (endpoint, level, raw_result, svc_result, rss_kib(service.pid, "VmHWM"))
                )
        peak_rss = rss_kib(service.pid, "VmHWM")
    finally:
        service.terminate()
        service.wait(10)
        server.stop()

    print(
        "service idle RSS %.1f MiB; peak RSS (VmHWM) %.1f MiB" % (idle_rss / 1024, peak_rss / 1024)
    )
    print(
        "%-8s %6s | %9s %9s %8s | %9s %9s %8s | %8s %8s | %s"
        % ("endpoint", "conc", "raw p50", "raw p99", "raw/s", "svc p50", "svc p99", "svc/s",
           "p50 x", "rate x", "fail raw/svc, peak RSS")
    )  # fmt: skip
    for endpoint, level, raw, svc, hwm in results:
        print(
            "%-8s %6d | %7.2fms %7.2fms %8.0f | %7.2fms %7.2fms %8.0f | %8.2f %8.2f "
            "| %d/%d, %.0f MiB"
            % (
                endpoint, level, raw["p50"], raw["p99"], raw["rate"], svc["p50"], svc["p99"],
                svc["rate"], svc["p50"] / raw["p50"], svc["rate"] / raw["rate"],
                raw["failures"], svc["failures"], hwm / 1024,
            )
        )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
