"""Run the API with uvicorn: `lobbywatch api --config FILE` and `python -m api --config FILE`."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from api.app import create_app
from edge.config import LobbyConfig


def serve(
    config: LobbyConfig,
    host: str | None = None,
    port: int | None = None,
    *,
    config_path: Path | None = None,
) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes the requests in flight, then returns).
    config_path: the file `config` came from (the zone editor saves into it)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    app = create_app(config, config_path=config_path)
    server = uvicorn.Server(uvicorn.Config(app, **uvicorn_options(config, host, port)))
    # uvicorn waits for the requests in flight before it stops: the alert streams, which never
    # finish, end themselves once it wants to stop (api/stream.py).
    app.state.stopping = lambda: server.should_exit
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run does


def uvicorn_options(config: LobbyConfig, host: str | None, port: int | None) -> dict[str, Any]:
    """uvicorn's settings for `config`. uvicorn by default believes X-Forwarded-For from
    127.0.0.1 (and $FORWARDED_ALLOW_IPS): any local client, or anyone through a local proxy
    that passes the header on, could then pick the address its failed keys are counted under.
    Here it reads the header only with api.trusted_proxies configured, from exactly those."""
    proxies = list(config.api.trusted_proxies)
    options: dict[str, Any] = {
        "host": host or config.api.host,
        "port": port or config.api.port,
        "log_config": None,  # keep the logging set up above; access lines carry no headers
        "server_header": False,
        "proxy_headers": bool(proxies),
        "forwarded_allow_ips": proxies,
    }
    tls = config.api.tls
    if tls.cert_file is not None and tls.key_file is not None:  # https (the phone app needs it)
        options["ssl_certfile"] = str(tls.cert_file)
        options["ssl_keyfile"] = str(tls.key_file)
    return options
