"""Run the head-office API with uvicorn: `lobbywatch central api` calls run_api."""

from __future__ import annotations

import logging
import sys
from typing import Any

from central.config import CentralConfig


def run_api(config: CentralConfig) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes the requests in flight, then returns).
    The API only reads: the schema is the ingestion's to migrate (until then /v1/health says
    so and the routes answer 503)."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from central.api.app import create_app
    from central.store import CentralStore

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stores = [CentralStore(config.database.dsn) for _ in range(config.api.connections)]
    try:
        server = uvicorn.Server(
            uvicorn.Config(create_app(config, stores), **uvicorn_options(config))
        )
        server.run()
    finally:
        for store in stores:
            store.close()
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def uvicorn_options(config: CentralConfig) -> dict[str, Any]:
    """As the device's (api/server.py): X-Forwarded-For is never believed (central.yaml names
    no proxy), no server header, the logging set up here; https with api.tls."""
    options: dict[str, Any] = {
        "host": config.api.host,
        "port": config.api.port,
        "log_config": None,
        "server_header": False,
        "proxy_headers": False,
        "forwarded_allow_ips": [],
    }
    tls = config.api.tls
    if tls.cert_file is not None and tls.key_file is not None:
        options["ssl_certfile"] = str(tls.cert_file)
        options["ssl_keyfile"] = str(tls.key_file)
    return options
