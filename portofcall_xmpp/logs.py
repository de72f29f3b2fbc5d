"""
The JSON log of C{--log-format json} (SPEC §9): one JSON object per line.

Each event becomes C{{"time", "level", "namespace", "text", ...}}: its ISO
8601 time (UTC), level, logger namespace and formatted text, then its own
fields that are plain JSON values (a probe's C{endpoint}, C{host}, C{port},
C{domain}, C{outcome}, C{errorType}, C{elapsedMs}, C{phases}: see
L{web.probe_event}).  Other values, Twisted's own C{log_*} keys and the
legacy log's keys are left out; a failure adds its traceback as C{failure}.
"""

from __future__ import annotations

import datetime
import json

from twisted.logger import FileLogObserver, formatEvent

#: Keys of legacy (twisted.python.log) events, already in the text.
_LEGACY_KEYS = frozenset({"message", "format", "isError", "system", "why", "failure", "time"})


def _plain(value) -> bool:
    """Whether C{value} is a JSON value made of str, int, float, bool, None, lists and dicts."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def event_as_json(event: dict) -> str:
    """One log event as one line of JSON (ending in a newline)."""
    when = event.get("log_time")
    record = {
        "time": None
        if when is None
        else datetime.datetime.fromtimestamp(when, datetime.UTC).isoformat(),
        "level": getattr(event.get("log_level"), "name", None),
        "namespace": event.get("log_namespace"),
        "text": formatEvent(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _LEGACY_KEYS or key in record:
            continue
        if _plain(value):
            record[key] = value
    failure = event.get("log_failure")
    if failure is not None:
        record["failure"] = failure.getTraceback()
    return json.dumps(record, ensure_ascii=False) + "\n"


def json_observer(out) -> FileLogObserver:
    """An observer writing each event to the text file C{out} as one line of JSON."""
    return FileLogObserver(out, event_as_json)
