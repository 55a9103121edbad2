"""HTTP-side settings (environment variables prefixed ``RISKMAP_``), checked when read like the store's
(``layers/settings.py``): the log level, and a start view inside the area box."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from layers.settings import StoreSettings, numbers

LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RISKMAP_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "info"
    # Basemap tile URL template ({z}/{x}/{y}); empty = no basemap (the map works offline without one).
    basemap_url: str | None = None
    basemap_attribution: str = ""
    default_limit: int = 100
    max_limit: int = 10000
    title_zh: str = "危险化学品安全风险一张图"
    title_en: str = "Hazardous-chemicals safety risk one-map"
    center: Annotated[tuple[float, float], NoDecode] = (102.71, 25.04)
    zoom: int = 10

    @field_validator("log_level")
    @classmethod
    def _check_level(cls, level: str) -> str:
        if level.lower() not in LOG_LEVELS:
            raise ValueError(f"日志级别应为 / must be one of {', '.join(LOG_LEVELS)}: {level!r}")
        return level.lower()

    @field_validator("center", mode="before")
    @classmethod
    def _parse_center(cls, value: Any) -> Any:
        return numbers(value)

    @model_validator(mode="after")
    def _center_in_area(self) -> "ApiSettings":
        from layers.crs import in_box

        box = StoreSettings().area_bbox
        if not in_box(*self.center, box):
            raise ValueError(f"地图中心 RISKMAP_CENTER={list(self.center)} 不在区域范围 RISKMAP_AREA_BBOX 内"
                             f"（应为 [经度,纬度]）/ the map centre RISKMAP_CENTER={list(self.center)} is outside the area "
                             f"box RISKMAP_AREA_BBOX={list(box)} (it is [lon,lat], not [lat,lon])")
        return self
