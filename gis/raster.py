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

import os
import threading
from pathlib import Path
from typing import Sequence

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from exactextract import exact_extract
from pyproj import Transformer
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.errors import AnalysisError
from layers.settings import REPO_ROOT

SMALL = 64  # up to this many geometries per call are handed to exactextract as GeoJSON features


def raster_path(conn: Connection, name: str) -> Path | None:
    """Path of the raster registered as ``name`` (None when none is registered).

    A relative path in the ``rasters`` table is taken relative to the repository root.
    """
    row = conn.execute(text("SELECT path FROM rasters WHERE name = :n"), {"n": name}).first()
    return None if row is None else registered_path(row.path)


def registered_path(value: str) -> Path:
    """A ``rasters.path`` value as a path (a relative one is relative to the repository root)."""
    path = Path(value)
    return path if path.is_absolute() else REPO_ROOT / path


class _Opened:
    """A raster opened by one thread, with the transformers into its CRS (GDAL handles and PROJ
    transformers are not shared between threads)."""

    def __init__(self, path: Path, stamp: int):
        try:
            self.src = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise AnalysisError(f"cannot read raster {path}: {exc}") from exc
        self.stamp, self.transformers = stamp, {}

    def transformer(self, crs: str) -> Transformer:
        if crs not in self.transformers:
            self.transformers[crs] = Transformer.from_crs(crs, self.src.crs, always_xy=True)
        return self.transformers[crs]


_per_thread = threading.local()


def _opened(path: Path) -> _Opened:
    """``path`` opened once per thread, and again when the file changes (opening costs more than
    summing a few zones)."""
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise AnalysisError(f"cannot read raster {path}: {exc}") from exc
    cache = _per_thread.__dict__.setdefault("rasters", {})
    hit = cache.get(path)
    if hit is None or hit.stamp != stamp:
        if hit is not None:
            hit.src.close()
        hit = cache[path] = _Opened(path, stamp)
    return hit


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
    raster = _opened(Path(path))
    tr = raster.transformer(crs)
    moved = shapely.transform(np.asarray([geometries[i] for i in keep], dtype=object),
                              lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
    if len(keep) <= SMALL:  # a few zones (an incident): plain GeoJSON features cost least
        feats = [{"type": "Feature", "properties": {"i": i}, "geometry": mapping(g)} for i, g in zip(keep, moved)]
        rows = [(f["properties"]["i"], f["properties"]["sum"])
                for f in exact_extract(raster.src, feats, ["sum"], include_cols=["i"])]
    else:  # many (rings of every installation): exactextract reads a GeoDataFrame faster
        frame = gpd.GeoDataFrame({"i": keep}, geometry=moved, crs=raster.src.crs)
        result = exact_extract(raster.src, frame, ["sum"], include_cols=["i"], output="pandas")
        rows = zip(result["i"], result["sum"])
    for i, value in rows:
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
