"""The Kunming demo dataset: loaded by ``riskmap serve`` into an empty database.

Real public data (``data/kunming/``, provenance in its README) goes in through the same import
path as a user's files (GCJ-02 sources through the GCJ-02 conversion).
"""

from __future__ import annotations

import logging

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from layers import registry
from layers.io import read_source, validate, write
from layers.errors import ImportRejected
from layers.settings import REPO_ROOT, StoreSettings

log = logging.getLogger("riskmap.demo")
KUNMING = REPO_ROOT / "data" / "kunming"
SOURCE_DISTRICTS = "DataV GeoAtlas 530100_full (GCJ-02, via anzhou99/GeoJsons); population: 昆明市统计局 2023 via reposts"


def districts_frame():
    """The 14 real district polygons (converted from GCJ-02) with their 2023 populations."""
    frame, _ = read_source(KUNMING / "kunming_districts_530100_full_datav_gcj02.geojson", "gcj02")
    pop = pd.read_csv(KUNMING / "kunming_district_population_2023.csv", dtype={"adcode": str})
    frame["adcode"] = frame["adcode"].astype(str)
    frame = frame.merge(pop[["adcode", "pop_2023_10k"]], on="adcode", how="left")
    frame["population"] = (frame["pop_2023_10k"] * 10000).round().astype("Int64")
    frame["population_year"] = 2023
    frame["level"] = frame["name"].map(lambda n: "county_city" if n.endswith("市")
                                       else ("county" if n.endswith("县") else "district"))
    frame["synthetic"] = False
    frame["source"] = SOURCE_DISTRICTS
    return frame[["adcode", "name", "level", "population", "population_year", "synthetic", "source", "geometry"]]


def load_demo_if_empty(engine: Engine, store: StoreSettings) -> bool:
    """Load the demo into an empty database (no admin areas yet); False if data is already there."""
    spec = registry.get("admin_areas")
    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(spec.model.__table__)).scalar_one():
            return False
    log.info("loading the Kunming demo data")
    # Two DataV outlines self-intersect slightly; they are repaired (make_valid), as a user would with --make-valid.
    records, rejections, _ = validate(spec, districts_frame(), store.area_bbox, make_valid=True)
    if rejections:
        raise ImportRejected(spec.id, rejections, len(records) + len(rejections))
    with engine.begin() as conn:
        write(conn, spec, records)
    return True
