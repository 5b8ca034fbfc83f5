"""Whoever can publish on the broker can send acks: they must not forge, flood or crash.

The fuzz corpus (tests/fuzz/mqtt) goes through the device's ack handling in process; the log
attacks go through a real Mosquitto to the real notifier.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.alerts.service import AlertService
from edge.board import OccupancyBoard
from edge.logsafe import LogThrottle, SafeFormatter, shorten
from edge.mqtt import Topics
from edge.store import Store
from tests.test_alerts import Rig, feed, make_config
from tests.waiting import wait_for

CORPUS = Path(__file__).parent / "fuzz" / "mqtt"
PAYLOADS = sorted(p for p in CORPUS.iterdir() if p.name not in ("topics.txt", "README.md"))
GENERATED = {
    "deep-list": b"[" * 100_000 + b"]" * 100_000,
    "deep-map": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "long-by": b'{"by": "' + b"x" * 60_000 + b'", "status": "accepted"}',
    "huge-extra": b'{"by": "m", "status": "accepted", "pad": "' + b"y" * 500_000 + b'"}',
}
SITE = "branch-7"


@pytest.fixture
def service(tmp_path):
    config = make_config(tmp_path, 1883)
    store = Store(config.storage.path, site_id=SITE)
    board = OccupancyBoard({"lobby": ["waiting", "queue"]})
    alerts = AlertService(config, store, board)
    feed(board, 30)
    alerts.tick()
    (open_alert,) = store.open_alerts()
    yield alerts, open_alert.alert_id
    store.close()


def all_inputs() -> list[tuple[str, bytes]]:
    return [(p.name, p.read_bytes()) for p in PAYLOADS] + sorted(GENERATED.items())


@pytest.mark.parametrize(("name", "payload"), all_inputs(), ids=[n for n, _ in all_inputs()])
def test_every_corpus_payload_is_applied_or_refused_cleanly_and_quickly(
    service, name, payload, caplog
):
    alerts, alert_id = service
    started = time.monotonic()
    for target in (alert_id, "waiting-full-20200101T000000Z-000000"):
        record = alerts.handle_ack(target, payload)
        assert record is None or record.alert_id == alert_id
    assert time.monotonic() - started < 2.0
    for logged in caplog.records:
        text = SafeFormatter().format(logged)
        assert "\n" not in text and "\r" not in text and "\x1b" not in text
        assert len(text) < 1500
    stored = alerts.store.alert(alert_id)
    assert stored is not None
    if name.startswith("valid"):
        assert stored.acknowledged_by == "mgr-1"
    else:
        # Nothing else acknowledges: refused, or (unicode, extra keys) a name fit to show.
        by = stored.acknowledged_by
        assert by is None or (by.isprintable() and len(by) <= 64)


def test_every_corpus_topic_is_refused_unless_it_names_an_alert():
    topics = Topics("lobbywatch", SITE)
    for line in (CORPUS / "topics.txt").read_text().splitlines():
        found = topics.alert_id_of_ack(line)
        if line.endswith("waiting-full-20261201T100000Z-abcdef/ack"):
            assert found == "waiting-full-20261201T100000Z-abcdef"
        else:
            assert found is None, line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.one_of(
        st.binary(max_size=300),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
            max_leaves=20,
        ).map(lambda v: repr(v).encode()),
        st.fixed_dictionaries(
            {"by": st.text(max_size=100), "status": st.sampled_from(["accepted", "pass_done", "x"])}
        ).map(lambda d: __import__("json").dumps(d).encode()),
    ),
    topic_id=st.text(max_size=200),
)
def test_random_acks_and_topics_never_raise(service, payload, topic_id):
    alerts, alert_id = service
    topics = Topics("lobbywatch", SITE)
    found = topics.alert_id_of_ack(f"lobbywatch/{SITE}/alerts/{topic_id}/ack")
    assert found is None or found == topic_id
    alerts.handle_ack(found or alert_id, payload)


def test_repeated_warnings_are_throttled_with_a_count_of_what_was_left_out(caplog):
    now = [0.0]
    throttle = LogThrottle(logging.getLogger("t"), burst=3, window_s=60, clock=lambda: now[0])
    logged = [throttle.warning("k", "bad %d", i) for i in range(100)]
    assert sum(logged) == 3
    now[0] = 61.0
    assert throttle.warning("k", "bad again")
    assert "97 more like 'k' left out" in caplog.text


def test_outside_text_is_escaped_and_bounded():
    assert shorten("a\nb\r\x1b[2J") == "a\\nb\\r\\x1b[2J"
    long = shorten("x" * 60_000)
    assert len(long) < 200 and "60000 characters" in long
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "by %s", ("a\nFORGED",), None)
    assert SafeFormatter("%(message)s").format(record) == "by a\\nFORGED"


@pytest.fixture
def rig(tmp_path, broker):
    rig = Rig(tmp_path, broker).start()
    yield rig
    rig.stop()


def attacker(port: int) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def test_acks_from_the_broker_cannot_forge_flood_or_bloat_the_log(rig, broker, caplog):
    caplog.set_level(logging.INFO)
    feed(rig.board, 30)
    (alert,) = wait_for(lambda: rig.alerts_of("raised"), what="raised alert")
    base = f"lobbywatch/{SITE}/alerts"
    client = attacker(broker.port)
    try:
        forged = '{"by": "mgr-1\\n2026-12-01 10:00:00 INFO lobbywatch.alerts: hacked", "status": "accepted"}'
        client.publish(f"{base}/{alert['alert_id']}/ack", forged, qos=1).wait_for_publish(5)
        for i in range(2000):
            client.publish(f"{base}/waiting-full-20200101T000000Z-{i:06x}/ack",
                           '{"by": "x", "status": "accepted"}', qos=0)  # fmt: skip
        client.publish(f"{base}/{'x' * 60_000}/ack", '{"by": "x", "status": "accepted"}', qos=1)
        # A real ack last: once it is applied, everything before it was handled.
        client.publish(f"{base}/{alert['alert_id']}/ack", '{"by": "mgr-2", "status": "accepted"}',
                       qos=1).wait_for_publish(5)  # fmt: skip
        wait_for(lambda: (rig.store.alert(alert["alert_id"]).acknowledged_by == "mgr-2") or None,
                 what="the real ack applied")  # fmt: skip
    finally:
        client.disconnect()
        client.loop_stop()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    unknown = [r for r in warnings if "unknown alert" in r.getMessage()]
    assert 1 <= len(unknown) <= 5  # 2000 sent
    assert len(warnings) <= 15
    for record in caplog.records:
        text = SafeFormatter().format(record)
        assert "\n" not in text and len(text) < 1500
        assert "hacked" not in text or "\\n" in text
    assert datetime.now(timezone.utc) > rig.store.alert(alert["alert_id"]).raised_at


def test_the_command_line_log_escapes_every_line():
    import subprocess
    import sys

    code = (
        "from edge.cli import _setup_logging; import logging; _setup_logging('INFO'); "
        "logging.getLogger('lobbywatch.alerts').warning('ack by %s', 'mgr\\nFORGED INFO line')"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].endswith("ack by mgr\\nFORGED INFO line")


def test_a_failing_callback_is_logged_and_does_not_end_the_network_thread(broker, caplog):
    from edge.config import MqttConfig
    from edge.mqtt import make_client

    client = make_client(MqttConfig(host="127.0.0.1", port=broker.port), "probe")
    calls = []

    def broken(*_args):
        calls.append(1)
        raise RuntimeError("bug in a callback")

    client.on_connect = broken
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        wait_for(lambda: calls, what="callback called")
        wait_for(lambda: "Caught exception in on_connect" in caplog.text, what="logged")
        assert client._thread is not None and client._thread.is_alive()
    finally:
        client.disconnect()
        client.loop_stop()
