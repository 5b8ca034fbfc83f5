"""The head office's config, `central.yaml` (docs/central.md, "Config").

One file for the ingestion service and the head-office API: where the broker and the database
are, the API's keys with their roles and regions, and which branches make up each region.
Secrets come from the environment (`${VAR}` references, as in the site config), never from the
file. Read with edge.config.read_model: the same limits and error messages as a site config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

from pydantic import Field, model_validator

from edge.config import ApiKeyConfig, ApiTlsConfig, Id, _Strict, read_model

#: The environment variable with the config file's path (`--config` wins).
CONFIG_ENV = "LOBBYWATCH_CENTRAL_CONFIG"
#: A key's regions: "*" is every branch, whether or not it is in a region.
ALL_REGIONS = "*"

Region = Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9][A-Za-z0-9_.-]{0,63})$")]


class DatabaseConfig(_Strict):
    dsn: str = Field(
        description="libpq connection string or URI, e.g. ${LOBBYWATCH_CENTRAL_DSN}: keep the "
        "password in the environment"
    )


class BrokerConfig(_Strict):
    """The central NATS cluster (JetStream) that the branches' bridges publish into."""

    servers: list[str] = Field(
        min_length=1, description="Every node's client URL, nats://host:4222 (tls:// for TLS)"
    )
    user: str | None = Field(None, description="NATS user of the ingestion service")
    password: str | None = Field(None, description="Its password: ${VAR}, never in the file")
    ca_file: Path | None = Field(None, description="CA of the cluster's certificates (TLS)")
    stream: str = Field("LOBBYWATCH", pattern=r"^[A-Za-z0-9_-]{1,32}$")
    topic_prefix: str = Field(
        "lobbywatch",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="The branches' mqtt.topic_prefix (one level): subjects <prefix>.<site>...",
    )
    consumer: str = Field(
        "central-ingest",
        pattern=r"^[A-Za-z0-9_-]{1,32}$",
        description="Durable pull consumer shared by every ingestion instance (the group)",
    )
    replicas: int = Field(3, ge=1, le=5, description="Stream replicas: 3 on a 3-node cluster")
    max_age_days: float = Field(
        7, gt=0, le=365, description="How long the stream keeps a message the store never took"
    )


class IngestConfig(_Strict):
    batch: int = Field(500, ge=1, le=10_000, description="Messages fetched and stored at once")
    ack_wait_s: float = Field(
        30, ge=1, le=3600, description="Redelivered to another instance if not acked in time"
    )
    status_interval_s: float = Field(60, ge=1, description="Seconds between status log lines")


class CentralKeyConfig(ApiKeyConfig):
    """A head-office API key: the device's roles, limited to some regions."""

    regions: list[Region] = Field(
        default_factory=lambda: [ALL_REGIONS],
        min_length=1,
        description="Regions whose branches the key sees; * for every branch",
    )


class CentralApiConfig(_Strict):
    host: str = Field("127.0.0.1", description="Listen address")
    port: int = Field(8090, ge=1, le=65535)
    tls: ApiTlsConfig = Field(default_factory=ApiTlsConfig)
    keys: list[CentralKeyConfig] = Field(default_factory=list)
    connections: int = Field(
        4, ge=1, le=64, description="Database connections: queries the API runs at once"
    )


class RetentionConfig(_Strict):
    intervals: int = Field(400, ge=1, description="Days of occupancy intervals and queue waits")
    alert_events: int = Field(730, ge=1, description="Days of alert lifecycle events")
    health: int = Field(90, ge=1, description="Days of camera health")


class CentralConfig(_Strict):
    database: DatabaseConfig
    broker: BrokerConfig
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    api: CentralApiConfig = Field(default_factory=CentralApiConfig)
    regions: dict[Id, list[Id]] = Field(
        default_factory=dict, description="Region id -> the site ids of its branches"
    )
    retention_days: RetentionConfig = Field(default_factory=RetentionConfig)
    offline_after_s: float = Field(
        900, ge=60, description="A branch heard from longer ago than this is reported offline"
    )

    @model_validator(mode="after")
    def _known_regions(self) -> CentralConfig:
        ids = [key.id for key in self.api.keys]
        if len(ids) != len(set(ids)):
            raise ValueError("api.keys: two keys have the same id")
        for key in self.api.keys:
            unknown = [r for r in key.regions if r != ALL_REGIONS and r not in self.regions]
            if unknown:
                raise ValueError(f"api.keys {key.id!r}: unknown region(s) {unknown}")
        return self

    def sites_of(self, regions: list[str]) -> frozenset[str] | None:
        """The site ids a key with `regions` may see; None for every site."""
        if ALL_REGIONS in regions:
            return None
        return frozenset(site for r in regions for site in self.regions.get(r, []))


def load_central_config(
    path: Path | str | None = None, environ: Mapping[str, str] | None = None
) -> CentralConfig:
    environ = os.environ if environ is None else environ
    if path is None:
        if CONFIG_ENV not in environ:
            raise FileNotFoundError(f"no config: give --config or set {CONFIG_ENV}")
        path = environ[CONFIG_ENV]
    return read_model(path, CentralConfig, environ)
