"""
The JSON of an C{/srv} answer (SPEC.md section 7), for the web layer: the
one place an L{SRVReport} becomes JSON, so that L{portofcall_xmpp.srv}
knows nothing of JSON.

The shape (the web layer adds C{"success": true}); every key is always
present (the meaning of each is in L{portofcall_xmpp.srv})::

    {"domain": "example.com",            # as given (RFC 7622 form, U-labels)
     "services": {                       # always these four keys, in this order
       "xmpp-client": {
         "name": "_xmpp-client._tcp.example.com",   # the name queried (A-labels)
         "status": "ok",                 # "ok" | "none" | "unavailable" | "error"
         "nxdomain": false,              # "none" because the name does not exist
         "records": [                    # the order a client tries them
           {"priority": 5, "weight": 10, "port": 5222,
            "target": "xmpp.example.com",            # without the trailing dot
            "addresses": [{"address": "192.0.2.1", "allowed": true},
                          {"address": "2001:db8::1", "allowed": true}],
            "error": null}               # why the target has no address, else null
         ],
         "fallback": null,               # or {"host", "port", "addresses", "error"}
         "error": null},                 # status "error": why, else null
       "xmpps-client": {...}, "xmpp-server": {...}, "xmpps-server": {...}},
     "elapsedMs": 12}
"""

from __future__ import annotations

from .srv import AddressReport, ServiceReport, SRVReport


def _address_json(address: AddressReport) -> dict:
    return {"address": address.address, "allowed": address.allowed}


def _service_json(report: ServiceReport) -> dict:
    fallback = report.fallback
    return {
        "name": report.name,
        "status": report.status,
        "nxdomain": report.nxdomain,
        "records": [
            {
                "priority": record.priority,
                "weight": record.weight,
                "port": record.port,
                "target": record.target,
                "addresses": [_address_json(a) for a in record.addresses],
                "error": record.error,
            }
            for record in report.records
        ],
        "fallback": None
        if fallback is None
        else {
            "host": fallback.host,
            "port": fallback.port,
            "addresses": [_address_json(a) for a in fallback.addresses],
            "error": fallback.error,
        },
        "error": report.error,
    }


def to_json(report: SRVReport) -> dict:
    """The JSON object of C{report} (the shape is in the module docstring)."""
    return {
        "domain": report.domain,
        "services": {s.service.key: _service_json(s) for s in report.services},
        "elapsedMs": round(report.elapsed * 1000),
    }
