"""Fill a branch's gap in the central store from the device's own API (docs/central.md,
"Device feed": backfill).

The device keeps its history, and its `GET /v1/occupancy/history?bucket=15m` answers exactly
the buckets its feed sends (the same code builds both), so a gap that outlived the bridge's
queue and the feed's catch-up (a replaced device, a disk restored from backup, a branch away
for longer than `central.catch_up_days`) is fetched over HTTPS with a viewer key and stored
under the same natural keys: what the centre already had stays as it was.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from central.messages import PREFIX, Rejected, parse
from central.simulate import iso
from central.store import Batch, CentralStore, utc

#: The device answers at most 90 days of 15m buckets at once; the gap is fetched in steps.
STEP = timedelta(days=30)
BUCKET = "15m"

Fetch = Callable[[str], Any]


class BackfillError(RuntimeError):
    pass


@dataclass(frozen=True)
class BackfillResult:
    buckets: int  # bucket messages built from the device's answer
    new_rows: int  # of which rows the store did not have


def http_fetch(base_url: str, key: str, ca_file: Path | None = None, timeout: float = 30) -> Fetch:
    """GET `base_url + path` with the viewer key, JSON back; https verified against
    `ca_file` (the branch's own CA) or the system's CAs."""
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)

    def fetch(path: str) -> Any:
        request = urllib.request.Request(
            base_url.rstrip("/") + path, headers={"Authorization": f"Bearer {key}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise BackfillError(f"the device answered {exc.code} for {path}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise BackfillError(f"the device did not answer {path}: {exc}") from None

    return fetch


def backfill(
    store: CentralStore, site: str, fetch: Fetch, start: datetime, end: datetime
) -> BackfillResult:
    """Store the device's 15-minute buckets of [start, end) for `site`."""
    start, end = utc("start", start), utc("end", end)
    if end <= start:
        raise ValueError(f"end {end} must be after start {start}")
    zones = fetch("/v1/zones")
    if zones.get("site_id") != site:
        raise BackfillError(f"the device is site {zones.get('site_id')!r}, not {site!r}")
    info = {z["id"]: (z["role"], z["camera_id"]) for z in zones["zones"]}
    buckets = new = 0
    at = start
    while at < end:
        stop = min(at + STEP, end)
        query = urllib.parse.urlencode({"bucket": BUCKET, "start": iso(at), "end": iso(stop)})
        document = fetch(f"/v1/occupancy/history?{query}")
        batch = Batch()
        for message in bucket_messages(site, document, info):
            try:
                parse(f"{PREFIX}.{site}.history.intervals", message, at, batch)
            except Rejected as exc:
                raise BackfillError(f"the device's answer is not a bucket: {exc}") from None
            buckets += 1
        new += store.ingest(batch).intervals
        at = stop
    return BackfillResult(buckets, new)


def bucket_messages(
    site: str, document: dict[str, Any], zones: dict[str, tuple[str, str]]
) -> list[bytes]:
    """The device's HistoryOut as the feed's `history/intervals` messages, one per bucket."""
    per_bucket: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for zone in document["zones"]:
        role, camera = zones[zone["zone_id"]]
        for point in zone["points"]:
            per_bucket.setdefault((point["start"], point["end"]), []).append(
                {
                    "zone": zone["zone_id"],
                    "role": role,
                    "camera": camera,
                    **{k: point[k] for k in ("mean", "max", "p90", "coverage", "samples")},
                }
            )
    return [
        json.dumps(
            {"v": 1, "site": site, "bucket": BUCKET, "start": s, "end": e, "zones": rows}
        ).encode()
        for (s, e), rows in sorted(per_bucket.items())
    ]
