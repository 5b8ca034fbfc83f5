"""The supervisor REST API (FastAPI): occupancy now and in the past, alerts, health, metrics.

Imports from edge/ (config, store, types); edge/ never imports it. See api/README.md.
"""
