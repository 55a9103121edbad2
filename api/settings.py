"""HTTP-side settings (environment variables prefixed ``RISKMAP_``)."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


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
    center: tuple[float, float] = (102.71, 25.04)
    zoom: int = 10
