"""
The command line, C{portofcall-xmpp} (SPEC §9): every probe endpoint as a
subcommand, run in-process through the same flows and renderers as the
HTTP API, no service needed.

The subcommands are the rows of L{endpoints.ENDPOINTS}; their options are
the fields of each request schema (L{validate.SCHEMAS}): C{--port},
C{--domain}, C{--username}, C{--tls}, C{--mechanism}, C{--timeout}, ...
(camelCase fields in kebab case: C{waitMs} is C{--wait-ms}), with C{host}
(or C{domain} for C{srv}) as the argument.  The service's own options
(C{--dns-server}, C{--ca-file}, C{--read-timeout}, C{--deny-private}) are
parsed by the service's own L{tap.Options}, and the environment is built by
L{tap.build_env}.  It acts for the local user: private destinations are
allowed unless C{--deny-private}.

The password never comes from argv: from C{PORTOFCALL_PASSWORD}, or a prompt
on a terminal.

Exit status, as a Nagios/Icinga plugin: L{OK} 0 (the probe got through,
without warnings), L{WARNING} 1 (it got through with C{warnings}, or a
C{status} of C{"warning"}), L{CRITICAL} 2 (it failed: C{success: false}, or
a C{status} of C{"critical"}), L{UNKNOWN} 3 (bad arguments, no password, a
refusal the service would answer 400/403/429 to, an internal error).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys

from twisted.python import usage

from . import __version__, tap, validate
from .endpoints import ENDPOINTS, Endpoint
from .errors import RequestError

OK, WARNING, CRITICAL, UNKNOWN = 0, 1, 2, 3
_VERDICTS = {OK: "OK", WARNING: "WARNING", CRITICAL: "CRITICAL", UNKNOWN: "UNKNOWN"}
#: ANSI colours of the verdicts (on a terminal, without NO_COLOR).
_COLOURS = {OK: "32", WARNING: "33", CRITICAL: "31", UNKNOWN: "35"}
PASSWORD_VARIABLE = "PORTOFCALL_PASSWORD"
#: A run longer than this shows a progress line on stderr (on a terminal).
PROGRESS_AFTER = 1.0


class Usage(Exception):
    """A bad command line, or no password: exit L{UNKNOWN} with this message."""


# -- the arguments


def request_fields(endpoint: Endpoint) -> tuple[dict, list]:
    """
    The properties and required names of C{endpoint}'s request schema, its
    references and C{allOf} parts resolved (later parts override earlier).
    """
    properties: dict = {}
    required: list = []

    def resolve(schema: dict) -> dict:
        while "$ref" in schema:
            schema = validate.SCHEMAS[schema["$ref"].rsplit("/", 1)[-1]]
        return schema

    def walk(schema: dict) -> None:
        schema = resolve(schema)
        for part in schema.get("allOf", ()):
            walk(part)
        for name, prop in schema.get("properties", {}).items():
            properties[name] = resolve(prop)
        required.extend(r for r in schema.get("required", ()) if r not in required)

    walk(validate.SCHEMAS[endpoint.request_schema])
    return properties, required


def _argument_of(properties: dict, required: list) -> str | None:
    """
    The field given as the subcommand's argument: C{host} where the request
    has one (C{connect HOST}; without it, C{--domain D} alone looks D up by
    SRV), else a required C{domain} (C{check DOMAIN}).
    """
    if "host" in properties:
        return "host"
    return "domain" if "domain" in required else None


def _option(name: str) -> str:
    """C{waitMs} -> C{--wait-ms}."""
    return "--" + "".join(f"-{c.lower()}" if c.isupper() else c for c in name)


def _help(prop: dict) -> str:
    text = prop.get("description", "").replace("`", "")
    if "enum" in prop:
        text += f" One of: {', '.join(prop['enum'])}."
    if "default" in prop and "Default:" not in text and not isinstance(prop["default"], bool):
        text += f" Default: {prop['default']}."
    return text.replace("%", "%%")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors exit L{UNKNOWN} (argparse's own is 2: critical)."""

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(UNKNOWN, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand per row of the endpoint table."""
    parser = _Parser(
        prog="portofcall-xmpp",
        description="Probe XMPP servers from the command line: the HTTP API's probes, "
        "in-process. Exit status as a monitoring plugin: 0 ok, 1 warning, 2 critical, "
        "3 unknown.",
    )
    parser.add_argument("--version", action="version", version=f"portofcall-xmpp {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for endpoint in ENDPOINTS:
        properties, required = request_fields(endpoint)
        sub = commands.add_parser(
            endpoint.name,
            help=endpoint.summary,
            description=endpoint.description.replace("`", "").replace("%", "%%"),
        )
        sub.set_defaults(endpoint=endpoint, fields=properties)
        argument = _argument_of(properties, required)
        if argument == "host":
            sub.add_argument(
                "field_host",
                nargs="?",
                metavar="HOST",
                help=_help(properties["host"]) + " Without it, --domain is looked up (SRV).",
            )
        elif argument is not None:
            sub.add_argument(
                "field_" + argument, metavar=argument.upper(), help=_help(properties[argument])
            )
        for name, prop in properties.items():
            if name in (argument, "password"):
                continue
            kwargs = {"dest": "field_" + name, "default": None, "help": _help(prop)}
            if prop.get("type") == "boolean":
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["metavar"] = "N" if prop.get("type") == "integer" else "VALUE"
                if prop.get("type") == "integer":
                    kwargs["type"] = int
                kwargs["required"] = name in required
            sub.add_argument(_option(name), **kwargs)
        if "password" in properties:
            sub.epilog = (
                f"The password comes from ${PASSWORD_VARIABLE}, or is asked for on a "
                "terminal; never from the command line."
            )
        service = sub.add_argument_group("the service's options (as twistd portofcall-xmpp)")
        service.add_argument("--dns-server", metavar="HOST:PORT", help="Where DNS questions go.")
        service.add_argument("--ca-file", metavar="PATH", help="Extra PEM trust roots.")
        service.add_argument(
            "--read-timeout", metavar="MS", help="The per-read timeout. Default: 5000."
        )
        service.add_argument(
            "--deny-private",
            action="store_true",
            help="Refuse destinations that are not globally routable (allowed by default: "
            "this runs for you, not for the network).",
        )
        sub.add_argument("--json", action="store_true", help="Print the HTTP API's JSON answer.")
    return parser


def service_options(args) -> tap.Options:
    """The service's options of C{args}, parsed and checked by L{tap.Options}."""
    argv = [] if args.deny_private else ["--allow-private"]
    for name in ("dns-server", "ca-file", "read-timeout"):
        value = getattr(args, name.replace("-", "_"))
        if value is not None:
            argv += [f"--{name}", value]
    options = tap.Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        raise Usage(str(e)) from e
    return options


def request_body(args, environ, isatty, ask=getpass.getpass) -> dict:
    """
    The JSON body of C{args}' request: the fields given, and the password
    of C{environ[PORTOFCALL_PASSWORD]}, else C{ask}ed for when C{isatty}.

    @raise Usage: a password is needed and there is no way to get it.
    """
    body = {
        name: getattr(args, "field_" + name)
        for name in args.fields
        if getattr(args, "field_" + name, None) is not None
    }
    if "password" in args.fields:
        password = environ.get(PASSWORD_VARIABLE)
        if password is None:
            if not isatty:
                raise Usage(
                    f"no password: set {PASSWORD_VARIABLE}, or run on a terminal to be asked"
                )
            account = f"{body.get('username', '')}@{body.get('domain', body.get('host', ''))}"
            password = ask(f"Password for {account}: ")
        body["password"] = password
    return body


# -- the answer


def exit_status(status: int, body: dict) -> int:
    """The Nagios/Icinga status of an answer (see the module docstring)."""
    if status != 200:
        return UNKNOWN
    verdict = body.get("status")
    if verdict in ("ok", "warning", "critical"):
        return {"ok": OK, "warning": WARNING, "critical": CRITICAL}[verdict]
    if not body.get("success"):
        return CRITICAL
    return WARNING if body.get("warnings") else OK


def _paint(text: str, code: int, colour: bool) -> str:
    return f"\x1b[{_COLOURS[code]}m{text}\x1b[0m" if colour else text


def verdict_line(endpoint: Endpoint, target: str, status: int, body: dict) -> str:
    """C{XMPP OK - login 127.0.0.1:5222: XMPP login successful (41 ms)}."""
    code = exit_status(status, body)
    if body.get("success"):
        text = body.get("message") if isinstance(body.get("message"), str) else "success"
    else:
        text = body.get("error", "failed")
        if body.get("errorType"):
            text += f" [{body['errorType']}]"
    elapsed = f" ({body['elapsedMs']} ms)" if "elapsedMs" in body else ""
    return f"XMPP {_VERDICTS[code]} - {endpoint.name} {target}: {text}{elapsed}"


_SEVERITIES = ("critical", "error", "warning", "info")


def _findings(body: dict) -> list[str]:
    findings = [f for f in body.get("findings") or () if isinstance(f, dict)]
    rank = {s: i for i, s in enumerate(_SEVERITIES)}
    lines = []
    for finding in sorted(findings, key=lambda f: rank.get(f.get("severity"), len(rank))):
        text = finding.get("message") or finding.get("title") or finding.get("id", "")
        lines.append(f"  [{finding.get('severity', '?')}] {text}")
        if finding.get("fix"):
            lines.append(f"      fix: {finding['fix']}")
    return ["Findings:", *lines] if lines else []


def _phases(body: dict) -> list[str]:
    timings = body.get("timings") or {}
    phases = body.get("phases") or list(timings)
    if not phases:
        return []
    lines = ["Phases:"]
    for phase in phases:
        ms = timings.get(phase)
        lines.append(f"  {'-' if ms is None else ms:>6} ms  {phase}")
    return lines


def _tls(tls: dict) -> list[str]:
    if not tls.get("negotiated") and not tls.get("direct"):
        offered = "offered" if tls.get("available") else "not offered"
        required = ", required" if tls.get("required") else ""
        return [f"TLS: {offered}{required}, not negotiated"]
    lines = [f"TLS: {tls.get('protocol')} {tls.get('cipher')}"]
    cert = tls.get("certificate") or {}
    if cert:
        trust = "verified" if cert.get("verified") else f"NOT verified ({cert.get('verifyError')})"
        lines.append(
            f"  certificate: {cert.get('subject')}, {trust}, expires {cert.get('notAfter')} "
            f"(in {cert.get('daysUntilExpiry')} days)"
        )
    return lines


def _facts(body: dict) -> list[str]:
    lines = []
    if isinstance(body.get("tls"), dict):
        lines += _tls(body["tls"])
    tls_mechanisms = (body.get("tls") or {}).get("saslMechanisms")
    mechanisms = tls_mechanisms or body.get("saslMechanisms")
    if mechanisms:
        lines.append(f"SASL mechanisms: {', '.join(mechanisms)}")
    if body.get("mechanism"):
        lines.append(f"Mechanism used: {body['mechanism']}")
    if body.get("features"):
        lines.append(f"Features: {', '.join(body['features'])}")
    if body.get("jid"):
        lines.append(f"Bound JID: {body['jid']}")
    roster = body.get("roster")
    if isinstance(roster, dict):
        lines.append(f"Roster: {roster.get('total')} contacts (version {roster.get('version')})")
    message = body.get("message")
    if isinstance(message, dict):
        lines.append(f"Message sent to {message.get('to')} (id {message.get('id')})")
        condition = body.get("deliveryErrorCondition")
        if condition:
            lines.append(f"  delivery error: {condition.get('type')} {condition.get('condition')}")
    info = body.get("serverInfo")
    if isinstance(info, dict):
        software = info.get("software") or {}
        if software:
            lines.append(f"Software: {software.get('name')} {software.get('version')}")
        for kind, addresses in (info.get("contactAddresses") or {}).items():
            if addresses:
                lines.append(f"{kind}: {', '.join(addresses)}")
        if info.get("pingMs") is not None:
            lines.append(f"Ping: {info['pingMs']} ms")
    for name, service in (body.get("services") or {}).items():
        records = ", ".join(
            f"{r.get('target')}:{r.get('port')}" for r in service.get("records") or ()
        )
        lines.append(f"{name}: {service.get('status')}{' ' + records if records else ''}")
    for warning in body.get("warnings") or ():
        lines.append(f"Warning: {warning}")
    return lines


def human(endpoint: Endpoint, target: str, status: int, body: dict, colour: bool) -> str:
    """
    The answer for a person: the verdict line (coloured when C{colour}),
    findings by severity with their fix, phases with timings, the main facts.
    """
    code = exit_status(status, body)
    lines = [_paint(verdict_line(endpoint, target, status, body), code, colour)]
    for block in (_findings(body), _phases(body), _facts(body)):
        if block:
            lines += ["", *block]
    return "\n".join(lines) + "\n"


# -- running it


class _Progress:
    """A progress line on C{stream} (a terminal) once a run takes over L{PROGRESS_AFTER}."""

    def __init__(self, clock, stream, label):
        from twisted.internet.task import LoopingCall

        self._clock = clock
        self._stream = stream
        self._label = label
        self._started = clock.seconds()
        self._shown = False
        self._loop = LoopingCall(self._show)
        self._loop.clock = clock
        self._pending = clock.callLater(PROGRESS_AFTER, self._loop.start, 0.1)

    def _show(self):
        elapsed = self._clock.seconds() - self._started
        self._stream.write(f"\r{self._label}: {elapsed:.1f} s ...")
        self._stream.flush()
        self._shown = True

    def stop(self):
        if self._pending.active():
            self._pending.cancel()
        if self._loop.running:
            self._loop.stop()
        if self._shown:
            self._stream.write("\r\x1b[K")
            self._stream.flush()


async def run(reactor, args, *, out, err, environ, stdin_isatty, ask=getpass.getpass) -> int:
    """
    Run C{args}' probe on C{reactor}, print the answer to C{out}, and return
    the exit status.
    """
    from .web import answer

    endpoint = args.endpoint
    try:
        options = service_options(args)
        body = request_body(args, environ, stdin_isatty, ask)
        req = endpoint.parse(body)
    except Usage as e:
        err.write(f"portofcall-xmpp {endpoint.name}: {e}\n")
        return UNKNOWN
    except RequestError as e:
        err.write(f"portofcall-xmpp {endpoint.name}: {e.message}\n")
        return UNKNOWN
    env = tap.build_env(options, reactor)
    progress = None
    if err.isatty():
        progress = _Progress(reactor, err, f"{endpoint.name} {req.target}")
    try:
        status, answer_body = await answer(env, endpoint, req, reactor.seconds())
    except RequestError as e:
        status, answer_body = e.status, {"success": False, "error": e.message, **e.extra}
    finally:
        if progress is not None:
            progress.stop()
    if args.json:
        out.write(json.dumps(answer_body, ensure_ascii=False) + "\n")
    else:
        colour = out.isatty() and "NO_COLOR" not in environ
        out.write(human(endpoint, req.target, status, answer_body, colour))
    return exit_status(status, answer_body)


def parse_arguments(argv=None) -> argparse.Namespace:
    """The parsed command line; a mistake exits L{UNKNOWN} with argparse's message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if "host" in args.fields and args.field_host is None and args.field_domain is None:
        parser.error(f"{args.command}: give a HOST, or --domain to look one up by SRV")
    return args


def main(argv=None) -> None:
    """The console script: parse, run under L{task.react}, exit with the status."""
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    args = parse_arguments(argv)

    async def react_main(reactor):
        try:
            code = await run(
                reactor,
                args,
                out=sys.stdout,
                err=sys.stderr,
                environ=os.environ,
                stdin_isatty=sys.stdin.isatty(),
            )
        except Exception as e:  # noqa: BLE001 - an internal error is "unknown", not a traceback
            sys.stderr.write(f"portofcall-xmpp: internal error: {type(e).__name__}: {e}\n")
            code = UNKNOWN
        raise SystemExit(code)

    task.react(lambda reactor: Deferred.fromCoroutine(react_main(reactor)))
