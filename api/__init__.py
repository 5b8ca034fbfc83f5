"""Supervisor REST API (FastAPI). Reads the edge store; built in a later issue."""
