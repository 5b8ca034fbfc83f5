"""Run the API with uvicorn: `lobbywatch api --config FILE` and `python -m api --config FILE`."""

from __future__ import annotations

import logging
import sys

from api.app import create_app
from edge.config import LobbyConfig


def serve(config: LobbyConfig, host: str | None = None, port: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM (uvicorn finishes the requests in flight, then returns)."""
    import uvicorn

    logging.basicConfig(
        level=config.logging.level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    app = create_app(config)
    uvicorn.run(
        app,
        host=host or config.api.host,
        port=port or config.api.port,
        log_config=None,  # keep the logging set up above; access lines carry no headers
        server_header=False,
    )
