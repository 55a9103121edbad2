"""Tailings head-top (头顶库) analysis and pond grade (等别); the ``tailings`` analysis.

For every tailings pond (except decommissioned 销库 ones):

1. **Dam toe.** ``toe_lon``/``toe_lat`` when given, else the lowest DEM cell on the pond outline.
2. **Downstream path.** The DEM around the toe is hydrologically conditioned and given D8 flow
   directions by ``pysheds`` (fill pits, fill depressions, resolve flats, D8); the path follows the
   flow directions from the toe cell until it is ``distance_m`` long (应急〔2020〕15号: 1 km from the
   starter-dam toe along the tailings flow path), or until it leaves the DEM (``truncated``).
3. **Zone.** The path buffered by ``corridor_m`` on each side, square at its ends (the zone runs from the toe
   to exactly ``distance_m`` along the path), less the pond itself (the metric CRS, ``layers.crs.METRIC_EPSG``).
4. **Contents.** Receptors, roads (and how many are major: expressway / national / provincial),
   hazard installations in the zone (PostGIS), and the people in it from the population grid
   (coverage-weighted sum, ``gis/raster.py``).
5. **Head-top.** A pond with residents (≥ ``min_people`` once the estimate is rounded to the whole number
   shown, or any receptor) or important facilities
   (a hazard installation or a major road) in its zone is a 头顶库.
6. **Grade.** 等别 from total capacity and dam height (AQ 2006-2005 table, combined as in GB 50863).

Results: derived layer ``tailings_downstream`` (one zone per pond with what is inside) and on
``tailings_ponds`` the ``headtop`` flag, ``grade`` and the ``downstream_*`` counts. A zone is
flagged ``synthetic`` when its pond, the DEM or the population grid used is generated (its
``contents.notes`` and the run's ``notes`` say which grid). Defaults and sources are in
docs/tailings-monitoring.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from pyproj import Transformer
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window, from_bounds
from shapely.geometry import LineString, Polygon
from shapely.ops import substring
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from gis.errors import AnalysisError
from gis.raster import registered, zonal_sum
from layers.crs import METRIC_EPSG, reproject, to_metric

METRIC = f"EPSG:{METRIC_EPSG}"
# pysheds D8 direction codes for (N, NE, E, SE, S, SW, W, NW) and the (row, col) step of each.
DIRMAP = (64, 128, 1, 2, 4, 8, 16, 32)
STEPS = {64: (-1, 0), 128: (-1, 1), 1: (0, 1), 2: (1, 1), 4: (1, 0), 8: (1, -1), 16: (0, -1), 32: (-1, -1)}


@dataclass(frozen=True)
class HeadTopSettings:
    """Parameters of the head-top analysis (defaults and their sources: docs/tailings-monitoring.md)."""

    distance_m: float = 1000.0        # 应急〔2020〕15号: 初期坝坡脚起至下游尾矿流经路径1公里
    corridor_m: float = 200.0         # half-width of the zone around the path (assumption, see docs)
    min_people: float = 1.0           # estimated residents that make a pond head-top
    major_roads: tuple[str, ...] = ("motorway", "trunk", "primary")  # 高速、国道、省道 = 重要设施
    margin_m: float = 3000.0          # DEM window around the toe beyond the path length (conditioning)


# ------------------------------------------------------------------------------------------- grade
# AQ 2006-2005 (and GB 50863-2013) grade table: 二等..五等 by total capacity V (10⁴ m³) and dam height H (m).
_V_LIMITS = ((10000.0, 2), (1000.0, 3), (100.0, 4))
_H_LIMITS = ((100.0, 2), (60.0, 3), (30.0, 4))


def _grade_by(value: float | None, limits) -> int | None:
    if value is None or not math.isfinite(value) or value < 0:
        return None
    return next((g for limit, g in limits if value >= limit), 5)


def pond_grade(capacity_10k_m3: float | None, dam_height_m: float | None) -> int | None:
    """等别 of a tailings pond from total capacity (10⁴ m³) and dam height (m).

    Each criterion gives a grade (二等 V ≥ 10000 or H ≥ 100; 三等 1000 ≤ V < 10000 or 60 ≤ H < 100;
    四等 100 ≤ V < 1000 or 30 ≤ H < 60; 五等 below). If the two grades are one apart the higher grade
    (smaller number) is taken; if more than one apart, the higher grade lowered by one (GB 50863).
    一等 needs an expert decision (a 二等 pond qualifying for upgrade) and is never computed here.

    >>> pond_grade(1500, 45)   # 三等 by capacity, 四等 by height: one apart -> 三等
    3
    >>> pond_grade(12000, 20)  # 二等 by capacity, 五等 by height: more than one apart -> 三等
    3
    >>> pond_grade(None, 65)
    3
    """
    gv, gh = _grade_by(capacity_10k_m3, _V_LIMITS), _grade_by(dam_height_m, _H_LIMITS)
    if gv is None or gh is None:
        return gv if gh is None else gh
    high = min(gv, gh)
    return high if abs(gv - gh) <= 1 else high + 1


# -------------------------------------------------------------------------------------- hydrology
def _open_metric(path: Path):
    """The DEM as a dataset in a metric CRS: as is when projected, else warped to :data:`METRIC_EPSG`."""
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise AnalysisError(f"cannot read DEM {path}: {exc}") from exc
    if src.crs is None:
        raise AnalysisError(f"DEM {path} has no CRS")
    if src.crs.is_projected:
        return src, src
    return src, WarpedVRT(src, crs=METRIC, resampling=rasterio.enums.Resampling.bilinear)


def flow_directions(dem: np.ndarray, transform) -> np.ndarray:
    """D8 flow directions (``DIRMAP`` codes; 0 nodata, -1 flat, -2 pit) of a conditioned DEM window.

    The DEM (NaN = nodata) is conditioned with pysheds: single-cell pits filled, depressions filled,
    flats resolved, so every valid cell drains to the window edge.
    """
    from pysheds.grid import Grid
    from pysheds.sview import Raster, ViewFinder

    view = ViewFinder(affine=transform, shape=dem.shape, nodata=np.nan)
    grid = Grid(viewfinder=view)
    raster = Raster(dem.astype("float64"), viewfinder=view)
    raster = grid.resolve_flats(grid.fill_depressions(grid.fill_pits(raster)))
    return np.asarray(grid.flowdir(raster, dirmap=DIRMAP))


def trace(fdir: np.ndarray, transform, x: float, y: float, distance_m: float) -> tuple[LineString, bool]:
    """Follow D8 directions from the cell holding (x, y) for ``distance_m`` (metric CRS of ``transform``).

    Returns the path (starting at (x, y) exactly, then cell centres, cut at ``distance_m``) and
    whether it stopped short (left the window, reached nodata or a sink).
    """
    row, col = rasterio.transform.rowcol(transform, x, y)
    coords, length = [(x, y)], 0.0
    seen = {(row, col)}
    inside = 0 <= row < fdir.shape[0] and 0 <= col < fdir.shape[1]
    while inside and length < distance_m:
        step = STEPS.get(int(fdir[row, col]))
        if step is None:  # nodata, flat or pit
            break
        row, col = row + step[0], col + step[1]
        if not (0 <= row < fdir.shape[0] and 0 <= col < fdir.shape[1]) or (row, col) in seen:
            break
        seen.add((row, col))
        cx, cy = rasterio.transform.xy(transform, row, col)
        length += math.dist(coords[-1], (cx, cy))
        coords.append((cx, cy))
    truncated = length < distance_m
    if len(coords) == 1:  # nowhere to go: a zero-length path at the toe
        return LineString([coords[0], coords[0]]), True
    line = LineString(coords)
    return (line if truncated else substring(line, 0, distance_m)), truncated


def downstream_path(dem, x: float, y: float, settings: HeadTopSettings) -> tuple[LineString, bool]:
    """The D8 path from (x, y) (dataset CRS, metric) over a window of the open DEM dataset ``dem``."""
    r = settings.distance_m + settings.margin_m
    full = Window(0, 0, dem.width, dem.height)
    window = from_bounds(x - r, y - r, x + r, y + r, dem.transform).round_offsets().round_lengths()
    try:
        window = window.intersection(full)
    except rasterio.errors.WindowError:
        raise AnalysisError(f"dam toe ({x:.0f}, {y:.0f}) is outside the DEM") from None
    data = dem.read(1, window=window, masked=True).astype("float64").filled(np.nan)
    transform = dem.window_transform(window)
    fdir = flow_directions(data, transform)
    return trace(fdir, transform, x, y, settings.distance_m)


def lowest_boundary_point(dem, outline) -> tuple[float, float]:
    """The lowest DEM point on a polygon's outline (dataset CRS), sampled every half cell."""
    step = min(abs(dem.transform.a), abs(dem.transform.e)) / 2
    pts = shapely.get_coordinates(shapely.segmentize(outline.boundary, step))
    heights = np.array([np.nan if np.ma.is_masked(v) else float(v[0])
                        for v in dem.sample(pts.tolist(), indexes=1, masked=True)])
    if np.all(np.isnan(heights)):
        raise AnalysisError("the pond outline lies outside the DEM")
    x, y = pts[int(np.nanargmin(heights))]
    return float(x), float(y)


def downstream_zone(path: LineString, pond, corridor_m: float) -> shapely.MultiPolygon:
    """The corridor along ``path`` (metric): ``corridor_m`` each side, square at the toe and at the path's end (a
    round end would reach ``corridor_m`` further downstream and behind the toe), less the pond (the reservoir is not
    downstream of its dam: a path across it, as on a DEM without the dam, covers only what lies beyond it). A path
    of no length (a pit at the toe) gives the disc around the toe; a zone wholly inside the pond is kept whole."""
    zone = path.buffer(corridor_m, cap_style="flat") if path.length > 0 else path.buffer(corridor_m)
    beyond = zone.difference(pond)
    parts = [p for p in shapely.get_parts(beyond if not beyond.is_empty else zone) if isinstance(p, Polygon)]
    return shapely.MultiPolygon(parts)


# -------------------------------------------------------------------------------------- contents
CONTENTS_SQL = text("""
WITH z AS (
    SELECT g.pond, ST_GeomFromWKB(g.wkb, :srid) AS zm, ST_Transform(ST_GeomFromWKB(g.wkb, :srid), 4326) AS zg
    FROM unnest(CAST(:ponds AS int[]), CAST(:wkbs AS bytea[])) AS g(pond, wkb)
)
SELECT z.pond,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('id', r.id, 'name', r.name, 'kind', r.kind,
                                                 'people', r.people) ORDER BY r.id), '[]')
     FROM receptors r WHERE ST_Intersects(r.geom, z.zg)) AS receptors,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('id', d.id, 'name', d.name, 'ref', d.ref, 'class', d.road_class,
                                                 'length_m', round(ST_Length(ST_Intersection(
                                                     ST_Transform(d.geom, :srid), z.zm))::numeric, 1))
                             ORDER BY d.id), '[]')
     FROM roads d WHERE ST_Intersects(d.geom, z.zg)) AS roads,
  (SELECT coalesce(jsonb_agg(jsonb_build_object('id', h.id, 'name', h.name, 'level', h.level) ORDER BY h.id), '[]')
     FROM hazard_installations h WHERE ST_Intersects(h.geom, z.zg)) AS installations
FROM z
""")


def _names(items: list[dict], limit: int = 20) -> str | None:
    names = [i.get("name") or i.get("ref") or f"#{i['id']}" for i in items]
    if not names:
        return None
    more = f" …(+{len(names) - limit})" if len(names) > limit else ""
    return "、".join(names[:limit]) + more


def summarise(contents: dict, people: float | None, settings: HeadTopSettings) -> dict:
    """Counts and the head-top decision for one zone's contents (receptors, roads, installations)."""
    receptors, roads, inst = contents["receptors"], contents["roads"], contents["installations"]
    major = [r for r in roads if r["class"] in settings.major_roads]
    count = None if people is None else math.floor(people + 0.5)  # (half up, as the hazchem people)
    residents = count is not None and count >= settings.min_people  # (by the count shown: 0.6 people show as 1)
    return {
        "people": count,
        "receptors": len(receptors),
        "receptor_people": sum(int(r["people"] or 0) for r in receptors),
        "roads": len(roads), "major_roads": len(major),
        "road_length_m": round(sum(float(r["length_m"] or 0) for r in roads), 1),
        "installations": len(inst),
        "receptor_names": _names(receptors), "road_names": _names(roads),
        "installation_names": _names(inst),
        "headtop": bool(residents or receptors or inst or major),
        "facilities": len(inst) + len(major),
    }


# ------------------------------------------------------------------------------------------- run
POND_SQL = text("""
SELECT id, name, status, dam_height_m, capacity_10k_m3, toe_lon, toe_lat, grade, headtop, synthetic,
       downstream_people, downstream_receptors, downstream_facilities,
       ST_AsBinary(ST_Transform(geom, :srid)) AS wkb
FROM tailings_ponds ORDER BY id
""")


def zones(conn: Connection, settings: HeadTopSettings = HeadTopSettings()) -> tuple[list[dict], dict]:
    """Compute (without writing) every pond's downstream zone, contents, head-top flag and grade.

    Returns the zone records (geometries in :data:`METRIC_EPSG`) and statistics. A record is ``synthetic``
    when its pond, the DEM or the population grid is; ``contents.notes`` names the synthetic grids.
    """
    dem_raster = registered(conn, "dem")
    if dem_raster is None:
        raise AnalysisError("no DEM registered: add a GeoTIFF to the rasters table with name 'dem'")
    pop_raster = registered(conn, "population")
    notes = [r.note for r in (dem_raster, pop_raster) if r is not None and r.synthetic]
    grids_synthetic = bool(notes)
    ponds = [dict(r) for r in conn.execute(POND_SQL, {"srid": METRIC_EPSG}).mappings()]
    src, dem = _open_metric(dem_raster.path)
    records, skipped, outside = [], [], []
    try:
        to_dem = Transformer.from_crs(METRIC, dem.crs, always_xy=True)
        from_dem = Transformer.from_crs(dem.crs, METRIC, always_xy=True)
        for pond in ponds:
            if pond["status"] == "reclaimed":  # 销库: no longer a tailings pond
                skipped.append(pond["id"])
                continue
            outline = shapely.from_wkb(pond["wkb"])
            try:
                if pond["toe_lon"] is not None and pond["toe_lat"] is not None:
                    toe, toe_source = to_metric(pond["toe_lon"], pond["toe_lat"]), "toe"
                    toe_dem = to_dem.transform(*toe)
                else:
                    toe_dem = lowest_boundary_point(dem, reproject(outline, to_dem))
                    toe_source = "lowest_boundary"
                path, truncated = downstream_path(dem, *toe_dem, settings)
            except AnalysisError:  # outside the DEM: reported, not guessed
                outside.append(pond["id"])
                continue
            path = reproject(path, from_dem)
            records.append({"pond": pond, "path": path, "zone": downstream_zone(path, outline, settings.corridor_m),
                            "toe_source": toe_source, "truncated": truncated,
                            "synthetic": bool(pond["synthetic"]) or grids_synthetic})
    finally:
        if dem is not src:
            dem.close()
        src.close()
    people = zonal_sum(pop_raster, [r["zone"] for r in records], METRIC) if pop_raster and records else None
    found = {}
    if records:
        rows = conn.execute(CONTENTS_SQL, {
            "srid": METRIC_EPSG, "ponds": [r["pond"]["id"] for r in records],
            "wkbs": [shapely.to_wkb(r["zone"]) for r in records]}).mappings()
        found = {row["pond"]: dict(row) for row in rows}
    for i, rec in enumerate(records):
        pond = rec["pond"]
        rec["contents"] = {k: found[pond["id"]][k] for k in ("receptors", "roads", "installations")}
        rec["contents"]["people"] = None if people is None else people[i]
        rec["contents"]["notes"] = notes
        rec.update(summarise(rec["contents"], None if people is None else people[i], settings))
        rec["grade"] = pond_grade(pond["capacity_10k_m3"], pond["dam_height_m"])
        if rec["grade"] is None:
            rec["grade"] = pond["grade"]  # nothing to compute it from: keep the recorded grade
    stats = {
        "ponds": len(records), "headtop": sum(r["headtop"] for r in records),
        "truncated_paths": sum(r["truncated"] for r in records), "skipped_reclaimed": len(skipped),
        "toe_from_boundary": sum(r["toe_source"] == "lowest_boundary" for r in records),
        "outside_dem": outside,
        "population_grid": pop_raster is not None, "notes": notes,
        "distance_m": settings.distance_m, "corridor_m": settings.corridor_m,
    }
    return records, stats | {"skipped_ids": skipped + outside, "ponds_all": ponds}


INSERT_SQL = text("""
INSERT INTO tailings_downstream (run_id, synthetic, pond_id, name, headtop, grade, people, receptors,
    receptor_people, roads, major_roads, road_length_m, installations, receptor_names, road_names,
    installation_names, path_length_m, corridor_m, toe_source, truncated, contents, path, geom)
VALUES (:run_id, :synthetic, :pond_id, :name, :headtop, :grade, :people, :receptors, :receptor_people, :roads,
    :major_roads, :road_length_m, :installations, :receptor_names, :road_names, :installation_names,
    :path_length_m, :corridor_m, :toe_source, :truncated, CAST(:contents AS jsonb),
    ST_Transform(ST_GeomFromWKB(:path, :srid), 4326), ST_Multi(ST_Transform(ST_GeomFromWKB(:geom, :srid), 4326)))
""")
POND_COLUMNS = ("headtop", "grade", "downstream_people", "downstream_receptors", "downstream_facilities")


def run(engine: Engine, store_settings=None, settings: HeadTopSettings | None = None) -> dict:
    """The ``tailings`` analysis: recompute every pond's downstream zone, head-top flag and grade.

    One transaction: the pond columns are updated only where they change (an unchanged re-run does
    not bump the ``tailings_ponds`` version), then the run is opened (so it records the updated
    versions), the zones are replaced, and the run is closed with the statistics.
    """
    from layers.derived import finish_run, start_run

    settings = settings or HeadTopSettings()
    with engine.begin() as conn:
        records, stats = zones(conn, settings)
        ponds = {p["id"]: p for p in stats.pop("ponds_all")}
        new = {pid: (None, pond_grade(ponds[pid]["capacity_10k_m3"], ponds[pid]["dam_height_m"]) or ponds[pid]["grade"],
                     None, None, None) for pid in stats.pop("skipped_ids")}
        new |= {r["pond"]["id"]: (r["headtop"], r["grade"], r["people"], r["receptors"], r["facilities"])
                for r in records}
        changed = [dict(zip(("id",) + POND_COLUMNS, (pid,) + values)) for pid, values in new.items()
                   if values != tuple(ponds[pid][c] for c in POND_COLUMNS)]
        if changed:
            conn.execute(text("UPDATE tailings_ponds SET headtop = :headtop, grade = :grade, "
                              "downstream_people = :downstream_people, downstream_receptors = :downstream_receptors, "
                              "downstream_facilities = :downstream_facilities WHERE id = :id"), changed)
        run_id = start_run(conn, "tailings", ["tailings_ponds", "receptors", "roads", "hazard_installations"])
        conn.execute(text("DELETE FROM tailings_downstream"))
        if records:
            conn.execute(INSERT_SQL, [{
                "run_id": run_id, "synthetic": r["synthetic"], "pond_id": r["pond"]["id"],
                "name": r["pond"]["name"], "srid": METRIC_EPSG, "path_length_m": round(r["path"].length, 1),
                "corridor_m": settings.corridor_m, "path": shapely.to_wkb(r["path"]), "geom": shapely.to_wkb(r["zone"]),
                "contents": json.dumps(r["contents"], ensure_ascii=False),
                **{k: r[k] for k in ("headtop", "grade", "people", "receptors", "receptor_people", "roads",
                                     "major_roads", "road_length_m", "installations", "receptor_names",
                                     "road_names", "installation_names", "toe_source", "truncated")},
            } for r in records])
        stats["ponds_updated"] = len(changed)
        finish_run(conn, run_id, stats)
    return stats
