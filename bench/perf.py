#!/usr/bin/env python3
"""
Performance goals, measured in one run: the service beside its baselines.

It starts, on 127.0.0.1 only, a real Prosody (tests/support/prosody.py; its
debug log off, ``tcp_backlog`` 4096; users with rosters of 10,000 and 50,000
items seeded before it starts), the HTTP floor (bench/floor.py: a bare
twisted.web JSON endpoint in its own process) and the service (``twistd -n
portofcall-xmpp``, access log off, ``--per-target-rate 0 --max-failed-logins
0 --max-connections 5000 --max-concurrent 5000 --allow-private --read-timeout
30000``, backlog 4096), and prints one table of figures, ratios and PASS/MISS
per goal, then the details.

Baselines, measured in the same run:

 - raw client: a minimal asyncio client straight to Prosody (bench/load.py's
   ``raw_connect``/``raw_login``: substring matching, no XML parser, no HTTP),
   and ``raw_roster`` here (PLAIN, bind, session as the service does, the
   roster get, read until the ``</iq>`` of the reply with id ``r1``);
 - HTTP floor: the same request loop against bench/floor.py.

Goals (CPU = utime+stime from /proc/PID/stat, summed over the process and
its descendants, so every ``--workers`` child counts; a delta around the
measured phase, divided by its requests):

 1. service CPU per /connect at concurrency 10 <= 2.0 x floor CPU per request
    (the same loop against the floor).
 2. /connect p50, one request at a time, <= 1.5 x (raw connect p50 + floor p50).
 3. what a PLAIN /login (``tls: "none"``) adds over a raw PLAIN login once
    Prosody's CPU is taken out, <= 1.5 ms.  Both are run one at a time (a
    distinct resource each), and Prosody's CPU per login is measured on each
    side; what the service makes Prosody do beyond what the raw client does
    is not charged to the service, and the floor p50 is the HTTP round trip
    any HTTP service pays:
        extra = (svc p50 - Prosody CPU per svc login)
              - (raw p50 - Prosody CPU per raw login) - floor p50
              = svc p50 - raw p50 - floor p50 - (Prosody CPU difference)
    (Prosody's CPU per login includes what it does after the client has
    gone, off the client's clock: it can exceed a p50, so only the
    difference of the two sides means anything.)
 4. roster: service CPU per /api/xmpp/roster call minus the raw client's
    CPU per fetch of the same roster (``time.process_time`` of this process
    around the fetches; 3 fetches each, after one unmeasured fetch of the
    10,000 each way): <= 60 ms at 10,000 items; 50,000/10,000 of that
    extra at most 6 (linear, 5, with room for noise; below 5 when the fixed
    cost of the login and the HTTP answer weighs more at 10,000).  This part
    runs on a service of its own
    started with ``--max-stanza-bytes 16777216`` (a 50,000-item reply is
    about 6.5 MB; Prosody's ``c2s_stanza_size_limit`` bounds what it
    receives, not what it sends, so Prosody needs no change).
 5. /connect per second with 1000 in flight >= 0.7 x the raw client's with
    one process, >= 0.9 x with ``--workers 2`` (a fresh service each; an
    option the service may not have yet: then "not available"), 0 errors,
    and peak RSS (VmHWM) of every service process <= 150 MiB.  /login at
    1000 in flight is printed beside it (no goal).

Choices:

 - The load generator (raw client and HTTP client) is stdlib asyncio in this
   process, the same for both sides; each phase is its own ``asyncio.run``.
   It competes with Prosody and the service for the machine's cores: its own
   CPU per request is printed (``bench CPU``), so a saturated generator
   shows.  One connection per request (``Connection: close``) everywhere.
 - Every phase is preceded by a short unmeasured warm-up of the same kind.
 - Goals 1-3 run on the 1-process service of goal 5 (so only when 1 is in
   ``--workers-list``), before its goal-5 runs.
 - Throughput at 1000 in flight runs raw and service alternately, best of
   2 runs each for /connect (1 for /login), the raw runs again beside each
   service (the machine is shared; the best run is the least disturbed).
   Printed beside them: how many cores each process kept busy.  p50s are
   medians of N sequential requests.
 - ``--quick``: a tenth to a fifth of the requests, one run, one roster
   fetch: a smoke run (about 2 minutes), not figures to quote.
 - Peak RSS of goal 5 is that of the fresh service that ran goals 1-3 and 5
   (the roster service's own peak is printed apart, no goal).

    python bench/perf.py [--quick] [--workers-list 1,2] [--skip-roster] [--json FILE] [--keep]

(On an error the temporary directory with the logs is kept and named.)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support"), str(ROOT / "bench")]

from load import HEADER, _read_until, http_post, raw_connect, raw_login  # noqa: E402
from prosody import ACCOUNTS, DOMAIN, LuaRaw, ProsodyServer, big_roster, lua_string  # noqa: E402

import twisted  # noqa: E402

USER = "alice"
PASSWORD = ACCOUNTS[DOMAIN][USER]
ROSTER_USERS = {10_000: ("roster10k", "roster10k-pw"), 50_000: ("roster50k", "roster50k-pw")}
MAX_STANZA_BYTES = 16 * 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

SIZES = {
    # name: (quick, full)
    "cpu_requests": (300, 2000),
    "cpu_concurrency": (10, 10),
    "sequential": (100, 500),
    "roster_reps": (1, 3),
    "inflight": (1000, 1000),
    "connect_total": (2000, 5000),
    "login_total": (1000, 2000),
    "rounds": (1, 2),
    "warmup": (20, 50),
}

# -- /proc --------------------------------------------------------------------


def _stat_fields(pid: int | str) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> list[int]:
    """C{pid} and every descendant of it (scanning /proc for parents)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                children[int(_stat_fields(entry.name)[1])].append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    tree, i = [pid], 0
    while i < len(tree):
        tree.extend(children.get(tree[i], ()))
        i += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """utime+stime of C{pid} and its descendants, in seconds."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = _stat_fields(p)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICK


def status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- processes ------------------------------------------------------------------


class NotAvailable(Exception):
    """The service refused its options (e.g. --workers before it exists)."""


class Service:
    """The service under C{twistd -n portofcall-xmpp} in its own process."""

    def __init__(self, base: Path, label: str, workers: int = 1, extra: tuple[str, ...] = ()):
        self.label = label
        self.port = free_port()
        self.out_path = base / f"service-{label}.out"
        argv = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()", "-n",
            "--pidfile=", "-l", str(base / f"service-{label}.log"), "portofcall-xmpp",
            "--allow-private",
            "--listen", f"tcp:{self.port}:interface=127.0.0.1:backlog=4096",
            "--max-concurrent", "5000", "--read-timeout", "30000",
            "--per-target-rate", "0", "--max-failed-logins", "0", "--max-connections", "5000",
            *extra,
        ]  # fmt: skip
        if workers != 1:
            argv += ["--workers", str(workers)]
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
        )
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.pid = self.proc.pid
        self._wait_healthy()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + 60
        url = f"http://127.0.0.1:{self.port}/api/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                lines = self.out_path.read_text(errors="replace").strip().splitlines()
                raise NotAvailable(lines[-1] if lines else f"exit status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as answer:
                    if answer.status == 200:
                        time.sleep(0.5)  # let every worker come up
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit(f"the service ({self.label}) did not answer /api/health in 60 s")

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def peak_rss_mib(self) -> list[float]:
        """VmHWM of every process of the service (the main one first), in MiB."""
        return [status_kib(p, "VmHWM") / 1024 for p in process_tree(self.pid)]

    def stop(self) -> None:
        tree = process_tree(self.pid)
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in tree[1:]:  # workers left behind (ours: descendants of our child)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class FloorProcess:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "floor.py")],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.pid = self.proc.pid
        self.port = int(self.proc.stdout.readline())

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_prosody(base: Path) -> ProsodyServer:
    server = ProsodyServer(
        base / "prosody", extra_global_lines=["network_settings = { tcp_backlog = 4096 }"]
    )
    # Info to the log file (its start is detected there); no debug log.
    server.global_options["log"] = LuaRaw(
        f'{{ {{ levels = {{ min = "info" }}, to = "file", '
        f"filename = {lua_string(str(server.log_path))} }} }}"
    )
    server.register(USER, DOMAIN, PASSWORD)
    for size, (user, password) in ROSTER_USERS.items():
        server.register(user, DOMAIN, password)
        server.set_roster(user, DOMAIN, big_roster(size))
    server.start()
    return server


# -- probes: each returns None on success, else what went wrong -----------------


def _connect_body(xmpp_port: int) -> dict:
    return {"host": "127.0.0.1", "port": xmpp_port, "domain": DOMAIN, "timeout": 60000}


def _auth_body(xmpp_port: int, user: str, password: str, resource: str) -> dict:
    return {
        **_connect_body(xmpp_port), "username": user, "password": password,
        "resource": resource, "mechanism": "PLAIN", "tls": "none",
    }  # fmt: skip


def _answer_error(status: int, answer: dict) -> str | None:
    if status == 200 and answer.get("success") is True:
        return None
    return f"{status} {answer.get('errorType')}: {str(answer.get('error'))[:80]}"


def floor_probe(port: int, xmpp_port: int):
    body = _connect_body(xmpp_port)

    async def probe(n: int) -> str | None:
        status, answer = await http_post(port, "/", body)
        return _answer_error(status, answer)

    return probe


def service_probe(port: int, xmpp_port: int, endpoint: str, tag: str = "svc"):
    async def probe(n: int) -> str | None:
        if endpoint == "connect":
            body = _connect_body(xmpp_port)
        else:
            body = _auth_body(xmpp_port, USER, PASSWORD, f"{tag}-{n}")
        status, answer = await http_post(port, "/api/xmpp/" + endpoint, body)
        return _answer_error(status, answer)

    return probe


def raw_probe(xmpp_port: int, kind: str):
    fn = raw_connect if kind == "connect" else raw_login

    async def probe(n: int) -> str | None:
        await fn(xmpp_port, n)
        return None

    return probe


async def raw_roster(port: int, user: str, password: str, n: int) -> bytes:
    """PLAIN login, bind, session, roster get; the bytes read after the get."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        buf = bytearray()
        writer.write(HEADER)
        await _read_until(reader, b"</stream:features>", buf)
        token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode())
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
            b"<resource>rawroster-%d</resource></bind></iq>" % n
        )
        await _read_until(reader, b"</iq>", buf)
        writer.write(
            b"<iq type='set' id='sess1'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>"
        )
        await _read_until(reader, b"id='sess1'", buf)
        buf.clear()  # (what is left of the session reply is not counted)
        writer.write(b"<iq type='get' id='r1'><query xmlns='jabber:iq:roster'/></iq>")
        begin = scan = -1
        while True:
            if begin < 0:
                begin = buf.find(b"id='r1'")
                scan = begin
            if begin >= 0:
                if buf.find(b"</iq>", scan) >= 0:
                    break
                scan = max(begin, len(buf) - 4)
            chunk = await reader.read(262144)
            if not chunk:
                raise ConnectionError("closed before the roster")
            buf += chunk
        writer.write(b"</stream:stream>")
        return bytes(buf)
    finally:
        writer.close()


# -- the driver -------------------------------------------------------------------


async def drive(
    probe, concurrency: int, total: int, first: int = 0
) -> tuple[list, collections.Counter, float]:
    """C{total} probes numbered from C{first}, C{concurrency} at a time."""
    latencies: list[float] = []
    errors: collections.Counter = collections.Counter()
    counter = iter(range(first, first + total))

    async def worker():
        for n in counter:
            started = time.perf_counter()
            try:
                error = await probe(n)
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError) as e:
                error = f"{type(e).__name__}: {str(e)[:80]}"
            latencies.append(time.perf_counter() - started)
            if error:
                errors[error] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def phase(probe, concurrency: int, total: int, cpus: dict | None = None, warmup: int = 0) -> dict:
    """Run C{total} probes, C{concurrency} at a time; latency, rate, errors and,
    for each C{name: cpu-function} of C{cpus}, its CPU per request in ms."""
    cpus = cpus or {}
    if warmup:
        asyncio.run(drive(probe, min(concurrency, warmup), warmup, 1_000_000))
    before = {name: fn() for name, fn in cpus.items()}
    bench_before = time.process_time()
    latencies, errors, wall = asyncio.run(drive(probe, concurrency, total))
    bench_cpu = time.process_time() - bench_before
    after = {name: fn() for name, fn in cpus.items()}
    latencies.sort()
    return {
        "count": len(latencies),
        "concurrency": concurrency,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "rate": len(latencies) / wall,
        "wall_s": wall,
        "failures": sum(errors.values()),
        "errors": dict(errors.most_common(3)),
        "cpu_ms": {name: (after[name] - before[name]) * 1000 / len(latencies) for name in cpus},
        "cores": {name: (after[name] - before[name]) / wall for name in cpus},
        "bench_cpu_ms": bench_cpu * 1000 / len(latencies),
        "bench_cores": bench_cpu / wall,
    }


def best_rate(runs: list[dict]) -> dict:
    best = max(runs, key=lambda r: r["rate"])
    return {**best, "failures": sum(r["failures"] for r in runs),
            "errors": {k: v for r in runs for k, v in r["errors"].items()},
            "rates": [r["rate"] for r in runs]}  # fmt: skip


# -- the measures ---------------------------------------------------------------------


def measure_basics(service: Service, floor: FloorProcess, prosody_cpu, xmpp: int, n: dict) -> dict:
    """Goals 1 to 3."""
    out = {}
    c = n["cpu_concurrency"]
    cpus = {"service": service.cpu, "floor": floor.cpu, "prosody": prosody_cpu}
    out["cpu_connect"] = phase(
        service_probe(service.port, xmpp, "connect"), c, n["cpu_requests"], cpus, n["warmup"]
    )
    out["cpu_floor"] = phase(floor_probe(floor.port, xmpp), c, n["cpu_requests"], cpus, n["warmup"])
    out["cpu_twisted_client"] = twisted_client_cpu(xmpp, n["cpu_requests"], c)
    seq = n["sequential"]
    out["seq_connect"] = phase(service_probe(service.port, xmpp, "connect"), 1, seq, cpus, 20)
    out["seq_raw_connect"] = phase(raw_probe(xmpp, "connect"), 1, seq, cpus, 20)
    out["seq_floor"] = phase(floor_probe(floor.port, xmpp), 1, seq, cpus, 20)
    out["seq_login"] = phase(service_probe(service.port, xmpp, "login", "seq"), 1, seq, cpus, 20)
    out["seq_raw_login"] = phase(raw_probe(xmpp, "login"), 1, seq, cpus, 20)
    return out


def twisted_client_cpu(xmpp: int, total: int, concurrency: int) -> dict:
    """
    CPU per connect of the bare Twisted XMPP client (bench/twisted_client.py),
    in its own process: with the HTTP floor, the least a Twisted service
    answering /connect pays.
    """
    script = Path(__file__).resolve().parent / "twisted_client.py"
    out = subprocess.run(
        [sys.executable, str(script), str(xmpp), DOMAIN, str(total), str(concurrency)],
        capture_output=True, check=True, text=True, timeout=300,
    ).stdout  # fmt: skip
    result = json.loads(out.strip().splitlines()[-1])
    result["cpu_ms"] = result["user_ms"] + result["sys_ms"]
    return result


def measure_inflight(service: Service, prosody_cpu, xmpp: int, n: dict) -> dict:
    """Goal 5 for one service: /connect (and /login) with 1000 in flight,
    alternating with the raw client."""
    cpus = {"service": service.cpu, "prosody": prosody_cpu}
    warm = n["warmup"]
    runs: dict[str, list] = {"raw_connect": [], "connect": [], "raw_login": [], "login": []}
    probes = {
        "raw_connect": (raw_probe(xmpp, "connect"), n["connect_total"]),
        "connect": (service_probe(service.port, xmpp, "connect"), n["connect_total"]),
        "raw_login": (raw_probe(xmpp, "login"), n["login_total"]),
        "login": (service_probe(service.port, xmpp, "login", f"tp{service.label}"),
                  n["login_total"]),
    }  # fmt: skip
    order = ["raw_connect", "connect"] * n["rounds"] + ["raw_login", "login"]
    for key in order:
        probe, total = probes[key]
        runs[key].append(phase(probe, n["inflight"], total, cpus, warm))
    return {
        **{key: best_rate(r) for key, r in runs.items()},
        "peak_rss_mib": service.peak_rss_mib(),
    }


async def _roster_calls(
    service_port: int, xmpp: int, user: str, password: str, reps: int
) -> tuple[int, int]:
    """C{reps} roster calls one after the other; the last answer's total and
    number of contacts."""
    for n in range(reps):
        body = _auth_body(xmpp, user, password, f"r-{n}")
        status, answer = await http_post(service_port, "/api/xmpp/roster", body)
        error = _answer_error(status, answer)
        if error:
            raise RuntimeError(f"/api/xmpp/roster of {user}: {error}")
    return answer["roster"]["total"], len(answer["roster"]["contacts"])


async def _raw_fetches(xmpp: int, user: str, password: str, reps: int) -> tuple[float, bytes]:
    """The raw client's CPU (this process) for C{reps} fetches; the last reply."""
    cpu = time.process_time()
    for i in range(reps):
        reply = await raw_roster(xmpp, user, password, i)
    return time.process_time() - cpu, reply


def roster_row(service: Service, xmpp: int, prosody_cpu, size: int, reps: int) -> dict:
    user, password = ROSTER_USERS[size]
    row: dict = {"items": size}
    cpu0, p0, t0 = service.cpu(), prosody_cpu(), time.perf_counter()
    total, contacts = asyncio.run(_roster_calls(service.port, xmpp, user, password, reps))
    row["svc_wall_ms"] = (time.perf_counter() - t0) * 1000 / reps
    row["svc_cpu_ms"] = (service.cpu() - cpu0) * 1000 / reps
    row["svc_prosody_cpu_ms"] = (prosody_cpu() - p0) * 1000 / reps
    row["svc_total"], row["svc_contacts"] = total, contacts

    p0, t0 = prosody_cpu(), time.perf_counter()
    raw_cpu, reply = asyncio.run(_raw_fetches(xmpp, user, password, reps))
    row["raw_wall_ms"] = (time.perf_counter() - t0) * 1000 / reps
    row["raw_cpu_ms"] = raw_cpu * 1000 / reps
    row["raw_prosody_cpu_ms"] = (prosody_cpu() - p0) * 1000 / reps
    row["raw_items"], row["raw_bytes"] = reply.count(b"<item "), len(reply)
    row["extra_cpu_ms"] = row["svc_cpu_ms"] - row["raw_cpu_ms"]
    return row


def measure_roster(base: Path, xmpp: int, prosody_cpu, reps: int) -> dict:
    """Goal 4, on a service of its own with --max-stanza-bytes 16 MiB; one
    unmeasured call of the smallest roster each way first."""
    service = Service(base, "roster", extra=("--max-stanza-bytes", str(MAX_STANZA_BYTES)))
    try:
        user, password = ROSTER_USERS[min(ROSTER_USERS)]
        asyncio.run(_roster_calls(service.port, xmpp, user, password, 1))
        asyncio.run(_raw_fetches(xmpp, user, password, 1))
        out: dict = {size: roster_row(service, xmpp, prosody_cpu, size, reps)
                     for size in ROSTER_USERS}  # fmt: skip
        out["peak_rss_mib"] = service.peak_rss_mib()
    finally:
        service.stop()
    return out


# -- report -------------------------------------------------------------------------------


def machine() -> dict:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    try:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
    except OSError:
        commit = "?"
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "twisted": twisted.__version__,
        "commit": commit,
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "MISS")


def report(res: dict) -> list[dict]:
    """The goal rows: (goal, figure, baseline, value, target, verdict)."""
    rows: list[dict] = []

    def row(goal, figure, baseline, value, target, ok):
        rows.append({"goal": goal, "figure": figure, "baseline": baseline, "value": value,
                     "target": target, "verdict": verdict(ok)})  # fmt: skip

    b = res.get("basics")
    if b:
        svc = b["cpu_connect"]["cpu_ms"]["service"]
        flo = b["cpu_floor"]["cpu_ms"]["floor"]
        r1 = svc / flo if flo else float("inf")
        row("1 CPU per /connect", f"{svc:.3f} ms", f"floor {flo:.3f} ms", f"{r1:.2f}x",
            "<= 2.0x", r1 <= 2.0)  # fmt: skip
        client = b.get("cpu_twisted_client")
        if client:
            least = flo + client["cpu_ms"]
            row("1 (least: floor + client)", f"{svc:.3f} ms",
                f"floor + Twisted client {least:.3f} ms", f"{svc / least:.2f}x",
                f"= {least / flo:.2f}x floor", None)  # fmt: skip
        s, raw, fl = (b[k]["p50_ms"] for k in ("seq_connect", "seq_raw_connect", "seq_floor"))
        r2 = s / (raw + fl)
        row("2 /connect p50", f"{s:.3f} ms", f"raw {raw:.3f} + floor {fl:.3f} ms", f"{r2:.2f}x",
            "<= 1.5x", r2 <= 1.5)  # fmt: skip
        sl, rl = b["seq_login"], b["seq_raw_login"]
        wall = sl["p50_ms"] - rl["p50_ms"] - fl
        prosody = sl["cpu_ms"]["prosody"] - rl["cpu_ms"]["prosody"]
        extra = wall - prosody
        res["login_extra"] = {"svc_p50_ms": sl["p50_ms"], "svc_prosody_cpu_ms":
                              sl["cpu_ms"]["prosody"], "raw_p50_ms": rl["p50_ms"],
                              "raw_prosody_cpu_ms": rl["cpu_ms"]["prosody"], "floor_p50_ms": fl,
                              "extra_ms": extra}  # fmt: skip
        row("3 PLAIN /login adds", f"{sl['p50_ms']:.3f} ms", f"raw {rl['p50_ms']:.3f} + floor "
            f"{fl:.3f} ms", f"{extra:.3f} ms", "<= 1.5 ms", extra <= 1.5)  # fmt: skip
    ro = res.get("roster")
    if ro:
        r10, r50 = ro.get(10_000), ro.get(50_000)
        if r10:
            row("4 roster 10k extra CPU", f"svc {r10['svc_cpu_ms']:.1f} ms",
                f"raw {r10['raw_cpu_ms']:.1f} ms", f"{r10['extra_cpu_ms']:.1f} ms", "<= 60 ms",
                r10["extra_cpu_ms"] <= 60)  # fmt: skip
        if r10 and r50:
            ratio = r50["extra_cpu_ms"] / r10["extra_cpu_ms"]
            res["roster_ratio"] = ratio
            row("4 roster 50k/10k extra", f"{r50['extra_cpu_ms']:.1f} ms",
                f"{r10['extra_cpu_ms']:.1f} ms", f"{ratio:.2f}", "<= 6 (linear)",
                ratio <= 6)  # fmt: skip
    for w, t in res.get("inflight", {}).items():
        target = 0.7 if w == 1 else 0.9
        if "unavailable" in t:
            row(f"5 /connect/s @1000, workers {w}", "not available", "", "", f">= {target}x",
                None)  # fmt: skip
            continue
        c, raw = t["connect"], t["raw_connect"]
        ratio = c["rate"] / raw["rate"]
        t["connect_ratio"] = ratio
        ok = ratio >= target and c["failures"] == 0
        row(f"5 /connect/s @1000, workers {w}", f"{c['rate']:.0f}/s ({c['failures']} err)",
            f"raw {raw['rate']:.0f}/s", f"{ratio:.2f}x", f">= {target}x, 0 err", ok)  # fmt: skip
        peak = max(t["peak_rss_mib"])
        row(f"5 peak RSS, workers {w}", " ".join(f"{m:.0f}" for m in t["peak_rss_mib"]) + " MiB",
            "", f"{peak:.0f} MiB", "<= 150 MiB", peak <= 150)  # fmt: skip
    return rows


def print_table(rows: list[dict]) -> None:
    cols = ("goal", "figure", "baseline", "value", "target", "verdict")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print(" | ".join(c.ljust(widths[c]) for c in cols))
    print("-+-".join("-" * widths[c] for c in cols))
    for r in rows:
        print(" | ".join(str(r[c]).ljust(widths[c]) for c in cols))


def print_phase(name: str, p: dict) -> None:
    cpu = ", ".join(f"{k} {v:.3f}" for k, v in p["cpu_ms"].items())
    errors = f"  errors: {p['errors']}" if p["failures"] else ""
    print(
        f"  {name:<24} n={p['count']:<5} c={p['concurrency']:<4} p50 {p['p50_ms']:8.2f} ms  "
        f"p99 {p['p99_ms']:8.2f} ms  {p['rate']:7.0f}/s  fail {p['failures']}  "
        f"CPU ms/req: {cpu}, bench {p['bench_cpu_ms']:.3f}{errors}"
    )


def print_details(res: dict) -> None:
    b = res.get("basics")
    if b:
        print("\nGoals 1-3 (service with 1 process):")
        for key, p in b.items():
            if key == "cpu_twisted_client":
                print(
                    f"  {key:<24} n={p['count']:<5} c=10   CPU ms/connect: user "
                    f"{p['user_ms']:.3f} + sys {p['sys_ms']:.3f} = {p['cpu_ms']:.3f}, "
                    f"fail {p['failures']}"
                )
                continue
            print_phase(key, p)
        e = res["login_extra"]
        print(
            f"  goal 3: svc p50 {e['svc_p50_ms']:.3f} - raw p50 {e['raw_p50_ms']:.3f} - floor "
            f"p50 {e['floor_p50_ms']:.3f} - (Prosody CPU per svc login "
            f"{e['svc_prosody_cpu_ms']:.3f} - per raw login {e['raw_prosody_cpu_ms']:.3f}) = "
            f"{e['extra_ms']:.3f} ms"
        )
    ro = res.get("roster")
    if ro:
        print("\nGoal 4 (roster; service with --max-stanza-bytes 16 MiB), per fetch:")
        for size in ROSTER_USERS:
            r = ro.get(size)
            if not r:
                continue
            print(
                f"  {size:>6} items: service total {r['svc_total']} / contacts "
                f"{r['svc_contacts']}, raw <item> {r['raw_items']} ({r['raw_bytes']:,} bytes); "
                f"service CPU {r['svc_cpu_ms']:.1f} ms, wall {r['svc_wall_ms']:.1f} ms, Prosody "
                f"{r['svc_prosody_cpu_ms']:.1f} ms | raw CPU {r['raw_cpu_ms']:.1f} ms, wall "
                f"{r['raw_wall_ms']:.1f} ms, Prosody {r['raw_prosody_cpu_ms']:.1f} ms | extra "
                f"{r['extra_cpu_ms']:.1f} ms"
            )
        if "roster_ratio" in res:
            print(f"  50k/10k extra CPU: {res['roster_ratio']:.2f} (linear: about 5, at most 6)")
        print("  roster service peak RSS: "
              + " ".join(f"{m:.0f}" for m in ro["peak_rss_mib"]) + " MiB")  # fmt: skip
    for w, t in res.get("inflight", {}).items():
        if "unavailable" in t:
            print(f"\nworkers {w}: not available ({t['unavailable']})")
            continue
        print(f"\nGoal 5, workers {w} (1000 in flight; best of the runs, all runs' rates):")
        for key in ("raw_connect", "connect", "raw_login", "login"):
            p = t[key]
            print_phase(key, p)
            cores = ", ".join(f"{k} {v:.2f}" for k, v in p["cores"].items())
            print(
                f"  {'':<24} rates: "
                + ", ".join(f"{x:.0f}" for x in p["rates"])
                + f"; cores busy: {cores}, bench {p['bench_cores']:.2f}"
            )
        lr = t["login"]["rate"] / t["raw_login"]["rate"]
        t["login_ratio"] = lr
        print(f"  /login at 1000 in flight: {lr:.2f}x the raw client (no goal)")
        print("  peak RSS per process: "
              + " ".join(f"{m:.0f}" for m in t["peak_rss_mib"]) + " MiB")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--quick", action="store_true", help="small N: a fast smoke run")
    parser.add_argument("--workers-list", default="1,2", help="service processes for goal 5")
    parser.add_argument("--skip-roster", action="store_true", help="leave out goal 4")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument(
        "--keep", action="store_true", help="keep the logs and Prosody's data (else removed)"
    )
    args = parser.parse_args()
    n = {k: v[0 if args.quick else 1] for k, v in SIZES.items()}
    workers_list = [int(w) for w in args.workers_list.split(",") if w]

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    started = time.monotonic()
    info = machine()
    print(f"bench/perf.py {'--quick ' if args.quick else ''}at {info['date']}")
    print(
        f"machine: {info['nproc']} CPUs, {info['cpu']}, load {' '.join(info['loadavg'])}; "
        f"Python {info['python']}, Twisted {info['twisted']}; commit {info['commit']}"
    )
    print(f"sizes: {n}", flush=True)

    base = Path(tempfile.mkdtemp(prefix="portofcall-perf-"))
    res: dict = {"machine": info, "sizes": n}
    server = start_prosody(base)
    xmpp = server.c2s_port
    prosody_pid = server.process.pid

    def prosody_cpu() -> float:
        return cpu_seconds(prosody_pid)

    floor = FloorProcess()
    try:
        res["inflight"] = {}
        for w in workers_list:
            try:
                service = Service(base, f"w{w}", workers=w)
            except NotAvailable as e:
                print(f"workers {w}: not available ({e})", flush=True)
                res["inflight"][w] = {"unavailable": str(e)}
                continue
            try:
                if w == 1 and "basics" not in res:
                    print("goals 1-3 ...", flush=True)
                    res["basics"] = measure_basics(service, floor, prosody_cpu, xmpp, n)
                print(f"goal 5, workers {w} ...", flush=True)
                res["inflight"][w] = measure_inflight(service, prosody_cpu, xmpp, n)
            finally:
                service.stop()
        if not args.skip_roster:
            print("goal 4 ...", flush=True)
            res["roster"] = measure_roster(base, xmpp, prosody_cpu, n["roster_reps"])
    except BaseException:
        print(f"perf.py: stopped; logs and data in {base}", file=sys.stderr)
        raise
    finally:
        floor.stop()
        server.stop()

    print()
    rows = report(res)
    print_table(rows)
    print_details(res)
    res["goals"] = rows
    res["seconds"] = time.monotonic() - started
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n")
    if args.keep:
        print(f"\n{res['seconds']:.0f} s; logs and data in {base}")
    else:
        shutil.rmtree(base, ignore_errors=True)
        print(f"\n{res['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
