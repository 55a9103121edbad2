"""Registered rasters and area-weighted sums of a grid over polygons.

A grid (population, DEM, ...) is a GeoTIFF registered by name in the ``rasters`` table (path, CRS,
units, ``synthetic``). :func:`registered` finds one: a path-like :class:`Registered` that also says
whether the grid is generated, so that results computed from it can be flagged synthetic.
:func:`zonal_sum` adds up the cells under each polygon, each cell weighted by the share of its area
inside the polygon (exactextract's coverage fraction), so a zone that cuts a 100 m cell in half
counts half of its people. Nodata cells count as zero.

Used by the hazchem analyses (α and the exposure rings, ``gis/hazchem.py``), the tailings head-top
analysis (the DEM and the people downstream, ``gis/tailings.py``) and the emergency zones
(``gis/emergency.py``, which reads the registration in its own first query), each through
:func:`zonal_sum`.

>>> from shapely.geometry import box
>>> zonal_sum("/path/to/population.tif", [box(102.70, 25.03, 102.72, 25.05)])  # doctest: +SKIP
[12345.6]
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import geopandas as gpd
import numpy as np
import rasterio
from exactextract import exact_extract
from pyproj import Transformer
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Connection, text

from gis.errors import AnalysisError
from layers.crs import reproject
from layers.settings import REPO_ROOT

SMALL = 64  # up to this many geometries per call are handed to exactextract as GeoJSON features


# What a result computed from a generated grid says about it (answers, notes, stats).
SYNTHETIC_NOTES = {
    "population": "人口来自合成栅格 / population from a synthetic grid",
    "dem": "下游路径来自合成高程模型 / downstream path from a synthetic DEM",
}


@dataclass(frozen=True)
class Registered(os.PathLike):
    """A raster registered in the ``rasters`` table: usable wherever a path is (``os.fspath``),
    with its name and whether it is generated (``synthetic``: results computed from it are too)."""

    name: str
    path: Path
    synthetic: bool

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def note(self) -> str | None:
        """The bilingual note a result computed from this raster carries, when it is synthetic."""
        return SYNTHETIC_NOTES.get(self.name, f"{self.name}: 合成栅格 / synthetic grid") if self.synthetic else None


def registered(conn: Connection, name: str) -> Registered | None:
    """The raster registered as ``name`` (None when none is registered).

    A relative path in the ``rasters`` table is taken relative to the repository root.
    """
    row = conn.execute(text("SELECT path, synthetic FROM rasters WHERE name = :n"), {"n": name}).first()
    return None if row is None else Registered(name, registered_path(row.path), bool(row.synthetic))


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
    path : str, Path or Registered
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
    moved = reproject(np.asarray([geometries[i] for i in keep], dtype=object), raster.transformer(crs))
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
