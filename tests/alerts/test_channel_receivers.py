"""Channels end to end, through the real sender process, against local receivers that check
each message as the real service would: WeCom, DingTalk (signed) and Feishu group robots, ntfy,
a signed webhook and an SMTP server. Then receivers that are down, slow, huge or redirecting,
and where the secrets must not show."""

from __future__ import annotations

import logging
import resource
import socket
import time
from email import message_from_bytes
from email.header import decode_header, make_header

import pytest

from edge.alerts.delivery import DeliveryWorker, deliveries_of
from edge.alerts.sender import SenderProcess
from edge.store import Store
from tests.alerts import receivers as rx
from tests.alerts.support import channels_of, make_config, raise_alert
from tests.waiting import wait_for

NOW_AT = None


def channel_yaml(kind: str, extra: str = "") -> str:
    env = {"webhook": "url_env: LW_URL, secret_env: LW_SECRET"}.get(kind, "url_env: LW_URL")
    return f"    - {{id: {kind}-1, kind: {kind}, {env}, timeout_s: 2{extra}}}"


def urls(robots: rx.Robots, mail_port: int = 0) -> dict[str, str]:
    return {
        "wecom": f"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key={rx.WECOM_KEY}",
        "dingtalk": f"dingtalk://{rx.DINGTALK_SECRET}@{rx.DINGTALK_TOKEN}",
        "feishu": f"feishu://{rx.FEISHU_TOKEN}",
        "ntfy": f"ntfy://{rx.NTFY_TOKEN}@127.0.0.1:{robots.port}/lobby-branch-7",
        "webhook": f"{robots.base}/hooks/lobbywatch",
        "email": (
            f"mailto://lobby:{rx.SMTP_PASSWORD}@127.0.0.1:{mail_port}"
            "?from=lobbywatch@branch7.bank.example&to=lobby-manager@bank.example"
        ),
    }


API_BASE = {"wecom", "dingtalk", "feishu"}


def make_worker(tmp_path, store, kind, robots, mail_port=0, extra="", url=None):
    if kind in API_BASE:
        extra += f", api_base: '{robots.base}'"
    config = make_config(tmp_path, channel_yaml(kind, extra))
    environ = {"LW_URL": url or urls(robots, mail_port)[kind], "LW_SECRET": rx.WEBHOOK_SECRET}
    channels = channels_of(config, environ)
    sender = SenderProcess([s for c in channels for s in c.secrets()])
    return DeliveryWorker(config, store, channels, sender, counts=lambda zones: 12.0)


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "lw.db", site_id="branch-7") as s:
        yield s


@pytest.fixture
def robots():
    started = rx.Robots().start()
    yield started
    started.stop()


def view(store, alert_id="a1"):
    views = deliveries_of(store.query, [alert_id]).get(alert_id, [])
    return views[0] if views else None


def attempted(store, alert_id="a1"):
    """Whether the delivery's first attempt has its result in the store (its count is written
    before the message leaves, and stopping ends an attempt in flight)."""
    v = view(store, alert_id)
    return v is not None and v.attempts >= 1 and (v.last_error is not None or v.state != "waiting")


def deliver(w: DeliveryWorker, store, until, timeout: float = 20.0):
    w.start()
    try:
        return wait_for(until, timeout=timeout, what="delivery")
    finally:
        w.stop()


@pytest.mark.parametrize("kind", ["wecom", "dingtalk", "feishu", "ntfy", "webhook"])
def test_each_robot_takes_the_alert_as_its_service_would_check_it(tmp_path, store, robots, kind):
    w = make_worker(tmp_path, store, kind, robots)
    raise_alert(store, "a1", _now())
    deliver(w, store, lambda: (v := view(store)) is not None and v.state == "sent")
    assert robots.refused == []
    (got,) = robots.received
    assert got.service == kind
    assert "12 people in 等候区, Queue since" in got.text
    title = "[Branch 7] Waiting area busy"
    assert title in got.text if got.title is None else got.title == title
    if kind == "webhook":
        payload = __import__("json").loads(got.body)
        assert payload["event"] == "raised" and payload["alert_id"] == "a1"
        assert payload["zones"] == [
            {"id": "waiting", "name": "等候区"},
            {"id": "queue", "name": "Queue"},
        ]
        assert payload["at"].endswith("+08:00")
        assert got.headers[rx.DELIVERY_HEADER] == "a1:raised@webhook-1"


def test_email_goes_through_an_smtp_server_that_wants_a_login(tmp_path, store, robots):
    with rx.Mailbox() as mailbox:
        w = make_worker(tmp_path, store, "email", robots, mail_port=mailbox.port)
        raise_alert(store, "a1", _now())
        deliver(w, store, lambda: mailbox.messages)
    (envelope,) = mailbox.messages
    assert envelope.rcpt_tos == ["lobby-manager@bank.example"]
    message = message_from_bytes(envelope.content)
    assert str(make_header(decode_header(message["Subject"]))) == "[Branch 7] Waiting area busy"
    text = next(p for p in message.walk() if p.get_content_type() == "text/plain")
    assert "12 people in 等候区, Queue" in text.get_payload(decode=True).decode()
    assert view(store).state == "sent"


def test_a_refusal_in_a_robots_http_200_answer_is_not_taken_for_delivery(tmp_path, store, robots):
    wrong = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=0000-wrong-key-0000"
    w = make_worker(tmp_path, store, "wecom", robots, url=wrong)
    raise_alert(store, "a1", _now())
    deliver(w, store, lambda: attempted(store))
    v = view(store)
    assert v.state == "waiting" and robots.received == []
    assert v.last_error == "wecom refused it: code 93000 invalid webhook url"


def test_a_receiver_down_then_up_gets_the_alert_once(tmp_path, store):
    robots = rx.Robots()  # its port is reserved, nothing listens yet
    w = make_worker(tmp_path, store, "webhook", robots)
    raise_alert(store, "a1", _now())
    w.start()
    try:
        wait_for(lambda: (v := view(store)) is not None and v.attempts >= 2, what="two attempts")
        assert w.status()["webhook-1"]["state"] == "failing"
        robots.start()
        wait_for(lambda: view(store).state == "sent", timeout=20, what="delivery once up")
        time.sleep(1.0)  # a second copy would come now
    finally:
        w.stop()
        robots.stop()
    assert len(robots.received) == 1
    assert w.status()["webhook-1"]["state"] == "ok"


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [
        ("slow", "ReadTimeout"),
        ("drip", "no answer within 2 s"),
        ("huge", "answer larger than 64 KiB: refused"),
        ("redirect", "HTTP 302: redirect refused"),
        ("error500", "HTTP 500"),
    ],
)
def test_a_hostile_receiver_costs_one_failed_attempt_and_nothing_else(
    tmp_path, store, robots, behaviour, error
):
    robots.behaviour = behaviour
    w = make_worker(tmp_path, store, "webhook", robots)
    raise_alert(store, "a1", _now())
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    deliver(w, store, lambda: attempted(store), timeout=30)
    assert time.monotonic() - started < 2 + 5 + 3, "the attempt ended by its timeout and grace"
    v = view(store)
    assert v.state == "waiting" and v.last_error is not None and v.last_error.startswith(error)
    assert robots.refused == [], "the redirect was not followed"
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 20 * 1024, "the device process did not read the answer"


def test_no_secret_reaches_the_logs_the_store_or_health(tmp_path, store, robots, caplog):
    caplog.set_level(logging.DEBUG)
    secrets = [rx.WECOM_KEY, rx.DINGTALK_SECRET, rx.DINGTALK_TOKEN, rx.FEISHU_TOKEN,
               rx.NTFY_TOKEN, rx.WEBHOOK_SECRET, rx.SMTP_PASSWORD]  # fmt: skip
    seen: list[str] = []
    with rx.Mailbox() as mailbox:
        for kind in ("wecom", "dingtalk", "feishu", "ntfy", "webhook", "email"):
            robots.behaviour = "error500" if kind != "email" else "ok"
            port = mailbox.port if kind != "email" else rx.free_port()  # e-mail: nobody there
            with Store(tmp_path / f"{kind}.db", site_id="branch-7") as s:
                w = make_worker(tmp_path, s, kind, robots, mail_port=port)
                raise_alert(s, "a1", _now())
                deliver(w, s, lambda s=s: attempted(s))
                seen += [repr(w.channels), str(w.status()), str(view(s))]
    seen.append(caplog.text)
    for text in seen:
        for secret in secrets:
            assert secret not in text


def _now():
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


def test_stopping_does_not_wait_for_a_receiver_that_never_answers(tmp_path, store):
    # A port that takes the connection (the kernel's backlog) and the request, and never answers.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        port = silent.getsockname()[1]
        channel = (
            "    - {id: webhook-1, kind: webhook, url_env: LW_URL, secret_env: LW_SECRET,"
            " timeout_s: 30}"
        )
        config = make_config(tmp_path, channel)
        environ = {"LW_URL": f"http://127.0.0.1:{port}/hook", "LW_SECRET": rx.WEBHOOK_SECRET}
        channels = channels_of(config, environ)
        sender = SenderProcess([s for c in channels for s in c.secrets()])
        w = DeliveryWorker(config, store, channels, sender, counts=lambda zones: 12.0)
        raise_alert(store, "a1", _now())
        w.start()
        try:
            wait_for(lambda: (v := view(store)) is not None and v.attempts >= 1, timeout=20,
                     what="the attempt")  # fmt: skip
            time.sleep(1.0)  # the job is in the sender process, waiting on the receiver
        finally:
            started = time.monotonic()
            w.stop()
            took = time.monotonic() - started
        assert took < 4, f"stop() took {took:.1f} s"
        assert not w._thread.is_alive()
        v = view(store)
        assert v.state == "waiting", "sent again after the restart, not lost"
        assert v.last_error == "no answer before the service stopped"
    finally:
        silent.close()
