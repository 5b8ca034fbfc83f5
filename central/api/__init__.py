"""The head-office API (docs/central.md, "Head-office API"): every branch's history, read.

The device's /v1 shapes with a `site` dimension, and fleet reports across branches, from the
central store (central/store.py). The device's key model (api/auth.py: bearer keys hashed in
the config, roles, constant-time comparison, failed attempts limited), with regions: a key
sees only its regions' branches. May import api/ (its auth and range helpers), edge/ and
central/; nothing imports it but the CLI.
"""

from central.api.app import create_app
from central.api.server import run_api

__all__ = ["create_app", "run_api"]
