#!/usr/bin/env python3
"""
The HTTP floor of bench/perf.py: the least a twisted.web JSON endpoint costs.

One L{Resource} whose C{render_POST} reads the JSON body with C{json.loads}
and answers a fixed JSON object with C{json.dumps}, served by
L{twisted.web.server.Site} on 127.0.0.1 (backlog 4096) with its access log
off, as the service's is by default.  It prints the port it listens on, then
serves until it is killed.

    python bench/floor.py [PORT]      (0 or nothing: a free port)
"""

from __future__ import annotations

import json
import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

#: About the size of the service's smallest answers.
ANSWER = {"success": True, "host": "127.0.0.1", "port": 5222, "message": "floor"}


class Floor(Resource):
    isLeaf = True

    def render_POST(self, request):
        json.loads(request.content.read())
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(ANSWER).encode()


class QuietSite(Site):
    def log(self, request):
        pass


def main() -> int:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    listening = reactor.listenTCP(port, QuietSite(Floor()), backlog=4096, interface="127.0.0.1")
    print(listening.getHost().port, flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
