"""The Kunming demo dataset: real public data plus labelled synthetic layers built on it.

Real inputs (``data/kunming/``, provenance in its README) go in as they are: the 14 district
boundaries (GCJ-02 originals through the GCJ-02 conversion) with their 2023 populations. Everything
else is generated deterministically from a seed and flagged ``synthetic``: a 100 m population
grid and a 90 m DEM (GeoTIFFs in ``<data_dir>/generated/``, registered in ``rasters``), roads with
bridges and tunnels, restricted structures, accidents, chemical parks, enterprises, major hazard
installations with inventories, tailings ponds, protection targets, emergency resources and
water-source zones (see docs/demo-data.md). ``scale`` multiplies the facility, receptor and
accident counts (and densifies the roads) for the benchmarks.

Everything is validated by ``layers.io.validate`` and written by ``layers.io.write`` in one
transaction, like a user's import. The rasters are registered by :func:`layers.rasters.register_raster`, which
``riskmap rasters add`` uses too (after :func:`layers.rasters.raster_row` has checked an operator's file).
``riskmap serve`` loads the demo only where :func:`why_not_demo` finds no reason against it.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field

import geopandas as gpd
import numpy as np
import shapely
from sqlalchemy import Connection, case, func, literal, select
from sqlalchemy.engine import Engine

from layers import models, registry
from layers.crs import METRIC_EPSG, from_metric
from layers.demo import facilities, roads, terrain
from layers.demo.sources import SOURCE_DISTRICTS, Inputs, district_names_en, districts_frame
from layers.errors import DataError, ImportRejected
from layers.io import settle, validate, write
from layers.rasters import register_raster
from layers.settings import StoreSettings

__all__ = ["SEED", "COUNTS", "ORDER", "Demo", "Progress", "build_demo", "load_demo",
           "load_demo_if_empty", "why_not_demo", "demo_extent", "districts_frame"]

log = logging.getLogger("riskmap.demo")
SEED = 20240601
# Counts at scale 1 (the minimums, or more); multiplied by ``scale``.
COUNTS = {"enterprises": 300, "hazard_installations": 150, "tailings_ponds": 60, "accidents": 20000,
          "receptors": 2000, "emergency_resources": 200, "hazmat_routes": 24}
# Write order: foreign keys (enterprises.park_id, hazard_installations.enterprise_id) line up.
ORDER = ("admin_areas", "chemical_parks", "enterprises", "hazard_installations", "tailings_ponds", "roads",
         "restricted_structures", "accidents", "water_source_zones", "receptors", "emergency_resources",
         "hazmat_routes")


@dataclass
class Demo:
    """A built demo: one EPSG:4326 frame per layer (registry columns) and the raster rows."""

    layers: dict[str, gpd.GeoDataFrame]
    rasters: list[dict] = field(default_factory=list)
    seconds: float = 0.0


class Progress:
    """Progress lines with the elapsed time: printed to stderr, or with ``echo=False`` (under ``riskmap
    serve``, whose log goes to stderr) sent to the log instead (once, not both)."""

    def __init__(self, echo: bool = True):
        self.start, self.echo = time.monotonic(), echo

    def __call__(self, message: str) -> None:
        line = f"[{time.monotonic() - self.start:6.1f} s] {message}"
        if self.echo:
            print(line, file=sys.stderr, flush=True)
        else:
            log.info(line)


def _wgs84(frame: gpd.GeoDataFrame, layer_id: str) -> gpd.GeoDataFrame:
    """Registry columns (plus id / chemicals) of a metric frame, geometry in EPSG:4326."""
    spec = registry.get(layer_id)
    keep = [c for c in ("id", *(f.name for f in spec.fields), "chemicals") if c in frame.columns]
    out = gpd.GeoDataFrame(frame[keep].astype(object).where(frame[keep].notna(), None),
                           geometry=from_metric(frame.geometry.values), crs="EPSG:4326")
    return out


def build_demo(store: StoreSettings, scale: int = 1, seed: int = SEED, progress: Progress | None = None) -> Demo:
    """Build every demo layer and raster (rasters reused from ``<data_dir>/generated`` when present).

    Parameters
    ----------
    store : StoreSettings
        ``data_dir`` decides where the GeoTIFFs go.
    scale : int
        Multiplies facility, receptor and accident counts and densifies the roads (1, 10, 100 ...).
    seed : int
        Same seed, same data.

    Returns
    -------
    Demo
    """
    if scale < 1:
        raise DataError("scale must be a whole number >= 1")
    say = progress or Progress()
    inputs = Inputs()
    say(f"demo: real inputs read ({len(inputs.districts)} districts, {len(inputs.settlements)} places)")
    dem, pop = terrain.surfaces(inputs, store.data_dir / "generated", seed, log=say)
    rng = np.random.default_rng([seed, 4])
    parks = facilities.build_parks(inputs, pop, rng, seed, scale)
    say(f"demo: rasters ready, {len(parks)} parks sited; building roads")
    gates = facilities.park_gates(inputs, parks)
    road, structures = roads.build_roads(inputs, dem, pop, seed, scale, gates=gates, log=say)
    routes = roads.build_hazmat_routes(road, gates, inputs.settlements, seed, COUNTS["hazmat_routes"] * scale)
    hot = list(inputs.waterlogging_hist.geometry.values)
    accidents = roads.build_accidents(road, seed, COUNTS["accidents"] * scale, hot_spots=hot,
                                      n_hot=12 * int(np.ceil(np.sqrt(scale))))
    say(f"demo: {len(road)} road segments, {len(structures)} restricted structures, {len(accidents)} accidents, "
        f"{len(routes)} hazmat routes")
    enterprises = facilities.build_enterprises(inputs, parks, rng, seed, COUNTS["enterprises"] * scale)
    installations = facilities.build_installations(enterprises, rng, seed, COUNTS["hazard_installations"] * scale)
    ponds = facilities.build_tailings(inputs, dem, parks, rng, seed, COUNTS["tailings_ponds"] * scale, scale)
    receptors = facilities.build_receptors(inputs, pop, parks, rng, seed, COUNTS["receptors"] * scale)
    resources = facilities.build_resources(inputs, pop, parks, ponds, rng, seed,
                                           COUNTS["emergency_resources"] * scale)
    zones = facilities.build_water_zones(seed)
    say(f"demo: {len(parks)} parks, {len(enterprises)} enterprises, {len(installations)} installations, "
        f"{len(ponds)} tailings ponds, {len(receptors)} receptors, {len(resources)} emergency resources")
    toe = from_metric(ponds["toe"].values)
    ponds["toe_lon"], ponds["toe_lat"] = shapely.get_x(toe).round(7), shapely.get_y(toe).round(7)
    layers = {"admin_areas": districts_frame()}
    for layer_id, frame in (("chemical_parks", parks), ("enterprises", enterprises),
                            ("hazard_installations", installations), ("tailings_ponds", ponds), ("roads", road),
                            ("restricted_structures", structures), ("accidents", accidents),
                            ("water_source_zones", zones), ("receptors", receptors),
                            ("emergency_resources", resources), ("hazmat_routes", routes)):
        layers[layer_id] = _wgs84(frame, layer_id)
    rasters = [
        dict(name="population", title_zh="人口格网（100 米，合成）", title_en="Population grid (100 m, synthetic)",
             path=str(pop.path), crs=f"EPSG:{METRIC_EPSG}", units="people per cell", synthetic=True,
             source=terrain.POP_SOURCE),
        dict(name="dem", title_zh="数字高程模型（90 米，合成）", title_en="Elevation model (90 m, synthetic)",
             path=str(dem.path), crs=f"EPSG:{METRIC_EPSG}", units="m", synthetic=True, source=terrain.DEM_SOURCE),
    ]
    return Demo(layers, rasters, time.monotonic() - say.start)


def load_demo(engine: Engine, store: StoreSettings, scale: int = 1, seed: int = SEED, replace: bool = False,
              progress: Progress | None = None) -> dict[str, int]:
    """Build the demo and write it in one transaction through the import validation.

    Refuses (DataError) when a demo layer already holds data and ``replace`` is False; with
    ``replace`` the demo layers' contents are replaced. Returns the rows written per layer.
    """
    say = progress or Progress()
    if not replace:
        with engine.connect() as conn:
            busy = [i for i in ORDER if conn.execute(select(func.count()).select_from(
                registry.get(i).model.__table__)).scalar_one()]
        if busy:
            raise DataError(f"layers already hold data: {', '.join(busy)}; load the demo with --replace")
    demo = build_demo(store, scale, seed, say)
    checked = {}
    for layer_id in ORDER:
        spec = registry.get(layer_id)
        # Two DataV outlines self-intersect slightly: repaired as a user would with --make-valid.
        records, rejections, _ = validate(spec, demo.layers[layer_id], store.area_bbox,
                                          make_valid=layer_id == "admin_areas")
        if rejections:
            raise ImportRejected(layer_id, rejections, len(records) + len(rejections))
        checked[layer_id] = records
    say("demo: validated; writing")
    written = {}
    with engine.begin() as conn:
        for layer_id in ORDER:
            written[layer_id] = write(conn, registry.get(layer_id), checked[layer_id], replace=replace)
        for row in demo.rasters:
            register_raster(conn, row)
    settle(engine, [registry.get(i) for i in ORDER])
    say("demo: loaded " + ", ".join(f"{k}={v}" for k, v in written.items()))
    return written


def demo_extent() -> tuple[float, float, float, float]:
    """Lon/lat bounds (west, south, east, north) of the demo: its 14 districts, inside which it is built."""
    return tuple(float(v) for v in districts_frame().total_bounds)


def why_not_demo(conn: Connection, store: StoreSettings) -> tuple[int, str] | None:
    """Why ``riskmap serve`` leaves the demo out (log level, one bilingual line), or None when it loads it: only
    into a database whose every registry layer (and the ``rasters`` table) is empty, and only when the
    area box (``RISKMAP_AREA_BBOX``) contains the demo's extent (another city's box would reject the demo)."""
    busy = [spec.id for spec in registry.LAYERS
            if conn.execute(select(literal(1)).select_from(spec.model.__table__).limit(1)).first()]
    busy += [f"raster {name}" for name in conn.execute(select(models.Raster.name)).scalars()]
    if busy:
        shown = ", ".join(busy[:3]) + (f" … ({len(busy)})" if len(busy) > 3 else "")
        return logging.INFO, (f"数据库已有数据（{shown}），不（再）载入昆明演示数据 / the database holds data ({shown}): "
                              "the Kunming demo is not loaded (again)")
    (w, s, e, n), box = demo_extent(), store.area_bbox
    if not (box[0] <= w and box[1] <= s and e <= box[2] and n <= box[3]):
        return logging.WARNING, (f"未载入昆明演示数据：区域范围 RISKMAP_AREA_BBOX={list(box)} 不包含演示数据范围 [{w:.2f},{s:.2f},{e:.2f},"
                f"{n:.2f}]；请用 riskmap import 导入本市图层（README“Another city”），加 --no-demo 不再提示 / Kunming demo not "
                f"loaded: the area box RISKMAP_AREA_BBOX={list(box)} does not contain the demo's extent "
                f"[{w:.2f},{s:.2f},{e:.2f},{n:.2f}]; import your own layers with `riskmap import` (README, \"Another "
                "city\"); `riskmap serve --no-demo` silences this line")
    return None


def load_demo_if_empty(engine: Engine, store: StoreSettings) -> bool:
    """Load the demo (scale 1) when :func:`why_not_demo` allows, else log why not and return False.

    A database holding the demo's districts without English names (loaded before they existed) gets them;
    nothing is written when none is missing (a write would bump the layer's version, staling its caches).
    A demo that fails validation is logged, not raised: nothing of it is written.
    """
    table = registry.get("admin_areas").model.__table__
    with engine.begin() as conn:
        reason = why_not_demo(conn, store)
        unnamed = set(conn.execute(select(table.c.adcode).where(table.c.name_en.is_(None),
                                                                table.c.source == SOURCE_DISTRICTS)).scalars())
        names = {a: n for a, n in district_names_en().itertuples(index=False) if a in unnamed}
        if names:  # (one statement: the version trigger fires once a statement)
            conn.execute(table.update().where(table.c.adcode.in_(names), table.c.name_en.is_(None),
                                              table.c.source == SOURCE_DISTRICTS)
                         .values(name_en=case(names, value=table.c.adcode)))
    if reason:
        log.log(*reason)
        return False
    log.info("载入昆明演示数据 / loading the Kunming demo data")
    try:
        load_demo(engine, store, replace=True, progress=Progress(echo=False))
    except DataError as exc:
        log.error("未载入昆明演示数据（未写入任何内容）/ Kunming demo not loaded (nothing written): %s", exc)
        return False
    return True
