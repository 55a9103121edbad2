"""Coordinate reference systems: EPSG codes via pyproj, and the Chinese web offsets GCJ-02 and BD-09.

GCJ-02 (used by AMap/高德, Tencent, DataV) is WGS84 plus an obfuscating offset of a few hundred
metres; BD-09 (Baidu) is a further transform of GCJ-02. Neither is an EPSG CRS. The forward formula
is public; the inverse is solved by fixed-point iteration to well under a millimetre.

>>> lon, lat = wgs84_to_gcj02(116.404, 39.915)
>>> round(float(lon), 6), round(float(lat), 6)
(116.410244, 39.916404)
>>> lon, lat = gcj02_to_wgs84(*wgs84_to_gcj02(102.71, 25.04))
>>> round(float(lon), 9), round(float(lat), 9)
(102.71, 25.04)
"""

from __future__ import annotations

import numpy as np
import pyproj
import shapely
from pyproj.exceptions import CRSError

from layers.errors import CRSInputError
from layers.settings import MetricCRSSetting

_A = 6378245.0  # Krasovsky 1940 semi-major axis used by the GCJ-02 formula
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0


def _metric_epsg(epsg: int) -> int:
    """``epsg`` if it is a Transverse Mercator CRS in metres (what :mod:`gis.tmerc` computes), else ValueError."""
    try:
        crs = pyproj.CRS.from_epsg(epsg)
    except CRSError:
        raise ValueError(f"RISKMAP_METRIC_EPSG={epsg} is not an EPSG code PROJ knows") from None
    op = crs.coordinate_operation
    if not crs.is_projected or op is None or op.method_name != "Transverse Mercator" \
            or any(a.unit_name != "metre" for a in crs.axis_info):
        raise ValueError(f"RISKMAP_METRIC_EPSG={epsg} ({crs.name}) is not a Transverse Mercator CRS in metres: "
                         "use the city's Gauss-Krüger zone (CGCS2000 3-degree zones are EPSG:4534-4554) or UTM zone")
    return epsg


# The metric CRS of every distance, buffer and area (default CGCS2000 / 3-degree Gauss-Kruger CM 102E, for
# Kunming). Fixed when a database is first migrated: its metric columns and indexes are in it (layers.db).
METRIC_EPSG = _metric_epsg(MetricCRSSetting().metric_epsg)


def in_box(lon: float, lat: float, box: tuple[float, float, float, float]) -> bool:
    """Whether the point is inside (or on) the lon/lat box (min lon, min lat, max lon, max lat)."""
    return box[0] <= lon <= box[2] and box[1] <= lat <= box[3]


def _out_of_china(lon, lat):
    return (lon < 72.004) | (lon > 137.8347) | (lat < 0.8293) | (lat > 55.8271)


def _transform_lat(x, y):
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (160.0 * np.sin(y / 12.0 * np.pi) + 320 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0
    return ret


def _transform_lon(x, y):
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * np.sqrt(np.abs(x))
    ret += (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0
    ret += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    ret += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0
    return ret


def wgs84_to_gcj02(lon, lat):
    """WGS84 -> GCJ-02 (the public forward formula); points outside China are returned unchanged."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    dlat = _transform_lat(lon - 105.0, lat - 35.0)
    dlon = _transform_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * np.pi
    magic = 1 - _EE * np.sin(radlat) ** 2
    sqrtmagic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * np.cos(radlat) * np.pi)
    outside = _out_of_china(lon, lat)
    return np.where(outside, lon, lon + dlon), np.where(outside, lat, lat + dlat)


def gcj02_to_wgs84(lon, lat, tol: float = 1e-10, max_iter: int = 30):
    """GCJ-02 -> WGS84 by fixed-point iteration of the forward formula (error < 1e-9 degrees)."""
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    wlon, wlat = lon.copy(), lat.copy()
    for _ in range(max_iter):
        glon, glat = wgs84_to_gcj02(wlon, wlat)
        dlon, dlat = glon - lon, glat - lat
        wlon, wlat = wlon - dlon, wlat - dlat
        if np.all(np.abs(dlon) < tol) and np.all(np.abs(dlat) < tol):
            break
    return wlon, wlat


def gcj02_to_bd09(lon, lat):
    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    z = np.sqrt(lon * lon + lat * lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def bd09_to_gcj02(lon, lat):
    x = np.asarray(lon, dtype=float) - 0.0065
    y = np.asarray(lat, dtype=float) - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta), z * np.sin(theta)


def bd09_to_wgs84(lon, lat):
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def parse_source_crs(value: str | int | None) -> str:
    """Normalise a user-given source CRS: 'gcj02', 'bd09', or an 'EPSG:n' string pyproj accepts.

    >>> parse_source_crs("GCJ-02"), parse_source_crs("4490"), parse_source_crs(None)
    ('gcj02', 'EPSG:4490', 'EPSG:4326')
    """
    if value is None or value == "":
        return "EPSG:4326"
    text = str(value).strip().lower().replace("-", "").replace("_", "")
    if text in ("gcj02", "gcj", "mars", "amap"):
        return "gcj02"
    if text in ("bd09", "bd09ll", "baidu"):
        return "bd09"
    code = str(value).strip()
    if code.isdigit():
        code = f"EPSG:{code}"
    try:
        crs = pyproj.CRS.from_user_input(code)
    except CRSError as exc:
        raise CRSInputError(
            f"unknown source CRS {value!r}: use an EPSG code (e.g. 4326, 4490, 3857) or GCJ-02 / BD-09"
        ) from exc
    epsg = crs.to_epsg()
    return f"EPSG:{epsg}" if epsg else crs.to_wkt()


def _xy_func(source: str):
    if source == "gcj02":
        return gcj02_to_wgs84
    if source == "bd09":
        return bd09_to_wgs84
    transformer = pyproj.Transformer.from_crs(source, "EPSG:4326", always_xy=True)
    return transformer.transform


def to_wgs84(geometries, source: str):
    """Transform shapely geometries (array-like) from ``source`` (see parse_source_crs) to EPSG:4326."""
    source = parse_source_crs(source)
    geoms = np.asarray(geometries, dtype=object)
    if source == "EPSG:4326":
        return geoms
    func = _xy_func(source)

    def apply(coords):
        x, y = func(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    return shapely.transform(geoms, apply)


# WGS84 <-> the metric CRS (METRIC_EPSG, read when called), one cached pyproj transformer per pair.
_TRANSFORMERS: dict[tuple[int, int], pyproj.Transformer] = {}


def metric_transformer(inverse: bool = False) -> pyproj.Transformer:
    """The pyproj transformer (``always_xy``) from EPSG:4326 to :data:`METRIC_EPSG`, or back when
    ``inverse``; built once per EPSG pair (pyproj transformers may be shared between threads)."""
    key = (METRIC_EPSG, 4326) if inverse else (4326, METRIC_EPSG)
    if key not in _TRANSFORMERS:
        _TRANSFORMERS[key] = pyproj.Transformer.from_crs(*key, always_xy=True)
    return _TRANSFORMERS[key]


def reproject(geometries, transformer: pyproj.Transformer):
    """Shapely geometries (one, or array-like) through a pyproj transformer built with ``always_xy``."""
    return shapely.transform(geometries, lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1])))


def _metric_move(transformer: pyproj.Transformer, geoms_or_x, y):
    return reproject(geoms_or_x, transformer) if y is None else transformer.transform(geoms_or_x, y)


def to_metric(geoms_or_x, y=None):
    """EPSG:4326 -> :data:`METRIC_EPSG`: shapely geometries (one, or array-like), or lon/lat given as
    ``to_metric(lon, lat)`` (numbers or arrays; returns ``(x, y)``).

    >>> x, y = to_metric(102.71, 25.04)
    >>> lon, lat = from_metric(x, y)
    >>> round(float(lon), 9), round(float(lat), 9)
    (102.71, 25.04)
    """
    return _metric_move(metric_transformer(), geoms_or_x, y)


def from_metric(geoms_or_x, y=None):
    """:data:`METRIC_EPSG` -> EPSG:4326, the inverse of :func:`to_metric` (same arguments)."""
    return _metric_move(metric_transformer(inverse=True), geoms_or_x, y)
