"""Raster helpers shared by the analyses: area-weighted sums of a registered grid over polygons.

A grid (population, DEM, ...) is a GeoTIFF registered by name in the ``rasters`` table (path, CRS,
units). :func:`population_in` adds up the cells under each polygon, each cell weighted by the
share of its area inside the polygon (exactextract's coverage fraction), so a zone that cuts a
100 m cell in half counts half of its people. Nodata cells count as zero.

Used by the emergency zones (``gis/emergency.py``); the hazchem exposure and tailings analyses can
call it the same way.

>>> from shapely.geometry import box
>>> population_in("/path/to/population.tif", [box(102.70, 25.03, 102.72, 25.05)])  # doctest: +SKIP
[12345.6]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import geopandas as gpd
import rasterio
from exactextract import exact_extract
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.errors import AnalysisError
from layers.settings import REPO_ROOT


def raster_path(conn: Connection, name: str) -> Path | None:
    """Path of the raster registered as ``name`` (None when none is registered).

    A relative path in the ``rasters`` table is taken relative to the repository root.
    """
    row = conn.execute(text("SELECT path FROM rasters WHERE name = :n"), {"n": name}).first()
    if row is None:
        return None
    path = Path(row.path)
    return path if path.is_absolute() else REPO_ROOT / path


def zonal_sum(path: str | Path, geometries: Sequence[BaseGeometry], crs: str = "EPSG:4326") -> list[float]:
    """Coverage-weighted sum of the raster at ``path`` under each geometry (given in ``crs``).

    Parameters
    ----------
    path : str or Path
        A single-band GeoTIFF.
    geometries : sequence of shapely geometries
        Polygons (or multipolygons); empty or None geometries sum to 0.
    crs : str
        CRS of ``geometries`` (default WGS84 lon/lat); they are reprojected to the raster's CRS.

    Returns
    -------
    list of float
        One sum per geometry, in the raster's units (people for the population grid).
    """
    out = [0.0] * len(geometries)
    keep = [i for i, g in enumerate(geometries) if g is not None and not g.is_empty]
    if not keep:
        return out
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise AnalysisError(f"cannot read raster {path}: {exc}") from exc
    with src:
        frame = gpd.GeoDataFrame({"i": keep}, geometry=[geometries[i] for i in keep], crs=crs).to_crs(src.crs)
        result = exact_extract(src, frame, ["sum"], include_cols=["i"], output="pandas")
    for i, value in zip(result["i"], result["sum"]):
        out[int(i)] = float(value) if value == value else 0.0  # NaN (no cells) -> 0
    return out


def population_in(conn_or_path: Connection | str | Path, geometries: Sequence[BaseGeometry],
                  name: str = "population", crs: str = "EPSG:4326") -> list[float] | None:
    """People inside each geometry from the population grid (area-weighted; see module docstring).

    Parameters
    ----------
    conn_or_path : Connection, str or Path
        A database connection (the raster registered as ``name`` is used) or a GeoTIFF path.
    geometries : sequence of shapely geometries
        Zones, in ``crs`` (default lon/lat WGS84).
    name : str
        Registered raster name (default ``population``: people per cell).
    crs : str
        CRS of the geometries.

    Returns
    -------
    list of float or None
        People per geometry, or None when ``conn_or_path`` is a connection and no such raster is
        registered (the caller reports "no population grid" rather than zero people).
    """
    if isinstance(conn_or_path, Connection):
        path = raster_path(conn_or_path, name)
        if path is None:
            return None
    else:
        path = Path(conn_or_path)
    return zonal_sum(path, geometries, crs)
