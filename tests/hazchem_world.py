"""Small hand-built worlds for the hazchem tests (tests/gis/test_hazchem*.py, tests/api/test_analysis*.py).

Geometry is written in metres relative to (X0, Y0) in the metric CRS (layers.crs.METRIC_EPSG), a
point in Kunming, and stored in EPSG:4326 like any import. The population grid is a GeoTIFF of
100 m cells whose centres sit on multiples of 100 m, written with rasterio and registered as
``population``.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.transform import from_origin
from sqlalchemy import text

from layers import registry
from layers.crs import METRIC_EPSG, from_metric, to_metric
from layers.io import CHEMICAL_FIELDS, write

X0, Y0 = (round(v, -3) for v in to_metric(102.71, 25.04))
RES = 100.0
HALF = 6000.0  # the grid covers X0 +- 6 km, Y0 +- 6 km


def metric(geom):
    """Relative metres -> absolute metric CRS."""
    return shapely.transform(geom, lambda c: c + (X0, Y0))


def ewkt(geom) -> str:
    g = from_metric(metric(geom))
    return f"SRID=4326;{shapely.to_wkt(g, rounding_precision=-1)}"


def box(x1, y1, x2, y2):
    return shapely.box(x1, y1, x2, y2)


def pt(x, y):
    return shapely.Point(x, y)


def add(conn, layer: str, geom, **fields) -> int:
    """Insert one feature (relative metric geometry) and return its id."""
    spec = registry.get(layer)
    record = {"synthetic": True, **fields, "geom": ewkt(geom)}
    if "chemicals" in record:  # as layers.io.validate leaves them: every key present
        record["chemicals"] = [{k: c.get(k) for k in CHEMICAL_FIELDS} for c in record["chemicals"]]
    if spec.geometry_type == "MultiPolygon" and geom.geom_type == "Polygon":
        record["geom"] = ewkt(shapely.MultiPolygon([geom]))
    write(conn, spec, [record])
    return conn.execute(text(f"SELECT max(id) FROM {spec.table}")).scalar_one()


def grid() -> tuple[int, int, object]:
    n = int(2 * HALF / RES)
    return n, n, from_origin(X0 - HALF - RES / 2, Y0 + HALF + RES / 2, RES, RES)


def cell(x: float, y: float) -> tuple[int, int]:
    """(row, col) of the cell centred on the relative point (x, y) (multiples of 100 m: the cell spans
    x +- 50 m, y +- 50 m)."""
    return int(round((HALF - y) / RES)), int(round((x + HALF) / RES))


def write_population(conn, path: Path, people: np.ndarray | dict, synthetic: bool = True) -> Path:
    """Write the grid (an array, or {(x, y): people} on an empty grid) and register it (``synthetic``:
    the ``rasters`` flag, a generated grid by default like every test grid)."""
    h, w, transform = grid()
    if isinstance(people, dict):
        arr = np.zeros((h, w), dtype="float32")
        for (x, y), v in people.items():
            arr[cell(x, y)] = v
    else:
        arr = people.astype("float32")
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=1, dtype="float32",
                       crs=f"EPSG:{METRIC_EPSG}", transform=transform, nodata=-1) as dst:
        dst.write(arr, 1)
    conn.execute(text(
        "INSERT INTO rasters (name, title_zh, title_en, path, crs, units, synthetic, source) "
        "VALUES ('population', '人口网格', 'Population grid', :p, :crs, 'people per cell', :syn, 'test') "
        "ON CONFLICT (name) DO UPDATE SET path = EXCLUDED.path, synthetic = EXCLUDED.synthetic"),
        {"p": str(path), "crs": f"EPSG:{METRIC_EPSG}", "syn": synthetic})
    return path


def cell_polygons() -> tuple[list, np.ndarray]:
    """Every cell of the grid as a relative-metre polygon, with its (row, col) index."""
    h, w, _ = grid()
    rows, cols = np.mgrid[0:h, 0:w]
    cx, cy = cols * RES - HALF, HALF - rows * RES
    cells = shapely.box(cx - RES / 2, cy - RES / 2, cx + RES / 2, cy + RES / 2).ravel()
    return cells, np.stack([rows.ravel(), cols.ravel()], 1)


def days_ago(n: int) -> datetime:
    return datetime.now(timezone.utc) - timedelta(days=n)


# ---- the grading world: hand-worked GB 18218 examples ------------------------------------------

# (name, offset of its 100 m square, inventory) for installations without an enterprise: nobody
# within 500 m, so α = 0.5 and R = 0.5 · 4 · q/5 = 0.4 q for chlorine (Q 5 t, β 4).
BOUNDARY_CASES = [
    ("G1 R=100", (0, 0), 250.0, 1),       # R = 100 -> 一级
    ("G2 R=99.96", (2000, 0), 249.9, 2),  # just below -> 二级
    ("G3 R=50", (4000, 0), 125.0, 2),     # R = 50 -> 二级
    ("G4 R=49.96", (0, 2000), 124.9, 3),
    ("G5 R=10", (2000, 2000), 25.0, 3),   # R = 10 -> 三级
    ("G6 R=9.96", (4000, 2000), 24.9, 4),
    ("G7 S=0.98", (0, 4000), 4.9, None),  # S < 1: not a major hazard installation
    ("G8 S=1", (2000, 4000), 5.0, 4),     # S = 1 exactly: major, R = 2 -> 四级
]


def grading_world(conn, tmp_path: Path) -> dict:
    """Installations at every grade boundary, a mixture in an enterprise with a counted α, an
    unknown substance. Returns the ids by name."""
    ids = {}
    for name, (x, y), q, _ in BOUNDARY_CASES:
        ids[name] = add(conn, "hazard_installations", box(x, y, x + 100, y + 100), name=name, unit_type="storage",
                        chemicals=[{"name": "液氯", "quantity_t": q}])
    # Enterprise E1, site (4000..4200, 4000..4200); its plant boundary counts for α.
    ids["E1"] = add(conn, "enterprises", box(4000, 4000, 4200, 4200), name="E1", kind="production")
    ids["M1"] = add(conn, "hazard_installations", box(4050, 4050, 4150, 4150), name="M1 mixture",
                    enterprise_id=ids["E1"], unit_type="production", chemicals=[
                        {"name": "柴油", "hazard_class": "W5.4", "quantity_t": 2500},      # 2500/5000 = 0.5, β 1
                        {"name": "液氨", "quantity_t": 30},                                 # 30/10 = 3, β 2
                        {"name": "混合溶剂（甲苯、二甲苯）", "hazard_class": "W5.3", "quantity_t": 500},  # 0.5, β 1
                    ])
    ids["M2"] = add(conn, "hazard_installations", box(4000, 4000, 4040, 4040), name="M2 empty",
                    enterprise_id=ids["E1"], unit_type="storage")
    ids["U1"] = add(conn, "hazard_installations", box(-3000, -3000, -2900, -2900), name="U1 unknown", level=2,
                    chemicals=[{"name": "神秘化合物", "quantity_t": 10}])
    # α around E1: grid 20 (cell fully inside the 500 m zone) + 30 x 1/2 (cell cut by the zone's
    # edge at x = 4700) = 35; residential receptor 50 -> residents max(35, 50) = 50; school 12 ->
    # exposed 62 -> α 1.5. The office (550 m) and the market inside the site do not count.
    write_population(conn, tmp_path / "pop_grading.tif", {(4400, 4100): 20, (4700, 4100): 30})
    ids["home"] = add(conn, "receptors", pt(4400, 3900), name="小区", kind="residential", people=50)
    ids["school"] = add(conn, "receptors", pt(4100, 4500), name="学校", kind="school", people=12)
    add(conn, "receptors", pt(4100, 4750), name="写字楼", kind="office", people=100)
    add(conn, "receptors", pt(4180, 4180), name="厂内商店", kind="market", people=40)
    return ids


# ---- the violations world: custom rules, hand-placed receptors ---------------------------------

TEST_RULES = [
    # (kind, level, class, distance)
    ("any", None, "general_3", 100.0),
    ("toxic", 1, "high_sensitive", 1000.0),
    ("toxic", None, "high_sensitive", 300.0),
    ("flammable", None, "high_sensitive", 400.0),
    ("any", None, "high_sensitive", 200.0),
]


def set_rules(conn, rules=TEST_RULES) -> None:
    conn.execute(text("DELETE FROM safety_rules"))
    for kind, level, cls, d in rules:
        conn.execute(text("INSERT INTO safety_rules (installation_kind, level, receptor_class, distance_m, basis, "
                          "assumption) VALUES (:k, :l, :c, :d, 'test rule', true)"),
                     {"k": kind, "l": level, "c": cls, "d": d})


def violations_world(conn, tmp_path: Path) -> dict:
    """T1 (toxic, level 1) in enterprise ET in park PK; F1 (flammable, level 4) alone; receptors
    around them; one recent and one old accident; an enterprise without installations."""
    ids = {}
    set_rules(conn)
    ids["PK"] = add(conn, "chemical_parks", box(-500, -500, 600, 600), name="PK", park_level="provincial")
    ids["ET"] = add(conn, "enterprises", box(-20, -20, 120, 120), name="ET", park_id=ids["PK"], kind="production")
    ids["EB"] = add(conn, "enterprises", box(-5000, 3000, -4900, 3100), name="EB", kind="storage")
    ids["T1"] = add(conn, "hazard_installations", box(0, 0, 100, 100), name="T1", enterprise_id=ids["ET"],
                    chemicals=[{"name": "氯", "quantity_t": 250}])   # S 50; α 2 (650 people) -> R 400, 一级
    ids["F1"] = add(conn, "hazard_installations", box(5000, 0, 5100, 100), name="F1",
                    chemicals=[{"name": "甲苯", "quantity_t": 600}])  # S 1.2, R 0.6 -> 四级, flammable
    r = {}
    r["S1"] = add(conn, "receptors", pt(1099, 50), name="S1", kind="school", people=300)     # T1 999 m < 1000
    r["S2"] = add(conn, "receptors", pt(1101, 50), name="S2", kind="school", people=300)     # T1 1001 m: ok
    r["H1"] = add(conn, "receptors", pt(5450, 50), name="H1", kind="hospital", people=80)    # F1 350 m < 400
    r["R1"] = add(conn, "receptors", pt(5050, 199), name="R1", kind="residential", people=10)  # F1 99 < 100 (三类)
    r["R2"] = add(conn, "receptors", pt(5050, 201), name="R2", kind="residential", people=10)  # F1 101: ok
    r["R3"] = add(conn, "receptors", pt(50, 150), name="R3", kind="residential", people=150)   # 一类: no rule
    r["R4"] = add(conn, "receptors", pt(50, -60), name="R4", kind="market", people=500,
                  protection_class="general_3")                                              # T1 60 < 100
    ids.update(r)
    add(conn, "accidents", pt(300, 300), occurred_at=days_ago(100), kind="leak", deaths=1, injuries=2, hazmat=True)
    add(conn, "accidents", pt(310, 300), occurred_at=days_ago(3650), kind="leak", deaths=3, injuries=0, hazmat=True)
    write_population(conn, tmp_path / "pop_zero.tif", {})
    return ids


# (installation, receptor, distance, required) of every violation of the violations world.
EXPECTED_VIOLATIONS = {
    ("T1", "S1", 999.0, 1000.0), ("T1", "R4", 60.0, 100.0), ("F1", "H1", 350.0, 400.0), ("F1", "R1", 99.0, 100.0),
}
