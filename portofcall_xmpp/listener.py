"""
The HTTP listener's own limits (SPEC §1 C{--max-connections}, §2 "the
caller's side is bounded too").

twisted.web's L{Site} resets its idle timeout on every byte, so a client that
sends its request one byte at a time holds a connection (and a file
descriptor) for as long as it likes, and nothing caps how many such
connections are open.  L{BoundedSite} adds what an exposed service needs:

 - at most C{max_connections} open connections; at the cap, a new connection
   evicts the oldest one that has not delivered a whole request (a slow or
   idle client), and is refused only when every open connection is busy with
   a request, so slow clients cannot lock out real ones (or C{/api/health});
 - a request must arrive whole within C{request_deadline} seconds of its
   first byte (of the connection, for the first request);
 - an idle keep-alive connection closes after C{idle_timeout} seconds;
 - an answer the client does not read (the transport stops taking data) is
   dropped after C{unread_timeout} seconds: the connection is aborted and the
   buffered answer freed.

L{raise_open_file_limit} raises the process's soft open-file limit to its
hard limit at start-up.
"""

from __future__ import annotations

import collections

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.server import Site

DEFAULT_MAX_CONNECTIONS = 1000
REQUEST_DEADLINE = 10.0
IDLE_TIMEOUT = 15.0
UNREAD_TIMEOUT = 30.0


class BoundedChannel(HTTPChannel):
    """
    An L{HTTPChannel} with a deadline for each request to arrive whole and a
    limit on how long an unread answer is kept.  Built only by L{BoundedSite}.
    """

    _limits_log = Logger()
    _deadline = None
    _unread = None
    request_seen = False

    def __init__(self):
        super().__init__()
        # HTTPChannel's own lines ("Timing out client") keep twisted.web's
        # namespace: a class-level Logger would take this subclass's name.
        self._log = Logger(namespace="twisted.web.http.HTTPChannel", source=self)

    def connectionMade(self):
        super().connectionMade()
        self._arm_deadline()

    def dataReceived(self, data):
        if self._deadline is None and not self._handlingRequest:
            self._arm_deadline()
        super().dataReceived(data)

    def allContentReceived(self):
        self.request_seen = True
        self._cancel("_deadline")
        super().allContentReceived()

    def pauseProducing(self):
        super().pauseProducing()
        if self._unread is None:
            self._unread = self.callLater(self.factory.unread_timeout, self._drop_unread)

    def resumeProducing(self):
        self._cancel("_unread")
        super().resumeProducing()

    def connectionLost(self, reason):
        self._cancel("_deadline")
        self._cancel("_unread")
        self.factory.channel_closed(self)
        super().connectionLost(reason)

    def waiting_for_request(self) -> bool:
        """No request is being handled: the client is slow, or idle between requests."""
        return not self._handlingRequest and not self.requests

    def evict(self) -> None:
        """Close this connection at once to make room for a new one."""
        self._limits_log.info("Closing a slow or idle HTTP client to admit a new one")
        self.transport.abortConnection()

    def _arm_deadline(self):
        self._deadline = self.callLater(self.factory.request_deadline, self._deadline_passed)

    def _deadline_passed(self):
        self._deadline = None
        self._limits_log.info("HTTP request did not arrive whole in time; closing")
        self.transport.abortConnection()

    def _drop_unread(self):
        self._unread = None
        self._limits_log.info("HTTP client does not read its answer; dropping it")
        self.transport.abortConnection()

    def _cancel(self, name):
        call = getattr(self, name)
        if call is not None:
            setattr(self, name, None)
            if call.active():
                call.cancel()


class BoundedSite(Site):
    """
    A L{Site} of L{BoundedChannel}s with a cap on open connections.

    @param resource: the root resource.
    @param reactor: the clock for every timeout (L{IReactorTime}).
    @param access_log: log every HTTP request (C{--access-log}); off, the
        probes log only their own line.
    """

    protocol = BoundedChannel

    def __init__(
        self,
        resource,
        reactor: IReactorTime,
        *,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        request_deadline: float = REQUEST_DEADLINE,
        idle_timeout: float = IDLE_TIMEOUT,
        unread_timeout: float = UNREAD_TIMEOUT,
        access_log: bool = False,
    ):
        super().__init__(resource, timeout=idle_timeout, reactor=reactor)
        self.access_log = access_log
        self.max_connections = max_connections
        self.request_deadline = request_deadline
        self.unread_timeout = unread_timeout
        # Insertion-ordered: the oldest connection first.
        self.channels: dict[BoundedChannel, None] = collections.OrderedDict()
        self.refused = 0
        self.evicted = 0

    def buildProtocol(self, addr):
        if len(self.channels) >= self.max_connections and not self._evict_one():
            self.refused += 1
            return None
        channel = super().buildProtocol(addr)
        self.channels[channel] = None
        return channel

    def log(self, request):
        if self.access_log:
            super().log(request)

    def channel_closed(self, channel) -> None:
        self.channels.pop(channel, None)

    def _evict_one(self) -> bool:
        for channel in self.channels:
            if channel.waiting_for_request():
                del self.channels[channel]
                self.evicted += 1
                channel.evict()
                return True
        return False


def raise_open_file_limit(resource_module=None) -> tuple[int, int] | None:
    """
    Raise the soft open-file limit to the hard limit.

    @return: C{(before, after)}, or L{None} where the platform has no such limit.
    """
    if resource_module is None:
        try:
            import resource as resource_module
        except ImportError:  # not POSIX
            return None
    soft, hard = resource_module.getrlimit(resource_module.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource_module.setrlimit(resource_module.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft, soft
    return soft, hard
