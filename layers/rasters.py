"""Registering the grids the analyses read (table ``rasters``): the demo's and an operator's
(``riskmap rasters add``). Reading them is :mod:`gis.raster`'s."""

from __future__ import annotations

from pathlib import Path

import rasterio
from rasterio.warp import transform_bounds
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from layers import models
from layers.errors import DataError

# The rasters analyses read, by name: population (people per cell: hazchem α and exposure rings, emergency
# zones, people downstream of tailings ponds) and dem (metres: downstream paths of tailings ponds).
RASTER_KINDS = {"population": ("人口格网", "Population grid", "people per cell"),
                "dem": ("数字高程模型", "Elevation model", "m")}


def raster_row(kind: str, path: Path, area: tuple[float, float, float, float], synthetic: bool = False,
               source: str | None = None) -> dict:
    """The ``rasters`` row registering an operator's GeoTIFF (``riskmap rasters add``), once it is checked:
    a known kind, a single-band raster rasterio opens, with a CRS, overlapping the area box, and (population)
    no value below 0 outside nodata. The file is referenced where it is (absolute path), like the demo's."""
    if kind not in RASTER_KINDS:
        raise DataError(f"unknown raster kind {kind!r}; kinds: {', '.join(RASTER_KINDS)}",
                        zh=f"未知栅格类型 {kind!r}；可用：{', '.join(RASTER_KINDS)}")
    path = Path(path).resolve()
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"cannot open {path} as a raster: {exc}", zh=f"无法以栅格打开 {path}") from None
    with src:
        if src.crs is None:
            raise DataError(f"{path.name} has no CRS: write one into it (e.g. gdal_edit.py -a_srs EPSG:4544 FILE)",
                            zh=f"{path.name} 没有坐标系：请先写入（如 gdal_edit.py -a_srs EPSG:4544 文件）")
        if src.count != 1:
            raise DataError(f"{path.name} has {src.count} bands; a {kind} raster has one",
                            zh=f"{path.name} 有 {src.count} 个波段，{kind} 栅格应只有一个")
        west, south, east, north = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        if west > area[2] or east < area[0] or south > area[3] or north < area[1]:
            raise DataError(f"{path.name} covers [{west:.3f},{south:.3f},{east:.3f},{north:.3f}], outside the area box "
                            f"RISKMAP_AREA_BBOX={list(area)}",
                            zh=f"{path.name} 的范围不在区域范围 RISKMAP_AREA_BBOX 内")
        if kind == "population":  # (block by block: a national grid need not fit in memory)
            negative = sum(int((src.read(1, window=w, masked=True) < 0).sum()) for _, w in src.block_windows(1))
            if negative:
                raise DataError(f"{path.name} holds negative people in {negative} cells; make them nodata or 0",
                                zh=f"{path.name} 有 {negative} 个格的人口为负值：请设为无数据或 0")
        crs = src.crs.to_string()
    title_zh, title_en, units = RASTER_KINDS[kind]
    return dict(name=kind, title_zh=title_zh, title_en=title_en, path=str(path), crs=crs, units=units,
                synthetic=synthetic, source=source or f"{path.name} (riskmap rasters add)")


def register_raster(conn: Connection, row: dict) -> str | None:
    """Register ``row`` in ``rasters`` by its name, replacing a raster of that name; returns the path it replaced."""
    table = models.Raster.__table__
    before = conn.execute(select(table.c.path).where(table.c.name == row["name"])).scalar()
    stmt = pg_insert(table).values(**row)
    conn.execute(stmt.on_conflict_do_update(index_elements=[table.c.name],
                                            set_={k: stmt.excluded[k] for k in row if k != "name"}
                                            | {"updated_at": func.now()}))
    return before
