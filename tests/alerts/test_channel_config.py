"""alerts.channels in the config: what is refused, with which message, and how a channel's
URL is read from the environment or a file, never from the config itself."""

from __future__ import annotations

import pytest

from edge.alerts.channels import ChannelError, Secret, redact, resolve, secret_parts
from edge.config import ConfigError
from tests.alerts.support import make_config


@pytest.mark.parametrize(
    ("channel", "message"),
    [
        ("{id: c, kind: wecom}", "give exactly one of url_env or url_file"),
        (
            "{id: c, kind: wecom, url_env: A, url_file: /x}",
            "give exactly one of url_env or url_file",
        ),
        ("{id: c, kind: wecom, url: 'wecombot://k'}", "unknown key"),
        ("{id: c, kind: wechat, url_env: A}", "Input should be 'wecom', 'dingtalk'"),
        ("{id: c, kind: wecom, url_env: lower}", "String should match pattern"),
        (
            "{id: c, kind: webhook, url_env: A}",
            "a webhook is signed: give one of secret_env or secret_file",
        ),
        (
            "{id: c, kind: ntfy, url_env: A, secret_env: B}",
            "secret_env and secret_file are for kind webhook",
        ),
        (
            "{id: c, kind: ntfy, url_env: A, api_base: 'https://x'}",
            "api_base is for wecom, dingtalk and feishu",
        ),
        (
            "{id: c, kind: wecom, url_env: A, api_base: 'ftp://x'}",
            "api_base must look like https://host",
        ),
        (
            "{id: c, kind: wecom, url_env: A, audience: supervisor, events: [raised]}",
            "audience supervisor is not sent raised",
        ),
        (
            "{id: c, kind: wecom, url_env: A, audience: it, events: [accepted]}",
            "audience it is not sent accepted",
        ),
        ("{id: c, kind: wecom, url_env: A, events: []}", "at least 1 item"),
        (
            "{id: c, kind: wecom, url_env: A, events: [raised, raised]}",
            "duplicate event in channel id(s): raised",
        ),
        ("{id: c, kind: wecom, url_env: A, max_per_minute: 0}", "greater than or equal to 1"),
        ("{id: c, kind: wecom, url_env: A, max_per_minute: 1000}", "less than or equal to 60"),
        ("{id: c, kind: wecom, url_env: A, expire_after_s: 5}", "greater than or equal to 60"),
    ],
)
def test_a_wrong_channel_is_refused_at_its_line_with_the_reason(tmp_path, channel, message):
    with pytest.raises(ConfigError) as caught:
        make_config(tmp_path, f"    - {channel}")
    (issue,) = caught.value.issues
    assert issue.path.startswith("alerts.channels.0") and issue.line == 17
    assert message in issue.message


def test_two_channels_with_one_id_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="duplicate channel id"):
        make_config(
            tmp_path, "    - {id: c, kind: ntfy, url_env: A}\n    - {id: c, kind: ntfy, url_env: B}"
        )


@pytest.mark.parametrize(
    ("kind", "url", "problem"),
    [
        ("wecom", "wecombot://6f2bd8a6-key", None),
        ("wecom", "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=6f2bd8a6-key", None),
        ("wecom", "dingtalk://6f2bd8a6token", "a URL for DingTalk, not wecom"),
        ("dingtalk", "dingtalk://SECabc123@6f2bd8a6token", None),
        ("feishu", "feishu://2b7c9d1e-token", None),
        ("email", "mailtos://lobby:pw@smtp.bank.example?to=mgr@bank.example", None),
        ("ntfy", "ntfys://ntfy.bank.example/lobby", None),
        ("ntfy", "not a url at all", "not a URL apprise can use"),
        ("webhook", "https://hooks.bank.example/lobbywatch", None),
        ("webhook", "ftp://hooks.bank.example/x", "not an http(s) URL with a host"),
    ],
)
def test_a_channels_url_must_be_of_its_kind(tmp_path, kind, url, problem):
    extra = ", secret_env: S" if kind == "webhook" else ""
    config = make_config(tmp_path, f"    - {{id: c, kind: {kind}, url_env: U{extra}}}")
    environ = {"U": url, "S": "s3cret-value"}
    if problem is None:
        channel = resolve(config.alerts.channels[0], "en", environ)
        assert url not in repr(channel) and url not in str(channel.url)
        return
    with pytest.raises(ChannelError) as caught:
        resolve(config.alerts.channels[0], "en", environ)
    assert problem in str(caught.value) and url not in str(caught.value)
    assert "the URL in U is" in str(caught.value)


def test_a_missing_variable_or_file_says_which(tmp_path):
    config = make_config(
        tmp_path,
        "    - {id: env, kind: ntfy, url_env: LW_NOT_SET}\n"
        f"    - {{id: file, kind: ntfy, url_file: '{tmp_path / 'none'}'}}",
    )
    with pytest.raises(
        ChannelError, match="channel 'env': environment variable LW_NOT_SET is not set"
    ):
        resolve(config.alerts.channels[0], "en", {})
    with pytest.raises(ChannelError, match=r"channel 'file': cannot read .*none"):
        resolve(config.alerts.channels[1], "en", {})
    (tmp_path / "none").write_text("ntfys://ntfy.bank.example/lobby\n")
    assert resolve(config.alerts.channels[1], "en", {}).url == Secret(
        "ntfys://ntfy.bank.example/lobby"
    )


def test_redaction_takes_out_every_part_that_gives_a_secret_away():
    url = "dingtalk://SEC8e3f0c1d2b4a@6f2bd8a6c2c34a4b/?to=13800138000"
    parts = secret_parts([url, "mailtos://lobby:Pa55-word@smtp.bank.example?to=x@bank.example"])
    text = "failed: SEC8e3f0c1d2b4a / 6f2bd8a6c2c34a4b / Pa55-word / Pa55%2Dword, smtp.bank.example"
    assert redact(text, parts) == "failed: *** / *** / *** / Pa55%2Dword, smtp.bank.example"
