"""`riskmap import-osm` on a small PBF the test writes itself with pyosmium."""

from __future__ import annotations

import doctest

import osmium
import pandas as pd
import pytest
from osmium.osm.mutable import Node, Way
from pyproj import Geod
from sqlalchemy import text
from typer.testing import CliRunner

from gis import roadnet
from layers import osm
from layers.errors import DataError
from layers.osm import import_osm, read_osm_roads
from layers.settings import StoreSettings

from conftest import settled

AREA = StoreSettings().area_bbox
GEOD = Geod(ellps="WGS84")
# Node id -> (lon, lat). A motorway 1-2-3 crossed at node 2 by a primary 4-2-5; a 1.2 km bridge 5-6
# continuing the primary; a 600 m tunnel 6-7; a one-way (-1) tertiary 7-8 in mph; a residential
# 3-9; a footway 1-9 (never a road); a trunk 10-11 outside the area; a primary 12-13 with a node
# missing from the file (13).
NODES = {1: (102.70, 25.00), 2: (102.71, 25.00), 3: (102.72, 25.00), 4: (102.71, 24.99), 5: (102.71, 25.01),
         6: (102.71, 25.0208), 7: (102.71, 25.0262), 8: (102.715, 25.0262), 9: (102.72, 25.01),
         10: (104.00, 25.00), 11: (104.01, 25.00), 12: (102.80, 25.00)}
WAYS = [
    (100, [1, 2, 3], {"highway": "motorway", "ref": "G56", "name": "杭瑞高速", "maxspeed": "100"}),
    (101, [4, 2, 5], {"highway": "primary", "name": "测试路", "name:zh": "测试路（中文）"}),
    (102, [5, 6], {"highway": "primary", "bridge": "yes", "layer": "1", "name": "测试大桥", "ref": "S101"}),
    (103, [6, 7], {"highway": "primary", "tunnel": "yes", "layer": "-1", "ref": "S101"}),
    (104, [7, 8], {"highway": "tertiary", "oneway": "-1", "maxspeed": "30 mph"}),
    (105, [3, 9], {"highway": "residential", "name": "小区路"}),
    (106, [1, 9], {"highway": "footway"}),
    (107, [10, 11], {"highway": "trunk"}),
    (108, [12, 13], {"highway": "primary"}),
]


@pytest.fixture
def pbf(tmp_path):
    path = tmp_path / "small.osm.pbf"
    writer = osmium.SimpleWriter(str(path))
    for nid, loc in NODES.items():
        writer.add_node(Node(id=nid, location=loc, version=1, tags={}))
    for wid, refs, tags in WAYS:
        writer.add_way(Way(id=wid, nodes=refs, version=1, tags=tags))
    writer.close()
    return path


def test_docstrings():
    assert doctest.testmod(osm).failed == 0


def test_ways_are_split_at_shared_nodes_and_tags_kept(pbf):
    roads, structures, stats = read_osm_roads(pbf, AREA)
    assert stats == {"ways": 5, "skipped_outside": 1, "skipped_broken": 1, "components": 1}
    by_way = roads.groupby("osm_id").size().to_dict()
    assert by_way == {100: 2, 101: 2, 102: 1, 103: 1, 104: 1}  # 100 and 101 split at node 2
    motorway = roads[roads.osm_id == 100].iloc[0]
    assert (motorway.road_class, motorway.ref, motorway.speed_kmh, motorway.oneway) == ("motorway", "G56", 100, True)
    primary = roads[roads.osm_id == 101].iloc[0]
    # no maxspeed: no speed stored (the graph gives the class default, test_graph_gives_untagged_roads_...)
    assert primary["name"] == "测试路（中文）" and pd.isna(primary.speed_kmh) and not primary.oneway
    bridge = roads[roads.osm_id == 102].iloc[0]
    assert bridge.bridge and not bridge.tunnel and bridge.layer == 1
    tunnel = roads[roads.osm_id == 103].iloc[0]
    assert tunnel.tunnel and tunnel.layer == -1
    tertiary = roads[roads.osm_id == 104].iloc[0]
    assert tertiary.road_class == "secondary" and tertiary.oneway and tertiary.speed_kmh == 48.3
    assert tertiary.geometry.coords[0] == NODES[8]  # oneway=-1: drawn in the direction of travel
    # lengths are geodesic
    assert abs(bridge.length_m - GEOD.inv(*NODES[5], *NODES[6])[2]) < 0.1
    # long bridge (>= 100 m) and tunnel (> 500 m) become restricted structures, classed by length
    st = structures.set_index("kind")
    assert st.loc["bridge", "structure_class"] == "bridge_xl" and st.loc["bridge", "name"] == "测试大桥"
    assert st.loc["tunnel", "structure_class"] == "tunnel_m" and st.loc["tunnel", "road_ref"] == "S101"
    minor, _, stats = read_osm_roads(pbf, AREA, include_minor=True)
    assert (minor.osm_id == 105).sum() == 1 and minor[minor.osm_id == 105].road_class.iloc[0] == "urban"
    assert len(minor[minor.osm_id == 100]) == 2  # node 3 is shared with the residential way: no new split inside


def test_import_writes_in_one_transaction_and_replaces(clean, pbf):
    result = import_osm(clean, pbf, AREA)
    assert (result.roads, result.structures, result.components) == (7, 2, 1)
    assert settled(clean, "roads") and settled(clean, "restricted_structures")
    with clean.connect() as conn:
        assert conn.execute(text("SELECT bool_or(synthetic) FROM roads")).scalar_one() is False
        at_node_2 = conn.execute(text(
            "SELECT count(*) FROM roads WHERE ST_Equals(ST_StartPoint(geom), ST_SetSRID(ST_MakePoint(:x, :y), 4326)) "
            "OR ST_Equals(ST_EndPoint(geom), ST_SetSRID(ST_MakePoint(:x, :y), 4326))"), dict(zip("xy", NODES[2]))
        ).scalar_one()
        assert at_node_2 == 4  # the crossing is a node of the network: both ways end there
    again = import_osm(clean, pbf, AREA, replace=True)
    assert again.roads == 7
    with clean.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM roads")).scalar_one() == 7
        assert conn.execute(text("SELECT count(*) FROM restricted_structures")).scalar_one() == 2


def test_graph_gives_untagged_roads_their_class_speed(clean, pbf):
    """Only tagged speeds are stored; the graph gives the others the class default (motorway 100, primary 60,
    urban 40 km/h: layers.spec.ROAD_CLASS_SPEEDS)."""
    import_osm(clean, pbf, AREA, include_minor=True)
    with clean.begin() as conn:
        roadnet.build_graph(conn)
        stored = dict(conn.execute(text("SELECT DISTINCT osm_id, speed_kmh FROM roads")).all())
        graph = dict(conn.execute(text(
            "SELECT DISTINCT r.osm_id, e.speed_kmh FROM road_edges e JOIN roads r ON r.id = e.road_id")).all())
    assert stored == {100: 100.0, 101: None, 102: None, 103: None, 104: 48.3, 105: None}
    # 100: tagged 100; 101-103 primary (the bridge and tunnel too); 104: tagged 30 mph; 105: residential
    assert graph == {100: 100.0, 101: 60.0, 102: 60.0, 103: 60.0, 104: 48.3, 105: 40.0}


def test_bad_files_are_refused(clean, tmp_path):
    junk = tmp_path / "junk.osm.pbf"
    junk.write_bytes(b"not a pbf")
    with pytest.raises(DataError, match="cannot read"):
        import_osm(clean, junk, AREA)
    with pytest.raises(DataError, match="file not found"):
        import_osm(clean, tmp_path / "missing.osm.pbf", AREA)
    empty = tmp_path / "empty.osm.pbf"
    writer = osmium.SimpleWriter(str(empty))
    writer.add_node(Node(id=1, location=(102.7, 25.0), version=1, tags={}))
    writer.close()
    with pytest.raises(DataError, match="no road ways"):
        import_osm(clean, empty, AREA)


def test_cli_import_osm(clean, db_url, pbf, monkeypatch, tmp_path):
    from api.cli import app

    monkeypatch.setenv("DATABASE_URL", db_url)
    runner = CliRunner()
    result = runner.invoke(app, ["import-osm", str(pbf), "--replace", "--no-structures"])
    assert result.exit_code == 0, result.output
    assert "imported 7 road segments from 5 ways and 0 restricted structures" in result.output
    assert "1 connected component" in result.output
    bad = runner.invoke(app, ["import-osm", str(tmp_path / "nope.osm.pbf")])
    assert bad.exit_code == 2 and "file not found" in bad.output
