"""The API's interactive documentation from bundled assets, no CDN (docs/ui.md 4)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
