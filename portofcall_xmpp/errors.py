"""
Typed failures.

A L{ProbeError} means the probe ran and the server (or the network) stopped
it: the web layer answers 200 with C{success: false}, C{error} and
C{errorType}.  A L{RequestError} means the request itself was refused before
any probe ran: the web layer answers with its HTTP status.
"""


class ProbeError(Exception):
    """
    A probe stopped.  C{error_type} is one of the SPEC's C{errorType} values.

    @ivar extra: additional JSON-ready fields for the response (for example
        C{streamErrorText}); never anything that carries a credential.
    """

    error_type = "protocol"

    def __init__(self, message, *, error_type=None, extra=None):
        super().__init__(message)
        self.message = message
        if error_type is not None:
            self.error_type = error_type
        self.extra = dict(extra or {})

    def __str__(self):
        return self.message


class DNSError(ProbeError):
    """The host name did not resolve."""

    error_type = "dns"


class ConnectError(ProbeError):
    """No TCP connection could be made (refused, unreachable, timed out)."""

    error_type = "connect"


class ProbeTimeout(ProbeError):
    """Base of both timeouts."""

    error_type = "timeout"


class ReadTimeout(ProbeTimeout):
    """One wait for a reply from the server outlasted the per-read timeout."""


class FlowTimeout(ProbeTimeout):
    """The whole probe outlasted its overall C{timeout}."""


class TLSFailure(ProbeError):
    """TLS could not be negotiated or the certificate was refused."""

    error_type = "tls"


class StreamError(ProbeError):
    """The server sent a C{<stream:error>}."""

    error_type = "stream_error"


class SASLFailure(ProbeError):
    """Authentication failed or no usable mechanism was offered."""

    error_type = "sasl"


class BindFailure(ProbeError):
    """The resource-binding (or session) iq failed."""

    error_type = "bind"


class ProtocolViolation(ProbeError):
    """Not well-formed XML, not XMPP, or an unexpected element."""

    error_type = "protocol"


class TooLarge(ProbeError):
    """An element, its depth, the bytes read, or the service-wide budget exceeded a limit."""

    error_type = "too_large"


class Closed(ProbeError):
    """The server closed or reset an established connection early."""

    error_type = "closed"


class RequestError(Exception):
    """
    The HTTP request was refused before any probe ran.

    @ivar status: the HTTP status (400, 403, 413, 415, 429).
    @ivar extra: additional JSON fields (e.g. C{blocked: true}).
    @ivar headers: additional response headers (e.g. C{Retry-After}).
    """

    def __init__(self, status, message, *, extra=None, headers=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def __str__(self):
        return self.message


class DestinationBlocked(Exception):
    """
    The destination is not allowed by the service's policy.

    Not a L{ProbeError}: the probe never started.  Only the web layer decides
    what that means over HTTP (403 with C{blocked: true}).

    @ivar resolved: how the probe looked for its server (a
        L{portofcall_xmpp.route.Resolution}), when a probe's flow refused it.
    """

    def __init__(self, message, *, resolved=None):
        super().__init__(message)
        self.message = message
        self.resolved = resolved

    def __str__(self):
        return self.message
