"""
POST /api/xmpp/component on the page: headless Chromium runs the form built
from the OpenAPI document against the test Prosody's component.
"""

import pytest_twisted

NAME = "component.localhost"


@pytest_twisted.ensureDeferred
async def test_page_runs_component(prosody, service, tmp_path):
    """
    Headless Chromium opens /#component?...&run: the page has the form (built
    from the OpenAPI document), runs the probe against Prosody and shows it.
    """
    import shutil
    import subprocess

    from test_page import CHROMIUM_FLAGS, _missing
    from twisted.internet import threads

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise _missing("chromium is not installed")
    fragment = (
        f"#component?host={prosody.host}&port={prosody.component_port}&componentName={NAME}&run"
    )
    result = await threads.deferToThread(
        subprocess.run,
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            service.url("/" + fragment),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert 'id="form-component"' in dom
    assert "Component stream opened" in dom
    assert "Handshake accepted" in dom
