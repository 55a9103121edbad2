"""GCJ-02 / BD-09 conversion against published point pairs and the Kunming derived copies."""

import json

import numpy as np
import pytest
from pyproj import Geod

from layers import crs
from layers.errors import CRSInputError
from layers.settings import REPO_ROOT

KUNMING = REPO_ROOT / "data" / "kunming"
GEOD = Geod(ellps="WGS84")

# Published vectors of the standard formulas (wandergis/coordTransform_py README, same values in
# the JS coordtransform package): Beijing (116.404, 39.915).
WGS_TO_GCJ = ((116.404, 39.915), (116.41024449916938, 39.91640428150164))
GCJ_TO_WGS_APPROX = ((116.404, 39.915), (116.39775550083061, 39.91359571849836))  # one-step inverse
GCJ_TO_BD = ((116.404, 39.915), (116.41036949371029, 39.92133699351021))
BD_TO_GCJ = ((116.404, 39.915), (116.39762729119315, 39.90865673957631))


def metres(a, b) -> float:
    return GEOD.inv(a[0], a[1], b[0], b[1])[2]


def test_forward_gcj02_matches_published_pair():
    src, expected = WGS_TO_GCJ
    assert metres(crs.wgs84_to_gcj02(*src), expected) < 0.01


def test_inverse_gcj02_is_exact_and_near_one_step_value():
    src, approx = GCJ_TO_WGS_APPROX
    wgs = crs.gcj02_to_wgs84(*src)
    # The iterative inverse is exact (round trip) and within a few metres of the one-step inverse.
    assert metres(crs.wgs84_to_gcj02(*wgs), src) < 1e-4
    assert metres(wgs, approx) < 5


def test_bd09_pairs():
    src, expected = GCJ_TO_BD
    assert metres(crs.gcj02_to_bd09(*src), expected) < 0.01
    src, expected = BD_TO_GCJ
    assert metres(crs.bd09_to_gcj02(*src), expected) < 0.01
    lon, lat = 102.71, 25.04
    back = crs.bd09_to_wgs84(*crs.gcj02_to_bd09(*crs.wgs84_to_gcj02(lon, lat)))
    assert metres(back, (lon, lat)) < 0.5


def test_kunming_offset_is_about_360_m():
    # data/kunming/README: in Kunming GCJ-02 = WGS84 + about (+0.00144 lon, -0.00298 lat), ~360 m.
    g = crs.wgs84_to_gcj02(102.71, 25.04)
    assert 300 < metres(g, (102.71, 25.04)) < 420


def test_kunming_districts_match_derived_wgs84_copy():
    src = json.loads((KUNMING / "kunming_districts_530100_full_datav_gcj02.geojson").read_text())
    ref = json.loads((KUNMING / "kunming_districts_530100_datav_wgs84_derived.geojson").read_text())
    a = np.array([c for f in src["features"] for poly in f["geometry"]["coordinates"] for ring in poly for c in ring])
    b = np.array([c for f in ref["features"] for poly in f["geometry"]["coordinates"] for ring in poly for c in ring])
    lon, lat = crs.gcj02_to_wgs84(a[:, 0], a[:, 1])
    dist = GEOD.inv(lon, lat, b[:, 0], b[:, 1])[2]
    assert len(a) > 3000 and dist.max() < 2.0


def test_parse_source_crs():
    assert crs.parse_source_crs("bd-09") == "bd09"
    assert crs.parse_source_crs("EPSG:4490") == "EPSG:4490"
    with pytest.raises(CRSInputError):
        crs.parse_source_crs("EPSG:999999")


def test_metric_crs_is_a_transverse_mercator_zone_in_metres():
    assert crs.METRIC_EPSG == 4543 and crs._metric_epsg(32648) == 32648  # (UTM 48N: also Transverse Mercator)
    for epsg, why in ((3857, "not a Transverse Mercator"), (4326, "not a Transverse Mercator"),
                      (999999, "not an EPSG code")):
        with pytest.raises(ValueError, match=why):
            crs._metric_epsg(epsg)


def test_a_database_keeps_the_metric_crs_it_was_made_with(engine, db_url):
    import os
    import subprocess

    from conftest import RISKMAP
    from layers.db import check_metric_crs
    from layers.errors import ConfigError

    with engine.connect() as conn:
        check_metric_crs(conn)  # (the test database is migrated in EPSG:4543)
        with pytest.raises(ConfigError, match="made with RISKMAP_METRIC_EPSG=4543 and the setting is now 4544"):
            check_metric_crs(conn, 4544)
    env = {"DATABASE_URL": db_url, "PATH": os.environ["PATH"], "RISKMAP_METRIC_EPSG": "4544"}
    r = subprocess.run([RISKMAP, "migrate"], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "set RISKMAP_METRIC_EPSG=4543" in r.stderr and "Traceback" not in r.stderr
