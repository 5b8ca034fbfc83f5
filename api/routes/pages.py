"""The supervisor's and IT's pages: login, dashboard, zone editor (docs/ui.md 1, 2)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
