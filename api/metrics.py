"""Prometheus metrics (one registry per app, served at /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("riskmap_http_requests_total", "HTTP requests", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("riskmap_http_request_seconds", "HTTP request latency", ["route"],
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
                                 registry=self.registry)
        self.tile_cache = Counter("riskmap_tile_cache_total", "Tile cache lookups", ["result"], registry=self.registry)
        self.tile_truncated = Counter("riskmap_tiles_truncated_total", "Tiles whose feature cap was hit", ["layer"],
                                      registry=self.registry)
        self.pool = Gauge("riskmap_db_pool_connections", "Database pool connections", ["state"], registry=self.registry)
        self.database_up = Gauge("riskmap_database_up", "1 while the server follows the database's changes "
                                 "(its listening connection is up), else 0", registry=self.registry)
