"""
C{GET /probe?module=M&target=T} (SPEC §9), compatible with the XMPP
Blackbox Exporter: one module of L{probe_config} run against one target,
answered as Prometheus metrics from a registry of its own.

 - L{parse_target}: C{xmpp:domain} (SRV, SPEC §8) or
   C{xmpp://host:port/domain} (that node only); for the C{ping} prober,
   C{xmpp:} names the JID or domain to ping.
 - L{run}: the module's prober through the service's flows (C{c2s}, C{s2s}:
   L{flows.probe}; C{login}: L{flows.login}; C{ping}: a login, then one
   XEP-0199 ping), its C{fail_if_*} rules, and an L{Outcome}.
 - L{render}: the outcome as exposition text (C{probe_success},
   C{probe_xmpp_duration_seconds{phase}}, C{probe_failed_due_to{reason}}, ...).

A module's account password goes only into the login flow: never into a
metric, a log line or an error message.
"""

from __future__ import annotations

import calendar
import time
from urllib.parse import urlsplit

import attrs
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from twisted.internet.defer import Deferred
from twisted.words.xish import domish

from . import flows, validate
from .errors import DestinationBlocked, RequestError
from .names import InvalidJID, parse_jid
from .parse import NS_PING, parse_stanza_error
from .probe_config import Module
from .ratelimit import RateLimited

#: The answer's content type (the text format Prometheus 2 reads).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds kept from Prometheus' scrape timeout for the answer to travel.
SCRAPE_TIMEOUT_OFFSET = 0.5
#: The shortest timeout a probe is given, whatever the scrape timeout says.
MIN_TIMEOUT = 0.5
#: A module's timeout when neither it nor the scraper names one (the exporter's).
DEFAULT_TIMEOUT = 10.0

#: Trace phases -> the exporter's C{probe_xmpp_duration_seconds} phases.
_PHASES = {
    "tls_connected": "tls",
    "starttls_upgraded": "starttls",
    "authenticated": "auth",
    "resource_bound": "bind",
    "ping_received": "ping",
}


@attrs.frozen
class Target:
    """
    Where a C{/probe} goes.

    @ivar domain: the XMPP domain (looked up through SRV when C{host} is
        L{None}).
    @ivar host: with C{port}: the node named by C{xmpp://host:port/domain}
        (for C{login} and C{ping}: where the account connects).
    @ivar jid: for the C{ping} prober: what to ping.
    """

    domain: str
    host: str | None = None
    port: int | None = None
    jid: str | None = None


@attrs.frozen
class Outcome:
    """
    What one C{/probe} found; L{render} turns it into metrics.

    @ivar error_type: why it failed (an errorType, or C{"sasl_mechanism"},
        C{"dialback"}, C{"tls"}, C{"ping_result"}, C{"blocked"}, C{"rate_limited"}), or L{None}.
    @ivar message: the failure's words, for the log line.
    @ivar phases: C{probe_xmpp_duration_seconds} by phase.
    @ivar mechanisms: the SASL mechanisms offered (after TLS when it was
        negotiated), or L{None} when no features were read.
    @ivar dialback: dialback offered (L{None}: no features read).
    @ivar starttls: C{(offered, required)}, or L{None}.
    @ivar cert_expiry: the certificate's notAfter (Unix seconds), or L{None}.
    @ivar rule: the C{fail_if_*} rule kind that failed it (C{"sasl_mechanism"},
        C{"dialback"}) or L{None}: the exporter's C{probe_failed_due_to_*}.
    """

    prober: str
    elapsed: float
    error_type: str | None = None
    message: str | None = None
    phases: dict = attrs.Factory(dict)
    mechanisms: tuple[str, ...] | None = None
    dialback: bool | None = None
    starttls: tuple[bool, bool] | None = None
    cert_expiry: float | None = None
    rule: str | None = None

    @property
    def success(self) -> bool:
        return self.error_type is None


def parse_target(text: str | None, prober: str) -> Target:
    """
    The C{target} parameter: C{xmpp:DOMAIN} or C{xmpp://HOST:PORT/DOMAIN};
    for the C{ping} prober the DOMAIN may be any JID (what is pinged).

    @raise RequestError: 400, naming what is wrong (one line).
    """
    if text is None or text == "":
        raise RequestError(400, "Missing required parameter: target")
    if not text.startswith("xmpp:"):
        raise RequestError(
            400, "target must be xmpp:DOMAIN or xmpp://HOST:PORT/DOMAIN (e.g. xmpp:example.org)"
        )
    host = port = None
    rest = text[len("xmpp:") :]
    if text.startswith("xmpp://"):
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as e:
            raise RequestError(400, f"target: {e}") from e
        rest = parts.path[1:] if parts.path.startswith("/") else ""
        if not parts.hostname or port is None or not rest or parts.query or parts.fragment:
            raise RequestError(400, "target must be xmpp://HOST:PORT/DOMAIN, all three given")
        if port == 0:
            raise RequestError(400, "target: the port must be from 1 to 65535")
        host = validate.check_host(parts.hostname, "target host")
    if prober != "ping":
        return Target(validate.check_domain(rest, "target domain"), host, port)
    try:
        jid = parse_jid(rest)
    except InvalidJID as e:
        raise RequestError(400, f"target: {e}") from e
    return Target(jid.domain, host, port, jid=str(jid))


def timeout_for(module: Module, scrape_timeout: str | None) -> float:
    """
    Seconds the probe may take: the module's C{timeout}, but never more than
    Prometheus' C{X-Prometheus-Scrape-Timeout-Seconds} less
    L{SCRAPE_TIMEOUT_OFFSET} (as the exporter does).

    @raise RequestError: 400 when the header is not a positive number.
    """
    limit = None
    if scrape_timeout is not None:
        try:
            limit = float(scrape_timeout)
        except ValueError:
            limit = None
        if limit is None or not limit > 0 or limit == float("inf"):
            raise RequestError(400, "X-Prometheus-Scrape-Timeout-Seconds must be a number")
        limit = limit - SCRAPE_TIMEOUT_OFFSET
    chosen = module.timeout or DEFAULT_TIMEOUT
    if limit is not None:
        chosen = min(chosen, limit)
    return max(MIN_TIMEOUT, chosen)


def _request(module: Module, target: Target, timeout: float):
    """The flow's request for C{module} against C{target}."""
    body: dict = {"domain": target.domain, "timeout": round(timeout * 1000)}
    if target.host is not None:
        body.update(host=target.host, port=target.port)
    if module.prober in ("c2s", "s2s"):
        body["tls"] = "direct" if module.directtls else "auto"
        if module.prober == "c2s":
            return validate.parse_connect(body)
        if module.from_ is not None:
            body["from"] = module.from_
        return validate.parse_s2s(body)
    account = module.account
    jid = parse_jid(account.address)
    if module.prober == "login" and target.domain != jid.domain:
        raise RequestError(
            400, f"target domain {target.domain} is not the domain of the module's account"
        )
    # The account logs in at its own server: by SRV, or at the target's node.
    body["domain"] = jid.domain
    body.update(
        tls="direct" if module.directtls else "required",
        tlsVerify=module.tls_verify,
        username=jid.local,
        password=account.password,
    )
    return validate.parse_login(body)


def _restricted(env: flows.Environment, module: Module, connected: list) -> flows.Environment:
    """
    C{env} whose C{connect} notes when the connection was made (the
    C{connect} phase) and, with C{restrict_ip_version}, dials only addresses
    of that family.
    """
    inner = env.connect
    version = module.restrict_ip_version

    def connect(host, port, protocol, **kwargs):
        if version is not None:
            kwargs["ip_version"] = version
        d = inner(host, port, protocol, **kwargs)

        def made(result):
            connected.append(env.clock.seconds())
            return result

        return d.addCallback(made)

    return attrs.evolve(env, connect=connect)


async def _ping(session, jid: str, module: Module, verdict: list) -> dict:
    """
    One XEP-0199 ping to C{jid}; a result C{fail_if_not} does not accept is
    appended to C{verdict} in words.
    """
    ping = domish.Element((NS_PING, "ping"))
    reply = await session.iq("get", "ping1", ping, "ping reply", to=jid)
    session.trace.phase("ping_received")
    if reply["type"] == "error":
        condition = parse_stanza_error(reply)
        if not any(
            r.matches(False, condition.type, condition.condition) for r in module.fail_if_not
        ):
            verdict.append(f"the ping was answered with {condition.condition}")
    elif not any(r.matches(True, None, None) for r in module.fail_if_not):
        verdict.append("the ping was answered with a pong")
    return {}


def _flow(env, module: Module, target: Target, req, started: float, verdict: list) -> Deferred:
    if module.prober in ("c2s", "s2s"):
        return flows.probe(env, req, started)
    if module.prober == "login":
        return flows.login(env, req, started)
    jid = target.jid or target.domain

    async def body(session):
        return await _ping(session, jid, module, verdict)

    return flows.login_then(env, req, started, body)


def _phases(timings: dict, started: float, connected: list, elapsed: float) -> dict:
    """Each phase's own duration, in the order reached."""
    phases = {}
    if connected:
        phases["connect"] = previous = connected[0] - started
    else:
        return phases
    for name, at in sorted(timings.items(), key=lambda item: item[1]):
        if name in _PHASES:
            phases[_PHASES[name]] = max(0.0, at - previous)
            previous = at
    phases["total"] = elapsed
    return phases


def cert_expiry(tls) -> float | None:
    """The server certificate's notAfter in Unix seconds, or L{None} (no certificate)."""
    report = tls.report if tls is not None else None
    cert = report.certificate if report is not None else None
    if cert is None or cert.not_after is None:
        return None
    return float(calendar.timegm(time.strptime(cert.not_after, "%Y-%m-%dT%H:%M:%SZ")))


def judge(module: Module, result, verdict: list) -> tuple[str | None, str | None, str | None]:
    """
    The C{fail_if_*} rules and the exporter's TLS requirement applied to a
    flow's result: C{(error_type, message, rule)}, all L{None} when it passes.
    """
    tls = result.tls
    if not tls.negotiated:
        return "tls", "TLS was not negotiated", None
    cert = tls.report.certificate if tls.report is not None else None
    if module.tls_verify and not (cert is not None and cert.verified):
        why = cert.verify_error if cert is not None else "the server sent no certificate"
        return "tls", f"TLS certificate did not verify: {why}", None
    features = _features(result)
    offered = set(features.mechanisms)
    forbidden = [m for m in module.fail_if_sasl_mechanism_offered if m in offered]
    missing = [m for m in module.fail_if_sasl_mechanism_not_offered if m not in offered]
    if forbidden or missing:
        words = "; ".join(
            part
            for part in (
                forbidden and f"offered: {', '.join(forbidden)}",
                missing and f"not offered: {', '.join(missing)}",
            )
            if part
        )
        return "sasl_mechanism", f"SASL mechanism rule failed ({words})", "sasl_mechanism"
    if module.fail_if_dialback_offered and features.dialback:
        return "dialback", "dialback is offered", "dialback"
    if module.fail_if_dialback_not_offered and not features.dialback:
        return "dialback", "dialback is not offered", "dialback"
    if verdict:
        return "ping_result", verdict[0], None
    return None, None, None


def _features(result):
    """The features that count: those after STARTTLS, when it was negotiated."""
    if isinstance(result, flows.AuthResult):
        # After login the features are post-bind; what was offered is sasl_mechanisms.
        return attrs.evolve(
            result.tls.features or result.features, mechanisms=result.sasl_mechanisms
        )
    return result.tls.features or result.features


def run(env: flows.Environment, module: Module, target: Target, timeout: float) -> Deferred:
    """
    Run C{module} against C{target} within C{timeout} seconds.

    @return: a Deferred firing with an L{Outcome} (a failed probe is an
        outcome too), or failing with L{RequestError} (the module cannot
        probe such a target) or C{CancelledError}.
    """
    return Deferred.fromCoroutine(_run(env, module, target, timeout))


async def _run(env: flows.Environment, module: Module, target: Target, timeout: float) -> Outcome:
    started = env.clock.seconds()
    connected: list = []
    verdict: list = []
    req = _request(module, target, timeout)
    try:
        result = await _flow(
            _restricted(env, module, connected), module, target, req, started, verdict
        )
    except DestinationBlocked as e:
        return Outcome(module.prober, env.clock.seconds() - started, "blocked", e.message)
    except RateLimited as e:
        return Outcome(module.prober, env.clock.seconds() - started, "rate_limited", e.message)
    except flows.Failed as f:
        elapsed = env.clock.seconds() - started
        tls = f.tls
        return Outcome(
            module.prober,
            elapsed,
            f.error.error_type,
            f.error.message,
            phases=_phases(f.timings, started, connected, elapsed),
            starttls=None if not f.raw else (tls.available and not tls.direct, tls.required),
            cert_expiry=cert_expiry(tls),
        )
    elapsed = env.clock.seconds() - started
    error_type, message, rule = judge(module, result, verdict)
    features = _features(result)
    return Outcome(
        module.prober,
        elapsed,
        error_type,
        message,
        phases=_phases(result.timings, started, connected, elapsed),
        mechanisms=features.mechanisms,
        dialback=features.dialback,
        starttls=(result.tls.available and not result.tls.direct, result.tls.required),
        cert_expiry=cert_expiry(result.tls),
        rule=rule,
    )


def render(outcome: Outcome) -> bytes:
    """The exposition text of C{outcome}, from a registry of its own."""
    registry = CollectorRegistry()

    def gauge(name, help_, value=None, labels=()):
        g = Gauge(name, help_, labels, registry=registry)
        if value is not None:
            g.set(value)
        return g

    gauge("probe_success", "Whether the probe succeeded", int(outcome.success))
    gauge("probe_duration_seconds", "How long the probe took, in seconds", outcome.elapsed)
    phases = gauge(
        "probe_xmpp_duration_seconds", "Duration of the probe by phase", labels=("phase",)
    )
    for phase, seconds in outcome.phases.items():
        phases.labels(phase).set(seconds)
    failed = gauge("probe_failed_due_to", "1 for the reason the probe failed", labels=("reason",))
    if outcome.error_type is not None:
        failed.labels(outcome.error_type).set(1)
    if outcome.cert_expiry is not None:
        gauge(
            "probe_ssl_earliest_cert_expiry",
            "The server certificate's notAfter, in Unix seconds",
            outcome.cert_expiry,
        )
    if outcome.starttls is not None:
        gauge("probe_starttls_offered", "1 if STARTTLS was offered", int(outcome.starttls[0]))
        gauge("probe_starttls_required", "1 if STARTTLS was required", int(outcome.starttls[1]))
    if outcome.mechanisms is not None:
        mechanisms = gauge(
            "probe_sasl_mechanism_offered",
            "1 if the SASL mechanism was offered",
            labels=("mechanism",),
        )
        for mechanism in outcome.mechanisms:
            mechanisms.labels(mechanism).set(1)
        gauge(
            "probe_failed_due_to_sasl_mechanism",
            "1 if the probe failed due to a forbidden or missing SASL mechanism",
            int(outcome.rule == "sasl_mechanism"),
        )
    if outcome.dialback is not None:
        gauge("probe_dialback_offered", "1 if dialback was offered", int(outcome.dialback))
        if outcome.prober == "s2s":
            gauge(
                "probe_failed_due_to_dialback",
                "1 if the probe failed due to dialback being offered or not offered",
                int(outcome.rule == "dialback"),
            )
    return generate_latest(registry)
