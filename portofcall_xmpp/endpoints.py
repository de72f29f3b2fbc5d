"""
The probe endpoints, each declared once.

A row names the endpoint (its path is C{/api/xmpp/<name>}), the request
parser and the request class it returns, the flow that runs the probe, the
renderers of its result and of its failure, and the schemas of all three.
The Klein routes (L{web}), the OpenAPI document (L{openapi}), the page's
forms (built from that document) and C{twistd portofcall-xmpp --help} are
generated from L{ENDPOINTS}.

Adding an endpoint: a request class and its parser in L{validate}, with its
request schema beside the parser, a flow in L{flows}, a renderer with its
response schema beside it in L{render}, and one row here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred

from . import bosh, check, discover, flows, render, validate, websocket

#: The largest request body accepted (SPEC §2: 413 beyond).
MAX_BODY_BYTES = 64 * 1024
#: The Retry-After of a 429.
RETRY_AFTER_SECONDS = 1

Req = TypeVar("Req", bound=validate.ProbeRequest)
Result = TypeVar("Result")


@attrs.frozen(kw_only=True)
class Endpoint(Generic[Req, Result]):
    """
    One C{POST /api/xmpp/<name>} endpoint.

    @ivar name: the last part of the path; also the OpenAPI operation id and
        the page's form.
    @ivar summary: a few words: the OpenAPI summary and the page's tab.
    @ivar description: what it does: the OpenAPI description and the
        page's introduction to the form.
    @ivar parse: the JSON object -> the request, or L{RequestError}.
    @ivar flow: C{flow(env, req, started)}: a Deferred firing with the
        result, or failing with L{flows.Failed}.
    @ivar render: C{render(result, req)} -> the JSON answer.
    @ivar render_failure: C{render_failure(failed, req)} -> the JSON answer.
    @ivar request_schema: the component schema of the request body.
    @ivar success_schema: the component schema of what L{render} answers.
    @ivar failure_schema: the component schema of what L{render_failure}
        answers.
    @ivar example: a request body for the document.
    @ivar render_event: for an endpoint that can answer with Server-Sent
        Events (C{Accept: text/event-stream}): C{render_event(item, req)} ->
        the JSON of one progress event; the flow then takes a fourth
        argument, called with each item as it finishes.
    @ivar login_failure: for an endpoint whose result may hold a failed
        login (not a failed probe): C{login_failure(result)} -> that
        L{flows.Failed} or L{None}, so C{--max-failed-logins} counts it.
    """

    name: str
    summary: str
    description: str
    parse: Callable[[dict], Req]
    flow: Callable[[flows.Environment, Req, float], Deferred]
    render: Callable[[Result, Req], dict]
    render_failure: Callable[[flows.Failed, Req], dict]
    request_schema: str
    success_schema: str
    failure_schema: str
    example: dict
    render_event: Callable | None = None
    login_failure: Callable[[Result], flows.Failed | None] | None = None

    @property
    def path(self) -> str:
        return f"/api/xmpp/{self.name}"


_ACCOUNT = {"host": "xmpp.example.org", "username": "alice", "password": "secret"}

#: Every probe endpoint, in the order the page shows them.
ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        name="check",
        summary="Check a domain",
        description="From a domain name to a verdict (SPEC §8): the SRV records, every "
        "endpoint (at most 32; at most 8 connections at once) probed as `/connect` or "
        "`/s2s`, the TLS versions each address:port accepts, whether a stream to an "
        "unknown name is refused, with credentials a login and the server-info queries, "
        "and the findings (catalogue: README, `FindingId`), worst first. With "
        "`Accept: text/event-stream`: Server-Sent Events, one `endpoint` event as each "
        "endpoint finishes, then one `report` event carrying this body.",
        parse=validate.parse_check,
        flow=check.check,
        render=render.check_json,
        render_failure=render.check_failure_json,
        request_schema="CheckRequest",
        success_schema="CheckSuccess",
        failure_schema="SRVFailure",
        example={"domain": "example.org"},
        render_event=render.check_endpoint_json,
        login_failure=lambda result: result.observations.login_failure,
    ),
    Endpoint(
        name="connect",
        summary="Connect",
        description="A stream probe, no credentials: open a stream, read the features, "
        "negotiate STARTTLS when offered, and report. No `phases` on this endpoint.",
        parse=validate.parse_connect,
        flow=flows.probe,
        render=render.connect_json,
        render_failure=render.probe_failure_json,
        request_schema="ConnectRequest",
        success_schema="ConnectSuccess",
        failure_schema="ProbeFailure",
        example={"host": "xmpp.example.org"},
    ),
    Endpoint(
        name="s2s",
        summary="Server to server",
        description="A server-to-server stream probe: open a `jabber:server` stream "
        "(default port 5269), read the features (dialback, SASL EXTERNAL, STARTTLS), "
        "negotiate STARTTLS when offered, and report; the certificate is checked for the "
        "domain as a server (SRV-IDs `_xmpp-server`, `_xmpps-server`). No `phases` on this "
        "endpoint.",
        parse=validate.parse_s2s,
        flow=flows.probe,
        render=render.s2s_json,
        render_failure=render.probe_failure_json,
        request_schema="S2SRequest",
        success_schema="S2SSuccess",
        failure_schema="ProbeFailure",
        example={"host": "xmpp.example.org", "from": "example.net"},
    ),
    Endpoint(
        name="srv",
        summary="SRV records",
        description="The SRV records of a domain: `_xmpp-client._tcp`, `_xmpps-client._tcp`, "
        "`_xmpp-server._tcp` and `_xmpps-server._tcp` (through `--dns-server` or the "
        "system's name servers), in the order a client tries them, each target's addresses, "
        "and the fallback when there are none. Nothing is connected to.",
        parse=validate.parse_srv,
        flow=flows.srv,
        render=render.srv_json,
        render_failure=render.srv_failure_json,
        request_schema="SRVRequest",
        success_schema="SRVSuccess",
        failure_schema="SRVFailure",
        example={"domain": "example.org"},
    ),
    Endpoint(
        name="login",
        summary="Login",
        description="SASL, resource binding, session: log in and report how far the exchange got.",
        parse=validate.parse_login,
        flow=flows.login,
        render=render.login_json,
        render_failure=render.auth_failure_json,
        request_schema="LoginRequest",
        success_schema="LoginSuccess",
        failure_schema="AuthProbeFailure",
        example=_ACCOUNT,
    ),
    Endpoint(
        name="roster",
        summary="Roster",
        description="Log in and fetch the roster: as `/login`, then a `jabber:iq:roster` get "
        "(phase `roster_received`).",
        parse=validate.parse_roster,
        flow=flows.roster,
        render=render.roster_json,
        render_failure=render.auth_failure_json,
        request_schema="RosterRequest",
        success_schema="RosterSuccess",
        failure_schema="AuthProbeFailure",
        example=_ACCOUNT,
    ),
    Endpoint(
        name="message",
        summary="Message",
        description="Log in and send a message: as `/login`, then send one message (phase "
        "`message_sent`) and listen for `waitMs` for an error reply or a receipt.",
        parse=validate.parse_message,
        flow=flows.message,
        render=render.message_json,
        render_failure=render.message_failure_json,
        request_schema="MessageRequest",
        success_schema="MessageSuccess",
        failure_schema="AuthProbeFailure",
        example={**_ACCOUNT, "recipient": "bob@example.org"},
    ),
    Endpoint(
        name="server-info",
        summary="Server info",
        description="Log in and ask the server about itself: as `/login`, then service "
        "discovery (XEP-0030 identities, features, XEP-0128 forms, XEP-0157 contact "
        "addresses), software version (XEP-0092) and a ping round trip (XEP-0199); phases "
        "`disco_info_received`, `version_received`, `ping_received` for the answered ones. A "
        "query answered with an error or not at all is reported in `serverInfo.errors`, and "
        "the probe goes on.",
        parse=validate.parse_server_info,
        flow=flows.server_info,
        render=render.server_info_json,
        render_failure=render.auth_failure_json,
        request_schema="ServerInfoRequest",
        success_schema="ServerInfoSuccess",
        failure_schema="AuthProbeFailure",
        example=_ACCOUNT,
    ),
    Endpoint(
        name="ping",
        summary="Ping",
        description="Log in and ping (XEP-0199): as `/login`, then `count` pings, one at a "
        "time, to `target` (a JID, or a domain: a remote server reached through ours; "
        "default the server's own domain); phase `ping_received` after the first answer. "
        "An error answer (`remote-server-not-found`, `remote-server-timeout`) and no answer "
        "within the read timeout (`timeout`) are results, not failures.",
        parse=validate.parse_ping,
        flow=flows.ping,
        render=render.ping_json,
        render_failure=render.ping_failure_json,
        request_schema="PingRequest",
        success_schema="PingSuccess",
        failure_schema="AuthProbeFailure",
        example={**_ACCOUNT, "target": "example.net"},
    ),
    Endpoint(
        name="component",
        summary="Component",
        description="An external component's stream (XEP-0114): open a "
        "`jabber:component:accept` stream to `componentName` (default port 5347) and read "
        "the server's header; with `secret`, send the handshake (hex SHA-1 of stream id + "
        "secret) and report `authenticated`. A refused handshake is the server's stream "
        "error (`not-authorized`; an unknown component name: `host-unknown`).",
        parse=validate.parse_component,
        flow=flows.component,
        render=render.component_json,
        render_failure=render.auth_failure_json,
        request_schema="ComponentRequest",
        success_schema="ComponentSuccess",
        failure_schema="AuthProbeFailure",
        example={"host": "xmpp.example.org", "componentName": "component.example.org"},
    ),
    Endpoint(
        name="discover",
        summary="Web discovery",
        description="XEP-0156: fetch `https://<domain>/.well-known/host-meta` (XRD) and "
        "`host-meta.json` over HTTPS (certificate verified for the domain with the system "
        "store and `--ca-file`), and report each document's status, content type, CORS "
        "header and the WebSocket and BOSH links found. Redirects are reported, not "
        "followed. A document that cannot be fetched carries its own `error`.",
        parse=validate.parse_discover,
        flow=discover.discover,
        render=render.discover_json,
        render_failure=render.discover_failure_json,
        request_schema="DiscoverRequest",
        success_schema="DiscoverSuccess",
        failure_schema="SRVFailure",
        example={"domain": "example.org"},
    ),
    Endpoint(
        name="websocket",
        summary="WebSocket",
        description="XMPP over WebSocket (RFC 7395): `url`, or `domain` alone (the first "
        "WebSocket link of its host-meta). The URL's host goes through the destination "
        "policy; `wss://` certificates are verified for it. The `xmpp` subprotocol, "
        "`<open/>` and the features; with `username` and `password`, SASL, restart, bind "
        "and session as `/login`. Frames are capped at the element size.",
        parse=validate.parse_websocket,
        flow=websocket.websocket,
        render=render.web_json,
        render_failure=render.web_failure_json,
        request_schema="WebSocketRequest",
        success_schema="WebSocketSuccess",
        failure_schema="WebFailure",
        example={"url": "wss://xmpp.example.org/xmpp-websocket", "domain": "example.org"},
    ),
    Endpoint(
        name="bosh",
        summary="BOSH",
        description="XMPP over BOSH (XEP-0124, XEP-0206): `url`, or `domain` alone (the "
        "first BOSH link of its host-meta). The URL's host goes through the destination "
        "policy; `https://` certificates are verified for it. The session (`sid`, `wait`, "
        "`hold`, `requests`, `inactivity`, `ver`) and the features; with `username` and "
        "`password`, SASL, restart, bind and session as `/login`. Response bodies are "
        "capped at the element size; redirects are not followed.",
        parse=validate.parse_bosh,
        flow=bosh.bosh,
        render=render.web_json,
        render_failure=render.web_failure_json,
        request_schema="BOSHRequest",
        success_schema="BOSHSuccess",
        failure_schema="WebFailure",
        example={"url": "https://xmpp.example.org/http-bind", "domain": "example.org"},
    ),
)
