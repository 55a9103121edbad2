"""Settings for the store (environment variables prefixed ``RISKMAP_``, plus ``DATABASE_URL``)."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# China Standard Time (Beijing time, UTC+8): times without an offset (departures, readings, query bounds) are
# read in it, and duty logs, reports and time-window bans are in it.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")


class StoreSettings(BaseSettings):
    """Where the data lives.

    With no ``DATABASE_URL`` the embedded PostgreSQL cluster under ``data_dir/pgcluster`` is used.
    """

    model_config = SettingsConfigDict(env_prefix="RISKMAP_", env_file=".env", extra="ignore")

    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "RISKMAP_DATABASE_URL")
    )
    data_dir: Path = REPO_ROOT / "data"
    embedded_port: int = 54329
    # OS user that runs the embedded cluster when we are root (postgres refuses to run as root).
    pg_os_user: str = "postgres"
    # Area of interest (lon/lat): imported geometries outside it are rejected as out of area.
    area_bbox: tuple[float, float, float, float] = (102.10, 24.35, 103.70, 26.60)
    pool_size: int = 10

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "pgcluster"


class MetricCRSSetting(BaseSettings):
    """``RISKMAP_METRIC_EPSG``: the projected CRS in which distances, buffers and areas are computed
    (:data:`layers.crs.METRIC_EPSG`), read on its own so that importing :mod:`layers.crs` reads nothing else."""

    model_config = SettingsConfigDict(env_prefix="RISKMAP_", env_file=".env", extra="ignore")

    metric_epsg: int = 4543  # CGCS2000 / 3-degree Gauss-Kruger CM 102E: Kunming
