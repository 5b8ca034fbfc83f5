"""Head office (issue 16, docs/central.md): every branch's history in one place.

Owns the central store (PostgreSQL, store.py); later the ingestion service and the head-office
API. May import edge's data types; edge never imports central.
"""
