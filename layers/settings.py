"""Settings for the store (environment variables prefixed ``RISKMAP_``, plus ``DATABASE_URL``).

Each is checked when read (a bad value is a ``pydantic.ValidationError`` whose message says, in Chinese
and English, what is wrong; the CLI prints it as one line): the area box, and whether the metric CRS's
zone covers it.
"""

from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# China Standard Time (Beijing time, UTC+8): times without an offset (departures, readings, query bounds) are
# read in it, and duty logs, reports and time-window bans are in it.
LOCAL_TZ = ZoneInfo("Asia/Shanghai")
# How far (degrees of longitude or latitude) the area box may reach beyond the area of use of the metric CRS
# before a warning: a Transverse Mercator zone's scale error grows with the square of the distance from its
# central meridian and is still under 0.1 % 1° outside a 3-degree zone.
ZONE_MARGIN_DEG = 1.0
log = logging.getLogger("riskmap.settings")
_warned: set[str] = set()


def numbers(value: Any) -> Any:
    """A list setting as JSON (``[102.1,24.35,103.7,26.6]``) or a plain comma list (``102.1,24.35,103.7,26.6``)."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    try:
        return json.loads(text) if text.startswith("[") else [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"不是数字列表 / not a list of numbers: {value!r} (e.g. [102.1,24.35,103.7,26.6])") from None


def cgcs2000_zone(lon: float) -> int | None:
    """EPSG code of the CGCS2000 3-degree Gauss-Krüger zone (EPSG:4534 CM 75°E ... EPSG:4554 CM 135°E) for ``lon``."""
    cm = 3 * round(lon / 3)
    return 4534 + (cm - 75) // 3 if 75 <= cm <= 135 else None


@cache
def _crs(epsg: int):
    import pyproj

    return pyproj.CRS.from_epsg(epsg)


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
    area_bbox: Annotated[tuple[float, float, float, float], NoDecode] = (102.10, 24.35, 103.70, 26.60)
    pool_size: int = 10

    @property
    def cluster_dir(self) -> Path:
        return self.data_dir / "pgcluster"

    @field_validator("area_bbox", mode="before")
    @classmethod
    def _parse_box(cls, value: Any) -> Any:
        return numbers(value)

    @field_validator("area_bbox")
    @classmethod
    def _check_box(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        west, south, east, north = box
        if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
            raise ValueError(f"区域范围应为 [最小经度,最小纬度,最大经度,最大纬度]，且最小值小于最大值 / must be "
                             f"[min_lon,min_lat,max_lon,max_lat] in degrees with min < max: {list(box)}")
        return box

    @model_validator(mode="after")
    def _metric_zone_covers_box(self) -> "StoreSettings":
        """Refuse a metric CRS whose area of use misses the box; warn when the box reaches more than
        :data:`ZONE_MARGIN_DEG` beyond it, or when PROJ gives no area of use (distances may be distorted)."""
        from layers.crs import METRIC_EPSG  # (a CRS that is not Transverse Mercator in metres is refused there)

        crs, box = _crs(METRIC_EPSG), self.area_bbox
        aou, zone = crs.area_of_use, cgcs2000_zone((box[0] + box[2]) / 2)
        hint = f"EPSG:{zone}" if zone else "UTM"
        if aou is None:
            warning = (f"注意：无法核对 RISKMAP_METRIC_EPSG={METRIC_EPSG} 是否覆盖区域范围（PROJ 未给出适用范围）/ warning: "
                       f"cannot check that RISKMAP_METRIC_EPSG={METRIC_EPSG} ({crs.name}) covers the area box: PROJ "
                       "gives no area of use for it")
        else:
            where = (f"RISKMAP_METRIC_EPSG={METRIC_EPSG} ({crs.name}: {aou.west:g}..{aou.east:g}°E, "
                     f"{aou.south:g}..{aou.north:g}°N)")
            if box[0] > aou.east or box[2] < aou.west or box[1] > aou.north or box[3] < aou.south:
                raise ValueError(f"{where} 的分带不覆盖区域范围 RISKMAP_AREA_BBOX={list(box)}，请改用本市分带（如 {hint}，"
                                 f"须在首次 migrate 之前设定）/ the zone of {where} does not cover the area box "
                                 f"RISKMAP_AREA_BBOX={list(box)}: use the city's zone, e.g. {hint} (set before the "
                                 "database is first migrated)")
            beyond = max(aou.west - box[0], box[2] - aou.east, aou.south - box[1], box[3] - aou.north)
            warning = None if beyond <= ZONE_MARGIN_DEG else (
                f"注意：{where} 只覆盖区域范围 {list(box)} 的一部分，远离分带处的距离和面积会失真（本市分带如 {hint}）/ "
                f"warning: the area box {list(box)} reaches {beyond:.1f}° beyond the zone of {where}, where "
                f"distances and areas are distorted (the city's zone is e.g. {hint})")
        if warning and warning not in _warned:  # (once a process: settings are read by every command)
            _warned.add(warning)
            log.warning(warning)
        return self


class MetricCRSSetting(BaseSettings):
    """``RISKMAP_METRIC_EPSG``: the projected CRS in which distances, buffers and areas are computed
    (:data:`layers.crs.METRIC_EPSG`), read on its own so that importing :mod:`layers.crs` reads nothing else."""

    model_config = SettingsConfigDict(env_prefix="RISKMAP_", env_file=".env", extra="ignore")

    metric_epsg: int = 4543  # CGCS2000 / 3-degree Gauss-Kruger CM 102E: Kunming
