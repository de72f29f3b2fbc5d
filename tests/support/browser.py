"""Drive headless Chromium through the DevTools protocol over a pipe.

``chromium --remote-debugging-pipe`` reads protocol messages (JSON, each
ended by a NUL byte) from its file descriptor 3 and writes answers and
events to its descriptor 4: no WebSocket client needed.  :func:`evaluate`
opens a page, waits for its load event and evaluates an expression there
(awaiting a promise), returning its JSON value.

This is test-setup code: it blocks on purpose.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class BrowserError(Exception):
    """Chromium did not answer in time, or answered with an error."""


def find_chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Pipe:
    def __init__(self, to_browser: int, from_browser: int, deadline: float):
        self._out = to_browser
        self._in = from_browser
        self._deadline = deadline
        self._buffer = b""
        self._ids = iter(range(1, 1 << 30))

    def _read_message(self) -> dict:
        while b"\0" not in self._buffer:
            left = self._deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise BrowserError("Chromium did not answer in time")
            chunk = os.read(self._in, 65536)
            if not chunk:
                raise BrowserError("Chromium closed its pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result (events meanwhile are dropped)."""
        ident = next(self._ids)
        message = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            answer = self._read_message()
            if answer.get("id") == ident:
                if "error" in answer:
                    raise BrowserError(f"{method}: {answer['error']}")
                return answer["result"]

    def wait_event(self, method: str, session: str) -> dict:
        while True:
            event = self._read_message()
            if event.get("method") == method and event.get("sessionId") == session:
                return event


def evaluate(url: str, expression: str, timeout: float = 60.0, width: int | None = None):
    """
    Load C{url} in headless Chromium (a viewport C{width} pixels wide when
    given), wait for its load event, evaluate C{expression} there (awaiting
    the promise it gives) and return its value.
    """
    chromium = find_chromium()
    if chromium is None:
        raise BrowserError("chromium is not installed")
    to_browser_r, to_browser_w = os.pipe()
    from_browser_r, from_browser_w = os.pipe()

    def descriptors():
        # The child's fd 3 reads our commands; its fd 4 carries the answers
        # (moved out of the way first, in case either is 3 or 4 already).
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_browser_r, from_browser_w)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)

    # Chromium's helper processes may still write into the profile for a moment
    # after the browser is gone: the whole process group is killed, and a file
    # left behind does not fail the test.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
        flags = [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe"]
        process = subprocess.Popen(
            [chromium, *flags, "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=descriptors,
            close_fds=False,  # keeps the inheritable 3 and 4 made above
            start_new_session=True,
        )
        os.close(to_browser_r)
        os.close(from_browser_w)
        try:
            pipe = _Pipe(to_browser_w, from_browser_r, time.monotonic() + timeout)
            target = pipe.call("Target.createTarget", {"url": "about:blank"})["targetId"]
            session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            pipe.call("Page.enable", session=session)
            if width is not None:
                metrics = {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False}
                pipe.call("Emulation.setDeviceMetricsOverride", metrics, session=session)
            pipe.call("Page.navigate", {"url": url}, session=session)
            pipe.wait_event("Page.loadEventFired", session)
            result = pipe.call(
                "Runtime.evaluate",
                {"expression": expression, "awaitPromise": True, "returnByValue": True},
                session=session,
            )
            if "exceptionDetails" in result:
                raise BrowserError(json.dumps(result["exceptionDetails"])[:2000])
            return result["result"].get("value")
        finally:
            os.close(to_browser_w)
            os.close(from_browser_r)
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(30)
