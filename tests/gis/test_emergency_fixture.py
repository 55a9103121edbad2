"""Shared hand-made scene for the emergency tests (imported by tests/gis and tests/api; no tests here).

Everything is placed in metres east/north of a point in Kunming (EPSG:4543) and converted to WGS84:

    roads   R1 (0,0)-(2000,0)-(4000,0) at 36 km/h, R2 (2000,0)-(2000,3000) at 72 km/h,
            R3 (0,5000)-(1000,5000) (not connected to the others)
    incident at (0,10)
"""

from __future__ import annotations

import numpy as np
import rasterio
from rasterio.transform import from_origin
from sqlalchemy import text

from gis.roadnet import build_graph
from layers.crs import METRIC_EPSG, from_metric, to_metric

LON0, LAT0 = 102.70, 25.04
X0, Y0 = to_metric(LON0, LAT0)
INCIDENT = (0, 10)
CELL_PEOPLE = 5.0


def ll(dx: float, dy: float) -> tuple[float, float]:
    """WGS84 lon/lat of the point dx metres east and dy metres north of the origin."""
    return from_metric(X0 + dx, Y0 + dy)


def line(*pts) -> str:
    return "LINESTRING(" + ", ".join("%.9f %.9f" % ll(*p) for p in pts) + ")"


def square(cx: float, cy: float, half: float) -> str:
    c = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half),
         (cx - half, cy - half)]
    return "MULTIPOLYGON(((" + ", ".join("%.9f %.9f" % ll(*p) for p in c) + ")))"


def point(dx: float, dy: float) -> str:
    return "POINT(%.9f %.9f)" % ll(dx, dy)


RESOURCES = [  # name, kind, capacity, (dx, dy)
    ("F1", "fire_station", 3, (4000, 20)),
    ("F4", "fire_station", 1, (2500, 2900)),
    ("F2", "fire_station", 2, (2000, 3015)),
    ("H1", "hospital", 300, (1000, 5010)),     # on the disconnected road
    ("H2", "hospital", 100, (4000, -30)),
    ("D1", "depot", None, (500, 2000)),       # 2 km from any road
    ("S1", "shelter", 500, (300, 20)),        # inside the protective zone of the test incident
    ("S2", "shelter", 800, (2000, -200)),
]


def build_scene(engine, tmp_path=None) -> None:
    """Roads + graph, resources, receptors, an installation and a tailings pond; optionally the population grid."""
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE incidents, incident_zones RESTART IDENTITY CASCADE"))
        for name, speed, geom in (("R1", 36, line((0, 0), (2000, 0), (4000, 0))),
                                  ("R2", 72, line((2000, 0), (2000, 3000))),
                                  ("R3", 36, line((0, 5000), (1000, 5000)))):
            conn.execute(text("INSERT INTO roads (name, road_class, speed_kmh, geom) "
                              "VALUES (:n, 'urban', :v, ST_GeomFromText(:g, 4326))"), {"n": name, "v": speed, "g": geom})
        build_graph(conn)
        for name, kind, cap, (dx, dy) in RESOURCES:
            conn.execute(text("INSERT INTO emergency_resources (name, kind, capacity, contact_name, contact_phone, "
                              "synthetic, geom) VALUES (:n, :k, :c, '值班员', '0871-0000000', true, "
                              "ST_GeomFromText(:g, 4326))"), {"n": name, "k": kind, "c": cap, "g": point(dx, dy)})
        for name, kind, people, (dx, dy) in (("幼儿园A", "kindergarten", 120, (20, 30)),
                                             ("学校B", "school", 900, (100, 100)),
                                             ("医院C", "hospital", 400, (3000, 3000))):
            conn.execute(text("INSERT INTO receptors (name, kind, people, geom) VALUES (:n, :k, :p, "
                              "ST_GeomFromText(:g, 4326))"), {"n": name, "k": kind, "p": people, "g": point(dx, dy)})
        conn.execute(text("INSERT INTO hazard_installations (name, level, geom) VALUES ('储罐区X', 2, "
                          "ST_GeomFromText(:g, 4326))"), {"g": square(1000, 500, 100)})
        conn.execute(text("INSERT INTO tailings_ponds (name, grade, geom) VALUES ('尾矿库Y', 3, "
                          "ST_GeomFromText(:g, 4326))"), {"g": square(5000, 5000, 100)})
        conn.execute(text("DELETE FROM rasters WHERE name = 'population'"))
        if tmp_path is not None:
            path = write_population(tmp_path / "pop.tif")
            conn.execute(text("INSERT INTO rasters (name, path, crs, units, synthetic) "
                              "VALUES ('population', :p, 'EPSG:4543', 'people per cell', true)"), {"p": str(path)})


def write_population(path, value: float = CELL_PEOPLE, cells=None):
    """A 100 m grid (EPSG:4543) from (-3000, -3000) to (6000, 6000) around the origin: ``value`` per cell,
    or the array ``cells`` (rows north to south)."""
    n = 90
    data = np.full((n, n), value, dtype="float32") if cells is None else cells.astype("float32")
    transform = from_origin(X0 - 3000, Y0 + 6000, 100, 100)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
                       crs=f"EPSG:{METRIC_EPSG}", transform=transform, nodata=-1) as dst:
        dst.write(data, 1)
    return path
