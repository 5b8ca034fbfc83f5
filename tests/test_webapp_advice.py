"""The phone app says a counter as the device does (docs/queueing.md, Advice): a label that
reads as a number ("3", "A2", "B") is "counter 3", any other ("VIP") a name. The page words the
advice itself, in its own language, so its rule must be the device's (edge/alerts/advice.py).
Run in node: the app's own regex, taken from app.js."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from api.routes.webapp import APP_DIR
from edge.alerts.advice import _COUNTER_NUMBER

LABELS = ["3", "12", "A2", "2A", "B", "b", "1234", "12345", "VIP", "AB", "ABCD", "A-2", "3号", ""]


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node")
def test_the_app_tells_a_counter_number_from_a_name_as_the_device_does():
    source = (APP_DIR / "app.js").read_text(encoding="utf-8")
    found = re.search(r"^const COUNTER_NUMBER = (/.+/);$", source, re.MULTILINE)
    assert found, "app.js defines COUNTER_NUMBER on one line"
    script = f"const re = {found.group(1)};\n" + (
        f"console.log(JSON.stringify({json.dumps(LABELS)}.map((s) => re.test(s))));"
    )
    out = subprocess.run(
        ["node", "-e", script], capture_output=True, text=True, timeout=30, check=True
    )
    page = json.loads(out.stdout)
    device = [_COUNTER_NUMBER.fullmatch(label) is not None for label in LABELS]
    assert dict(zip(LABELS, page, strict=True)) == dict(zip(LABELS, device, strict=True))
    assert device[LABELS.index("VIP")] is False  # "VIP 号柜台" is not Chinese
