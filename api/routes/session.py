"""Browser logins with an API key: a session cookie (docs/ui.md 1)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
