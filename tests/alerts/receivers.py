"""Local stand-ins for WeCom, DingTalk and Feishu group robots, ntfy, a bank's webhook and an
SMTP server, each checking a message as the real service does (key, signature, format), and
hostile ones (slow, huge, redirecting)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from edge.alerts.channels import DELIVERY_HEADER, verify_webhook

WECOM_KEY = "693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
DINGTALK_TOKEN = "6f2bd8a6c2c34a4b8b5c0b8f6a9f0d11"
DINGTALK_SECRET = "SEC8e3f0c1d2b4a5968776f5e4d3c2b1a0f9e8d7c6b5a4938271605f4e3d2c1b0"
FEISHU_TOKEN = "2b7c9d1e-3f4a-5b6c-7d8e-9f0a1b2c3d4e"
WEBHOOK_SECRET = "whsec-0123456789abcdef0123456789abcdef"
NTFY_TOKEN = "tk_9a8b7c6d5e4f3a2b1c0d9e8f7a6b"
SMTP_PASSWORD = "Smtp-Pa55word-for-lobby"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Received:
    service: str
    text: str
    title: str | None
    headers: dict[str, str]
    body: bytes


@dataclass
class Robots:
    """One HTTP server answering for every service, as each would."""

    port: int = field(default_factory=free_port)
    received: list[Received] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    behaviour: str = "ok"  # ok | slow | drip | huge | redirect | error500
    _server: http.server.ThreadingHTTPServer | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Robots:
        robots = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                robots.handle(self, body)

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def handle(self, h: http.server.BaseHTTPRequestHandler, body: bytes) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)  # decoded once, as every one of these services does
        headers = {k: v for k, v in h.headers.items()}
        if self.behaviour == "slow":
            time.sleep(30)
        if self.behaviour == "drip":  # never silent long enough for a read timeout
            h.send_response(200)
            h.send_header("Content-Length", "1000")
            h.end_headers()
            try:
                for _ in range(1000):
                    h.wfile.write(b" ")
                    h.wfile.flush()
                    time.sleep(0.5)
            except OSError:
                pass
            return
        if self.behaviour == "huge":
            h.send_response(200)
            h.send_header("Content-Length", str(50 * 1024 * 1024))
            h.end_headers()
            chunk = b"x" * 65536
            try:
                for _ in range(800):
                    h.wfile.write(chunk)
            except OSError:
                pass
            return
        if self.behaviour == "redirect":
            h.send_response(302)
            h.send_header("Location", f"{self.base}/elsewhere")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if self.behaviour == "error500":
            return self.answer(h, 500, {"error": "down for maintenance"})
        if url.path == "/elsewhere":
            self.refused.append("followed a redirect")
            return self.answer(h, 200, {})
        data = json.loads(body or b"{}")
        if url.path == "/cgi-bin/webhook/send":
            if query.get("key") != [WECOM_KEY]:
                return self.refuse(h, "wecom", {"errcode": 93000, "errmsg": "invalid webhook url"})
            text = data["text"]["content"]
            if data.get("msgtype") != "text" or len(text.encode()) > 2048:
                return self.refuse(h, "wecom", {"errcode": 40008, "errmsg": "invalid message type"})
            return self.accept(
                h, "wecom", text, None, headers, body, {"errcode": 0, "errmsg": "ok"}
            )
        if url.path == "/robot/send":
            problem = dingtalk_problem(query)
            if problem:
                return self.refuse(h, "dingtalk", {"errcode": 310000, "errmsg": problem})
            text = data["text"]["content"]
            return self.accept(
                h, "dingtalk", text, None, headers, body, {"errcode": 0, "errmsg": "ok"}
            )
        if url.path.rstrip("/") == f"/open-apis/bot/v2/hook/{FEISHU_TOKEN}":
            if data.get("msg_type") != "text":
                return self.refuse(h, "feishu", {"code": 9499, "msg": "Bad Request"})
            text = data["content"]["text"]
            return self.accept(
                h, "feishu", text, None, headers, body, {"code": 0, "msg": "success"}
            )
        if url.path.startswith("/open-apis/bot/v2/hook/"):
            return self.refuse(
                h,
                "feishu",
                {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"},
            )
        if url.path in ("", "/") and "topic" in data:  # ntfy's JSON publishing
            if headers.get("Authorization") != f"Bearer {NTFY_TOKEN}":
                return self.answer(h, 401, {"code": 40101, "error": "unauthorized"})
            return self.accept(h, "ntfy", data["message"], data.get("title"), headers, body,
                               {"id": "x1", "event": "message", "topic": data["topic"]})  # fmt: skip
        if url.path == "/hooks/lobbywatch":
            problem = verify_webhook(WEBHOOK_SECRET, headers, body, time.time())
            if problem:
                self.refused.append(f"webhook: {problem}")
                return self.answer(h, 401, {"error": problem})
            delivery = headers.get(DELIVERY_HEADER, "")
            if any(r.headers.get(DELIVERY_HEADER) == delivery for r in self.received):
                return self.answer(h, 200, {"duplicate": True})  # de-duplicated, as asked
            payload = json.loads(body)
            return self.accept(h, "webhook", payload["text"], payload["title"], headers, body, {})
        self.answer(h, 404, {"error": "no such endpoint"})

    def accept(self, h: Any, service: str, text: str, title: str | None,
               headers: dict[str, str], body: bytes, answer: dict[str, Any]) -> None:  # fmt: skip
        self.received.append(Received(service, text, title, headers, body))
        self.answer(h, 200, answer)

    def refuse(self, h: Any, service: str, answer: dict[str, Any]) -> None:
        self.refused.append(f"{service}: {answer}")
        self.answer(h, 200, answer)  # the robots refuse with HTTP 200

    @staticmethod
    def answer(h: Any, status: int, data: dict[str, Any]) -> None:
        raw = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)


def dingtalk_problem(query: dict[str, list[str]]) -> str | None:
    """DingTalk's check of a signed robot's request: token, timestamp within an hour, sign."""
    if query.get("access_token") != [DINGTALK_TOKEN]:
        return "token is not exist"
    try:
        (timestamp,) = query["timestamp"]
        (sign,) = query["sign"]
    except (KeyError, ValueError):
        return "sign not match"
    if abs(time.time() * 1000 - int(timestamp)) > 3600_000:
        return "timestamp is invalid"
    expected = base64.b64encode(
        hmac.new(
            DINGTALK_SECRET.encode(), f"{timestamp}\n{DINGTALK_SECRET}".encode(), hashlib.sha256
        ).digest()
    ).decode()
    return None if hmac.compare_digest(sign, expected) else "sign not match"


class Mailbox:
    """A local SMTP server (aiosmtpd) that wants a login."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.port = free_port()
        self.messages: list[Any] = []
        mailbox = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                mailbox.messages.append(envelope)
                return "250 OK"

        def authenticate(
            server: Any, session: Any, envelope: Any, mechanism: str, auth: Any
        ) -> Any:
            ok = auth.login == b"lobby" and auth.password == SMTP_PASSWORD.encode()
            return AuthResult(success=ok)

        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticate,
            auth_require_tls=False,
        )  # fmt: skip

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.controller.stop()
