"""A camera's latest frame and what the detector found in it, for admins (docs/ui.md 3)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter()
