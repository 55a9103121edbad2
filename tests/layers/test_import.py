"""Import/export through the registry: formats, CRS conversion, row-by-row rejection, all-or-nothing."""

import csv
import json
import os
import subprocess
import zipfile

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from sqlalchemy import func, select, text

from layers import crs, registry
from layers.errors import DataError, ImportRejected
from layers.io import ROW_NOTE, export_layer, import_file
from layers.settings import StoreSettings

from conftest import FIXTURES, RISKMAP, load, settled

AREA = StoreSettings().area_bbox
PARKS = registry.get("chemical_parks")
RECEPTORS = registry.get("receptors")


def count(engine, spec) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(spec.model.__table__)).scalar_one()


def test_bad_rows_are_reported_one_by_one_and_nothing_is_written(clean):
    with pytest.raises(ImportRejected) as err:
        import_file(clean, PARKS, FIXTURES / "parks_mixed.geojson", area=AREA)
    rows = {r.row: r.reason for r in err.value.rejections}
    assert set(rows) == {2, 3, 4, 5}
    assert "park_level" in rows[2] and "risk_grade" in rows[2]
    assert "Self-intersection" in rows[3]
    assert "outside the area" in rows[4]
    assert "Point" in rows[5] and "name: required" in rows[5]
    assert count(clean, PARKS) == 0  # the valid first row was not written either


def test_geojson_import_and_export_round_trip(clean, tmp_path):
    src = json.loads((FIXTURES / "parks_mixed.geojson").read_text())
    src["features"] = src["features"][:1]
    path = tmp_path / "one.geojson"
    path.write_text(json.dumps(src))
    result = import_file(clean, PARKS, path, area=AREA)
    assert result.written == 1 and count(clean, PARKS) == 1
    assert settled(clean, "chemical_parks")  # vacuumed and analysed: planner statistics from the start
    for fmt in ("geojson", "gpkg", "csv"):
        out = tmp_path / f"parks.{fmt}"
        assert export_layer(clean, PARKS, out, fmt) == 1
    back = gpd.read_file(tmp_path / "parks.gpkg")
    assert back.iloc[0]["name"] == "Test park A" and back.iloc[0]["risk_grade"] == "red"
    assert abs(back.geometry.iloc[0].area - 0.0004) < 1e-9


def _receptors_frame():
    return gpd.GeoDataFrame(
        {"name": ["学校一", "医院二"], "kind": ["school", "hospital"], "protection_class": ["high_sensitive"] * 2,
         "people": [1200, 800]},
        geometry=[shapely.Point(102.70, 25.03), shapely.Point(102.72, 25.05)], crs="EPSG:4326",
    )


def test_gpkg_zipped_shapefile_and_csv(clean, tmp_path):
    frame = _receptors_frame()
    frame.to_file(tmp_path / "r.gpkg", driver="GPKG")
    import_file(clean, RECEPTORS, tmp_path / "r.gpkg", area=AREA)
    shp = tmp_path / "shp"
    shp.mkdir()
    frame.to_file(shp / "r.shp", encoding="utf-8")
    with zipfile.ZipFile(tmp_path / "r.zip", "w") as z:
        for p in shp.iterdir():
            z.write(p, p.name)
    import_file(clean, RECEPTORS, tmp_path / "r.zip", area=AREA)
    with zipfile.ZipFile(tmp_path / "in_folder.zip", "w") as z:  # (as `zip -r` of the folder makes it)
        for p in shp.iterdir():
            z.write(p, f"shp/{p.name}")
    import_file(clean, RECEPTORS, tmp_path / "in_folder.zip", area=AREA)
    (tmp_path / "r.csv").write_text("name,kind,people,lon,lat\n幼儿园,kindergarten,90,102.71,25.04\n")
    import_file(clean, RECEPTORS, tmp_path / "r.csv", area=AREA)
    assert count(clean, RECEPTORS) == 7


def test_gcj02_and_bd09_sources_land_on_wgs84(clean, tmp_path):
    lon, lat = 102.71, 25.04
    glon, glat = crs.wgs84_to_gcj02(lon, lat)
    blon, blat = crs.gcj02_to_bd09(glon, glat)
    (tmp_path / "g.csv").write_text(f"name,kind,lon,lat\nG,school,{glon:.9f},{glat:.9f}\n")
    (tmp_path / "b.csv").write_text(f"name,kind,lon,lat\nB,school,{blon:.9f},{blat:.9f}\n")
    import_file(clean, RECEPTORS, tmp_path / "g.csv", source_crs="GCJ-02", area=AREA)
    import_file(clean, RECEPTORS, tmp_path / "b.csv", source_crs="BD-09", area=AREA)
    with clean.connect() as conn:
        d = conn.execute(text(
            "SELECT max(ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)) "
            "FROM receptors"), {"lon": lon, "lat": lat}).scalar_one()
    assert d < 0.5


def test_projected_source_crs(clean, tmp_path):
    frame = _receptors_frame().to_crs(4543)
    frame.to_file(tmp_path / "m.gpkg", driver="GPKG")
    import_file(clean, RECEPTORS, tmp_path / "m.gpkg", area=AREA)  # CRS read from the file
    with clean.connect() as conn:
        x = conn.execute(text("SELECT ST_X(geom) FROM receptors ORDER BY id LIMIT 1")).scalar_one()
    assert abs(x - 102.70) < 1e-7


def test_wrong_crs_and_broken_files_are_clear_errors(clean, tmp_path):
    (tmp_path / "m.csv").write_text("name,kind,lon,lat\nX,school,512000,2770000\n")
    with pytest.raises(ImportRejected, match="1 of 1"):
        import_file(clean, RECEPTORS, tmp_path / "m.csv", area=AREA)
    (tmp_path / "broken.geojson").write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(DataError, match="cannot read"):
        import_file(clean, RECEPTORS, tmp_path / "broken.geojson", area=AREA)
    with pytest.raises(DataError, match="needs column"):
        (tmp_path / "nokind.csv").write_text("name,lon,lat\nX,102.7,25.0\n")
        import_file(clean, RECEPTORS, tmp_path / "nokind.csv", area=AREA)
    with pytest.raises(DataError, match="unknown source CRS"):
        import_file(clean, RECEPTORS, tmp_path / "m.csv", source_crs="EPSG:0", area=AREA)
    assert count(clean, RECEPTORS) == 0


def test_installation_inventory_goes_to_child_rows(clean, tmp_path):
    feat = {"type": "Feature", "properties": {
        "name": "储罐区", "unit_type": "storage",
        "chemicals": [{"name": "氯", "cas": "7782-50-5", "un_number": "1017", "quantity_t": 12.5},
                      {"name": "氨", "cas": "7664-41-7", "quantity_t": 3}]},
        "geometry": {"type": "Polygon", "coordinates": [[[102.4, 24.9], [102.401, 24.9], [102.401, 24.901], [102.4, 24.901], [102.4, 24.9]]]}}
    path = tmp_path / "hi.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feat]}, ensure_ascii=False))
    import_file(clean, registry.get("hazard_installations"), path, area=AREA)
    with clean.connect() as conn:
        rows = conn.execute(text("SELECT name, quantity_t FROM installation_chemicals ORDER BY name")).all()
    assert [(r.name, r.quantity_t) for r in rows] == [("氨", 3.0), ("氯", 12.5)]
    feat["properties"]["chemicals"] = [{"name": "氯", "quantity_t": -1}]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [feat]}, ensure_ascii=False))
    with pytest.raises(ImportRejected, match="1 of 1"):
        import_file(clean, registry.get("hazard_installations"), path, area=AREA)


def test_replace_refuses_to_lose_what_refers_to_the_layer(clean, tmp_path):
    src = json.loads((FIXTURES / "parks_mixed.geojson").read_text())
    src["features"] = src["features"][:1]
    path = tmp_path / "one.geojson"
    path.write_text(json.dumps(src))
    import_file(clean, PARKS, path, area=AREA)
    load(clean, "enterprises", gpd.GeoDataFrame({"name": ["企业一"], "park_id": [1]},
                                                geometry=[shapely.box(102.70, 25.03, 102.71, 25.04)], crs=4326))
    with pytest.raises(DataError, match=r"1 enterprises \(park_id\)"):
        import_file(clean, PARKS, path, area=AREA, replace=True)
    with clean.connect() as conn:  # nothing lost: the enterprise still belongs to its park
        assert conn.execute(text("SELECT park_id FROM enterprises")).scalar_one() == 1
    with pytest.raises(DataError, match="derived, computed by `riskmap analyze`"):
        import_file(clean, registry.get("blackspots"), path, area=AREA)


def test_sensors_keep_their_assets(clean, tmp_path):
    load(clean, "tailings_ponds", gpd.GeoDataFrame({"name": ["库一"]}, geometry=[shapely.box(102.70, 25.0, 102.71, 25.01)],
                                                   crs=4326))
    sensors = tmp_path / "s.csv"
    sensors.write_text("code,kind,asset_layer,asset_id,lon,lat\nS1,displacement,tailings_ponds,1,102.705,25.005\n"
                       "S2,displacement,tailings_ponds,999999,102.705,25.005\n", encoding="utf-8")
    with pytest.raises(DataError, match="sensors name assets that do not exist: tailings_ponds 999999"):
        import_file(clean, registry.get("monitoring_sensors"), sensors, area=AREA)
    sensors.write_text("code,kind,asset_layer,asset_id,lon,lat\nS1,displacement,tailings_ponds,1,102.705,25.005\n",
                       encoding="utf-8")
    import_file(clean, registry.get("monitoring_sensors"), sensors, area=AREA)
    ponds = tmp_path / "p.geojson"
    gpd.GeoDataFrame({"name": ["库二"]}, geometry=[shapely.box(102.72, 25.0, 102.73, 25.01)], crs=4326).to_file(ponds)
    # replacing the ponds would leave the sensor on a pond that no longer exists (or on another with its id)
    with pytest.raises(DataError, match=r"1 monitoring_sensors \(asset_layer, asset_id\)"):
        import_file(clean, registry.get("tailings_ponds"), ponds, area=AREA, replace=True)
    assert count(clean, registry.get("tailings_ponds")) == 1


@pytest.mark.parametrize("when,reason", [("NaT", "occurred_at: required"), ("now", "not a date and time"),
                                         ("3000-01-01", "not between 1900 and now")])
def test_accident_times_must_be_real_and_past(clean, tmp_path, when, reason):
    path = tmp_path / "acc.csv"
    path.write_text(f"occurred_at,kind,lon,lat\n{when},collision,102.71,25.04\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, registry.get("accidents"), path, area=AREA)
    assert reason in err.value.rejections[0].reason


def test_ids_and_references_the_database_would_refuse_are_clear_errors(clean, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("id,name,kind,lon,lat\n1,a,school,102.71,25.04\n1,b,school,102.72,25.04\n,c,school,102.73,25.04\n"
                    "2,d\x00,school,102.74,25.04\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (2, "id: 1 is also row 1's"), (3, "id: missing (the file gives ids: every row needs one)"),
        (4, "name: contains a NUL character")]
    path.write_text("id,name,kind,lon,lat\n1,a,school,102.71,25.04\n", encoding="utf-8")
    import_file(clean, RECEPTORS, path, area=AREA)
    with pytest.raises(DataError, match=r"nothing written: duplicate key.*\(Key \(id\)=\(1\) already exists"):
        import_file(clean, RECEPTORS, path, area=AREA)
    assert count(clean, RECEPTORS) == 1


def test_csv_export_keeps_every_decimal(clean, tmp_path):
    line = shapely.LineString([(102.712345678, 25.041234567), (102.723456789, 25.052345678)])
    load(clean, "roads", gpd.GeoDataFrame({"name": ["路"], "road_class": ["urban"]}, geometry=[line], crs=4326))
    out = tmp_path / "roads.csv"
    export_layer(clean, registry.get("roads"), out, "csv")
    back = shapely.from_wkt(next(csv.DictReader(out.open(encoding="utf-8")))["wkt"])
    assert back.equals_exact(line, 1e-12)  # (6 decimals would be ~7 cm off)
    with pytest.raises(DataError, match="no folder"):
        export_layer(clean, registry.get("roads"), tmp_path / "none" / "roads.csv", "csv")


# ---- bounds of numeric fields (FieldSpec.minimum/maximum) ----------------------------------------

def test_counts_out_of_bounds_are_rejected_row_by_row(clean, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("name,kind,people,lon,lat\n"
                    "a,school,-5,102.71,25.04\n"          # below 0
                    "b,school,10000000,102.72,25.04\n"    # the maximum: fine
                    "c,school,10000001,102.73,25.04\n"    # one above
                    "d,school,2147483000,102.74,25.04\n"  # fits the integer column, not the bound
                    "e,school,0,102.75,25.04\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (1, "people: -5 is below the minimum of 0"), (3, "people: 10000001 is above the maximum of 10000000"),
        (4, "people: 2147483000 is above the maximum of 10000000")]
    assert "3 of 5" in err.value.report() and count(clean, RECEPTORS) == 0  # all or nothing
    path.write_text("name,kind,people,lon,lat\nb,school,10000000,102.72,25.04\ne,school,0,102.75,25.04\n",
                    encoding="utf-8")
    assert import_file(clean, RECEPTORS, path, area=AREA).written == 2
    with clean.connect() as conn:
        assert conn.execute(text("SELECT sum(people) FROM receptors")).scalar_one() == 10_000_000


@pytest.mark.parametrize("layer,header,row,reason", [
    ("accidents", "occurred_at,kind,deaths,injuries", "2024-05-01 08:30,collision,-1,2",
     "deaths: -1 is below the minimum of 0"),
    ("emergency_resources", "name,kind,capacity", "消防站,fire_station,-3", "capacity: -3 is below the minimum of 0"),
    ("tailings_ponds", "name,dam_height_m", "库,-0.5", "dam_height_m: -0.5 is below the minimum of 0"),
    ("tailings_ponds", "name,toe_lat", "库,91", "toe_lat: 91.0 is above the maximum of 90"),
    ("admin_areas", "name,adcode,population", "区,530102,-100", "population: -100 is below the minimum of 0"),
    ("roads", "road_class,length_m", "urban,-12.5", "length_m: -12.5 is below the minimum of 0"),
])
def test_bounds_of_other_layers(clean, tmp_path, layer, header, row, reason):
    spec = registry.get(layer)
    geom = {"Point": "POINT (102.71 25.04)", "LineString": "LINESTRING (102.71 25.04, 102.72 25.04)",
            "MultiPolygon": "POLYGON ((102.71 25.04, 102.72 25.04, 102.72 25.05, 102.71 25.04))"}[spec.geometry_type]
    path = tmp_path / "x.csv"
    path.write_text(f"{header},wkt\n{row},\"{geom}\"\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, spec, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [(1, reason)]


def test_a_field_that_may_be_negative_has_no_minimum(clean, tmp_path):
    path = tmp_path / "roads.csv"  # roads' layer: -1 is under ground (OSM)
    path.write_text('road_class,layer,wkt\nurban,-1,"LINESTRING (102.71 25.04, 102.72 25.04)"\n', encoding="utf-8")
    assert import_file(clean, registry.get("roads"), path, area=AREA).written == 1
    assert registry.get("roads").field("layer").minimum is None


def test_filters_are_not_held_to_the_bounds(client, clean):
    # A filter of the features API is not held to the bounds: a row stored before them can still be found
    # (the type and the column's range still are: 400).
    with clean.begin() as conn:
        conn.execute(text("INSERT INTO receptors (name, kind, people, geom) "
                          "VALUES ('旧', 'school', -5, ST_GeomFromText('POINT(102.71 25.04)', 4326))"))
    r = client.get("/collections/receptors/items", params={"people": "-5"})
    assert r.status_code == 200 and [f["properties"]["name"] for f in r.json()["features"]] == ["旧"]
    r = client.get("/collections/receptors/items", params={"people": "1.5"})
    assert r.status_code == 400 and "people: '1.5' is not a whole number" in r.json()["description"]


# ---- GeoPackage with several layers ------------------------------------------------------------------

def _two_layer_gpkg(path):
    frame = _receptors_frame()
    frame.iloc[[0]].to_file(path, layer="schools", driver="GPKG")
    frame.iloc[[1]].to_file(path, layer="hospitals", driver="GPKG")
    import pyogrio
    pyogrio.write_dataframe(pd.DataFrame({"note": ["an attribute table"]}), path, layer="notes")


def test_geopackage_with_several_layers_needs_one_chosen(clean, tmp_path):
    path = tmp_path / "two.gpkg"
    _two_layer_gpkg(path)
    with pytest.raises(DataError, match=r"^two.gpkg holds 2 layers: schools, hospitals; choose the one to import "
                                        r"with --source-layer NAME$"):
        import_file(clean, RECEPTORS, path, area=AREA)
    with pytest.raises(DataError, match=r"two.gpkg has no layer 'clinics'; its layers: schools, hospitals, notes"):
        import_file(clean, RECEPTORS, path, area=AREA, source_layer="clinics")
    with pytest.raises(DataError, match=r"layer 'notes' of two.gpkg is a table without geometries"):
        import_file(clean, RECEPTORS, path, area=AREA, source_layer="notes")
    assert count(clean, RECEPTORS) == 0
    assert import_file(clean, RECEPTORS, path, area=AREA, source_layer="hospitals").written == 1
    with clean.connect() as conn:
        assert conn.execute(text("SELECT name FROM receptors")).scalars().all() == ["医院二"]
    one = tmp_path / "one.gpkg"  # one layer with geometries (and an attribute table): taken as before
    _receptors_frame().to_file(one, layer="receptors", driver="GPKG")
    import pyogrio
    pyogrio.write_dataframe(pd.DataFrame({"note": ["x"]}), one, layer="notes")
    assert import_file(clean, RECEPTORS, one, area=AREA).written == 2
    (tmp_path / "r.csv").write_text("name,kind,lon,lat\nA,school,102.71,25.04\n", encoding="utf-8")
    with pytest.raises(DataError, match="--source-layer is for files that hold several layers"):
        import_file(clean, RECEPTORS, tmp_path / "r.csv", area=AREA, source_layer="x")


def test_cli_source_layer(db_url, clean, tmp_path):
    path = tmp_path / "two.gpkg"
    _two_layer_gpkg(path)
    env = {**os.environ, "DATABASE_URL": db_url}
    r = subprocess.run([RISKMAP, "import", "receptors", str(path)], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "holds 2 layers: schools, hospitals" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([RISKMAP, "import", "receptors", str(path), "--source-layer", "schools"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "imported 1 features into receptors" in r.stdout
    r = subprocess.run([RISKMAP, "import", "--help"], capture_output=True, text=True, env={**env, "COLUMNS": "200"})
    assert "--source-layer" in r.stdout and "holds several" in " ".join(r.stdout.split())  # (help text wrapped)


# ---- a GeoJSON property holding a list or an object ---------------------------------------------------

def test_geojson_list_or_object_property_is_named_as_such(clean, tmp_path):
    def feat(**props):
        return {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [102.71, 25.04]}}

    path = tmp_path / "nested.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        feat(name="甲", kind="school", people=[1, 2]),
        feat(name={"a": 1}, kind="school", people=3),
        feat(name="丙", kind=["school"], people=4),
        feat(name="丁", kind="school", people=5),  # fine: scalar values beside the lists of other rows
    ]}, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (1, "people: the property holds a list ([1, 2]); people expects a single value: a whole number (int) "
            "from 0 to 10000000"),
        (2, 'name: the property holds an object ({"a": 1}); name expects a single value: text (str)'),
        (3, 'kind: the property holds a list (["school"]); kind expects a single value: text (str), one of the codes '
            "school, kindergarten, hospital, care_home, residential, market, office, prison")]
    assert count(clean, RECEPTORS) == 0


# ---- encodings, columns, values and geometries as editors' files hold them ---------------------------

def _zip_folder(folder, path):
    with zipfile.ZipFile(path, "w") as z:
        for p in folder.iterdir():
            z.write(p, p.name)
    return path


def _names(engine, layer):
    with engine.connect() as conn:
        return conn.execute(text(f"SELECT name FROM {layer} ORDER BY id")).scalars().all()


def test_shapefile_that_does_not_say_its_encoding_needs_one(clean, tmp_path):
    shp = tmp_path / "shp"
    shp.mkdir()
    _receptors_frame().to_file(shp / "r.shp", encoding="GBK")  # (its field protection_class cut to 'protection')
    (shp / "r.cpg").unlink()
    dbf = bytearray((shp / "r.dbf").read_bytes())
    dbf[29] = 0  # no language driver id either: GDAL would read the GBK text as ISO-8859-1
    (shp / "r.dbf").write_bytes(dbf)
    for path in (_zip_folder(shp, tmp_path / "r.zip"), shp / "r.shp"):
        with pytest.raises(DataError) as err:
            import_file(clean, RECEPTORS, path, area=AREA)
        assert str(err.value) == (f"{path.name}: the Shapefile does not say its text encoding (.cpg): "
                                  "give --encoding GBK (or UTF-8)")
    result = import_file(clean, RECEPTORS, tmp_path / "r.zip", area=AREA, encoding="GBK")
    assert result.written == 2 and result.matched_columns == {"protection": "protection_class"}
    assert _names(clean, "receptors") == ["学校一", "医院二"]
    with clean.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT protection_class FROM receptors")).scalars().all() == ["high_sensitive"]
    ascii_only = _receptors_frame().assign(name=["A", "B"])  # nothing to misread: no encoding needed
    ascii_only.to_file(shp / "r.shp", encoding="GBK")
    (shp / "r.cpg").unlink()
    assert import_file(clean, RECEPTORS, shp / "r.shp", area=AREA).written == 2


def test_csv_that_is_not_utf8_needs_its_encoding(clean, tmp_path):
    path = tmp_path / "gbk.csv"  # Excel's "CSV (逗号分隔)" on Chinese Windows
    path.write_bytes("name,kind,经度,纬度\n学校一,school,102.71,25.04\n".encode("gbk"))
    with pytest.raises(DataError) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert str(err.value) == "gbk.csv is not UTF-8: give --encoding GBK (GB18030), or save it as 'CSV UTF-8'"
    assert import_file(clean, RECEPTORS, path, area=AREA, encoding="GBK").written == 1
    assert import_file(clean, RECEPTORS, path, area=AREA, encoding="gb18030").written == 1
    assert _names(clean, "receptors") == ["学校一", "学校一"]
    with pytest.raises(DataError, match=r"^unknown encoding 'latin-9x'"):
        import_file(clean, RECEPTORS, path, area=AREA, encoding="latin-9x")
    geojson = tmp_path / "r.geojson"
    _receptors_frame().to_file(geojson)
    with pytest.raises(DataError, match=r"^r.geojson is UTF-8 by definition: --encoding is for Shapefiles and CSV"):
        import_file(clean, RECEPTORS, geojson, area=AREA, encoding="GBK")


def test_make_valid_keeps_the_union_of_the_parts_and_says_what_it_repaired(clean, tmp_path):
    d = 0.01
    inner = shapely.box(102.70, 25.03, 102.70 + d, 25.03 + d)  # an inner zone, and the outer zone around it
    outer = shapely.Polygon(shapely.box(102.70 - d, 25.03 - d, 102.70 + 2 * d, 25.03 + 2 * d).exterior.coords,
                            [inner.exterior.coords])
    eight = shapely.Polygon([(102.7, 25.03), (102.72, 25.04), (102.72, 25.03), (102.7, 25.06)])  # crossed lobes
    path = tmp_path / "w.geojson"
    gpd.GeoDataFrame({"name": ["内外", "八字", "好"], "zone_level": ["grade1"] * 3},
                     geometry=[shapely.MultiPolygon([inner, outer]), eight, inner], crs=4326).to_file(path)
    with pytest.raises(ImportRejected) as err:
        import_file(clean, registry.get("water_source_zones"), path, area=AREA)
    assert [r.row for r in err.value.rejections] == [1, 2] and "use --make-valid" in err.value.rejections[0].reason
    result = import_file(clean, registry.get("water_source_zones"), path, area=AREA, make_valid=True)
    assert result.repaired == ["row 1: repaired (area changed by less than 1 %)", "row 2: repaired (area +25 %)"]
    with clean.connect() as conn:
        areas = conn.execute(text("SELECT ST_Area(geom) FROM water_source_zones ORDER BY id")).scalars().all()
    assert areas == pytest.approx([9 * d * d, 2.5 * d * d, d * d])  # the inner zone kept (not cut out: 8 d²)


def _feature(fid=None, **props):
    feat = {"type": "Feature", "properties": props, "geometry": {"type": "Point", "coordinates": [102.71, 25.04]}}
    return feat if fid is None else {"id": fid, **feat}


def _collection(path, *features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": list(features)}, ensure_ascii=False),
                    encoding="utf-8")
    return path


def test_geojson_feature_ids_are_the_ids(clean, client, tmp_path):
    path = _collection(tmp_path / "ids.geojson", _feature(900101, name="甲", kind="school"),
                       _feature(900102, name="乙", kind="school"))
    assert import_file(clean, RECEPTORS, path, area=AREA).written == 2
    with clean.connect() as conn:
        assert conn.execute(text("SELECT id FROM receptors ORDER BY id")).scalars().all() == [900101, 900102]
    _collection(path, _feature(7, name="甲", kind="school"), _feature(name="乙", kind="school"),
                _feature(7, name="丙", kind="school"))
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (2, "id: missing (the file gives ids: every row needs one)"), (3, "id: 7 is also row 1's")]
    # the server's own output (ids beside the properties) comes back with its ids
    items = client.get("/collections/receptors/items").json()
    assert [f["id"] for f in items["features"]] == [900101, 900102] and "id" not in items["features"][0]["properties"]
    (tmp_path / "items.geojson").write_text(json.dumps(items), encoding="utf-8")
    with clean.begin() as conn:
        conn.execute(text("TRUNCATE receptors"))
    assert import_file(clean, RECEPTORS, tmp_path / "items.geojson", area=AREA).written == 2
    with clean.connect() as conn:
        assert conn.execute(text("SELECT id, name FROM receptors ORDER BY id")).all() == [(900101, "甲"), (900102, "乙")]
    # text ids (a WFS's "receptors.1") name features elsewhere: not taken as ids, the rows get new ones
    wfs = tmp_path / "wfs.geojson"
    wfs.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "receptors.1", "properties": {"name": "丙", "kind": "school"},
         "geometry": {"type": "Point", "coordinates": [102.71, 25.04]}}]}), encoding="utf-8")
    import_file(clean, RECEPTORS, wfs, area=AREA)
    with clean.connect() as conn:
        assert conn.execute(text("SELECT id > 900102 FROM receptors WHERE name = '丙'")).scalar_one()


def test_shapefile_short_field_names(clean, tmp_path):
    from layers.io import match_columns

    shp = tmp_path / "acc"
    shp.mkdir()
    gpd.GeoDataFrame({"occurred_at": ["2024-05-01 08:30"], "kind": ["collision"], "injuries": [2]},
                     geometry=[shapely.Point(102.71, 25.04)], crs=4326).to_file(shp / "acc.shp", encoding="UTF-8")
    result = import_file(clean, registry.get("accidents"), _zip_folder(shp, tmp_path / "acc.zip"), area=AREA)
    assert result.matched_columns == {"occurred_a": "occurred_at"}
    with clean.connect() as conn:
        assert conn.execute(text("SELECT occurred_at AT TIME ZONE 'Asia/Shanghai' FROM accidents")).scalar_one() \
            .isoformat() == "2024-05-01T08:30:00"
    ponds = registry.get("tailings_ponds")
    shp = tmp_path / "tp"
    shp.mkdir()
    gpd.GeoDataFrame({"name": ["库"], "dam_height_m": [30.0], "downstream_people": [5], "downstream_receptors": [1]},
                     geometry=[shapely.box(102.7, 25.0, 102.71, 25.01)], crs=4326).to_file(shp / "tp.shp",
                                                                                          encoding="UTF-8")
    with pytest.raises(DataError) as err:  # downstream, downstre_1: which of the three downstream_* fields?
        import_file(clean, ponds, _zip_folder(shp, tmp_path / "tp.zip"), area=AREA)
    assert str(err.value) == ("column 'downstream' looks like a Shapefile-shortened name that cannot be matched to "
                              "one field: use GeoPackage or GeoJSON")
    frame = gpd.GeoDataFrame({"name": ["库"], "capacity_1": [3.0], "downstre_1": [1]}, geometry=[None])
    with pytest.raises(DataError, match=r"^column 'downstre_1' looks like a Shapefile-shortened name"):
        match_columns(ponds, frame, shapefile=True)
    assert match_columns(ponds, frame.drop(columns="downstre_1"), shapefile=True)[1] == {"capacity_1": "capacity_10k_m3"}
    assert match_columns(ponds, frame.drop(columns="downstre_1"))[1] == {}  # (cut names: only in Shapefiles)
    assert count(clean, ponds) == 0


def test_dates_are_read_one_way_only(clean, tmp_path):
    path = tmp_path / "acc.csv"
    path.write_text("occurred_at,kind,lon,lat\n2024年5月1日,collision,102.71,25.04\n"
                    "2024年5月1日 08时30分,collision,102.71,25.04\n2024年5月1日 8:30,collision,102.71,25.04\n"
                    "01/05/2024,collision,102.71,25.04\n13-05-2024 08:30,collision,102.71,25.04\n"
                    "5月1日,collision,102.71,25.04\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, registry.get("accidents"), path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (4, "occurred_at: '01/05/2024' could be day/month or month/day: write dates as YYYY-MM-DD"),
        (5, "occurred_at: '13-05-2024 08:30' could be day/month or month/day: write dates as YYYY-MM-DD"),
        (6, "occurred_at: '5月1日' is not a date and time; write it as YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS], "
            "ISO 8601 with a zone (2024-05-01T08:30:00+08:00) or YYYY年M月D日[ H时M分]")]
    path.write_text("\n".join(path.read_text(encoding="utf-8").splitlines()[:4]) + "\n", encoding="utf-8")
    assert import_file(clean, registry.get("accidents"), path, area=AREA).written == 3
    with clean.connect() as conn:
        times = conn.execute(text("SELECT to_char(occurred_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD HH24:MI') "
                                  "FROM accidents ORDER BY id")).scalars().all()
    assert times == ["2024-05-01 00:00", "2024-05-01 08:30", "2024-05-01 08:30"]


def test_blank_cells_and_json_booleans(clean, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("name,kind,people,lon,lat\n   ,school,1,102.71,25.04\n\u3000,school,1,102.71,25.04\n"
                    "甲,school,  ,102.71,25.04\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [(1, "name: required"), (2, "name: required")]
    path = _collection(tmp_path / "b.geojson", _feature(name="甲", kind="school", people=5),
                       _feature(name="乙", kind="school", people=True))
    with pytest.raises(ImportRejected) as err:  # (GDAL would read true as 1 in a column of numbers)
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [(2, "people: must be a number, got true")]
    path = tmp_path / "r.csv"
    path.write_text("name,kind,people,lon,lat\n甲,school,  ,102.71,25.04\n", encoding="utf-8")
    assert import_file(clean, RECEPTORS, path, area=AREA).written == 1
    with clean.connect() as conn:
        assert conn.execute(text("SELECT name, people FROM receptors")).one() == ("甲", None)


def test_unreadable_csv_geometries_say_why(clean, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text('name,kind,wkt\na,school,"POINT (102.7"\nb,school,\nc,school,POINT (102.71 25.04)\n',
                    encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (1, "cannot read the WKT: Expected number but encountered end of stream"), (2, "missing or empty geometry")]
    path.write_text("name,kind,lon,lat\na,school,102.7O,25.04\nb,school,,\nc,school,102.71,25.04\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (1, "lon/lat not numbers ('102.7O', '25.04')"), (2, "missing or empty geometry")]


def test_chinese_titles_code_labels_yes_no_and_thousands(clean, tmp_path):
    path = tmp_path / "acc.csv"
    path.write_text('发生时间,事故类型,受伤人数,涉危化品,lon,lat\n2024-05-01 08:30,碰撞,"1,200",是,102.71,25.04\n'
                    "2024-05-02 08:30,Collision,3,Y,102.71,25.04\n2024-05-03 08:30,ROLLOVER,0,no,102.71,25.04\n",
                    encoding="utf-8")
    result = import_file(clean, registry.get("accidents"), path, area=AREA)
    assert result.matched_columns == {"发生时间": "occurred_at", "事故类型": "kind", "受伤人数": "injuries", "涉危化品": "hazmat"}
    with clean.connect() as conn:
        rows = conn.execute(text("SELECT kind, injuries, hazmat FROM accidents ORDER BY id")).all()
    assert rows == [("collision", 1200, True), ("collision", 3, True), ("rollover", 0, False)]
    path = tmp_path / "r.csv"
    path.write_text("name,名称,kind,lon,lat\na,甲,学校,102.71,25.04\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert str(err.value) == "columns 'name' and '名称' both give name: keep one of them"
    r = subprocess.run([RISKMAP, "fields", "receptors"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "receptors: 防护目标 / Protection targets (Point)"
    assert "      school: 学校 / School" in lines and any(
        line.split() == ["people", "int", "人数", "/", "People", "[from", "0", "to", "10000000]"] for line in lines)


def test_cli_says_each_phase_and_no_library_warnings(db_url, clean, tmp_path):
    env = {**os.environ, "DATABASE_URL": db_url}
    path = tmp_path / "bad.geojson"  # repeated ids and empty coordinates: GDAL warns of both
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        _feature(name="a", kind="school", id=9), _feature(name="b", kind="school", id=9),
        {"type": "Feature", "properties": {"name": "c", "kind": "school", "id": 3},
         "geometry": {"type": "Point", "coordinates": []}}]}), encoding="utf-8")
    r = subprocess.run([RISKMAP, "import", "receptors", str(path)], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "Warning" not in r.stderr and "site-packages" not in r.stderr, r.stderr
    assert r.stderr.splitlines() == [
        "reading bad.geojson ...", "validating 3 features ...",
        "error: 2 of 3 features rejected for layer 'receptors'; nothing written",
        "  row 2: id: 9 is also row 1's", "  row 3: missing or empty geometry", f"({ROW_NOTE})"]
    path = tmp_path / "gbk.csv"
    path.write_bytes("name,kind,lon,lat\n学校一,学校,102.71,25.04\n".encode("gbk"))
    r = subprocess.run([RISKMAP, "import", "receptors", str(path), "--encoding", "GBK"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr.splitlines() == [
        "reading gbk.csv ...", "validating 1 features ...", "writing 1 features ...",
        "analysing the table receptors ..."], r.stderr
    assert _names(clean, "receptors") == ["学校一"]


# ---- QA: history on --replace, structure lengths, references, exports, bounds, row numbers ------------

def test_replacing_sensors_refuses_to_discard_their_history(db_url, clean, tmp_path):
    load(clean, "tailings_ponds", gpd.GeoDataFrame({"name": ["库一"]}, geometry=[shapely.box(102.70, 25.0, 102.71, 25.01)],
                                                   crs=4326))
    sensors = tmp_path / "s.csv"
    sensors.write_text("code,kind,asset_layer,asset_id,lon,lat\nS1,displacement,tailings_ponds,1,102.705,25.005\n",
                       encoding="utf-8")
    import_file(clean, registry.get("monitoring_sensors"), sensors, area=AREA)
    with clean.begin() as conn:  # two readings, the sensor's state and an alarm it raised
        conn.execute(text("INSERT INTO monitoring_readings (sensor_id, time, value) VALUES "
                          "(1, '2024-05-01 08:00+08', 1.5), (1, '2024-05-01 08:10+08', 1.7)"))
        conn.execute(text("INSERT INTO monitoring_sensor_state (sensor_id) VALUES (1)"))
        conn.execute(text("INSERT INTO monitoring_alarms (asset_layer, asset_id, item, level, max_level, opened_at, "
                          "updated_at, sensor_code) VALUES ('tailings_ponds', 1, 'displacement', 2, 2, now(), now(), 'S1')"))
    moved = tmp_path / "moved.csv"  # the sensor under another code, elsewhere on the pond
    moved.write_text("code,kind,asset_layer,asset_id,lon,lat\nS9,displacement,tailings_ponds,1,102.706,25.006\n",
                     encoding="utf-8")

    def history(conn):
        return [conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one() for t in
                ("monitoring_sensors", "monitoring_readings", "monitoring_sensor_state", "monitoring_alarms")]

    with pytest.raises(DataError) as err:
        import_file(clean, registry.get("monitoring_sensors"), moved, area=AREA, replace=True)
    assert "2 monitoring_readings (sensor_id), 1 monitoring_sensor_state (sensor_id), 1 monitoring_alarms" in str(err.value)
    assert "--discard-history" in str(err.value) and "--discard-history" in err.value.zh
    assert "历史记录" in err.value.zh
    with clean.connect() as conn:
        assert history(conn) == [1, 2, 1, 1]  # nothing lost
    env = {**os.environ, "DATABASE_URL": db_url}
    r = subprocess.run([RISKMAP, "import", "monitoring_sensors", str(moved), "--replace"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 2 and "2 monitoring_readings" in r.stderr and "确需替换请加 --discard-history" in r.stderr
    r = subprocess.run([RISKMAP, "import", "monitoring_sensors", str(moved), "--replace", "--discard-history"], env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with clean.connect() as conn:  # readings and state gone with the sensor; the pond's alarm kept
        assert history(conn) == [1, 0, 0, 1]
        assert conn.execute(text("SELECT code FROM monitoring_sensors")).scalar_one() == "S9"
    # the same codes again: only the readings and states (none now) would be lost, not the alarms' sensors
    import_file(clean, registry.get("monitoring_sensors"), moved, area=AREA, replace=True)


def test_structures_without_a_length_take_it_and_their_class_from_their_line(clean, tmp_path):
    from gis.routing import STRUCTURE_CLASS_SQL
    from layers.io import GEOD

    def line(lon, lat, metres):  # a straight line east of (lon, lat), ``metres`` long on the ellipsoid
        x, y, _ = GEOD.fwd(lon, lat, 90, metres)
        return f"LINESTRING ({lon} {lat}, {x} {y})"

    path = tmp_path / "st.csv"
    path.write_text("name,kind,length_m,wkt\n"
                    f"大桥,bridge,,\"{line(102.70, 25.00, 1509)}\"\n"      # 特大桥: L > 1000 m (JTG D60-2015)
                    f"隧道,tunnel,,\"{line(102.70, 25.02, 1662)}\"\n"      # 长隧道: 1000 < L <= 3000 m (JTG 3370.1)
                    f"中桥,bridge,45,\"{line(102.70, 25.04, 1509)}\"\n",  # a given length is kept, and classes it
                    encoding="utf-8")
    import_file(clean, registry.get("restricted_structures"), path, area=AREA)
    with clean.connect() as conn:
        rows = conn.execute(text(f"SELECT name, length_m, structure_class, {STRUCTURE_CLASS_SQL} AS class "
                                 "FROM restricted_structures s ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("大桥", 1509.0, "bridge_xl", "bridge_xl"), ("隧道", 1662.0, "tunnel_l", "tunnel_l"),
                                        ("中桥", 45.0, "bridge_m", "bridge_m")]


def test_references_to_missing_rows_are_rejected_row_by_row(clean, tmp_path):
    load(clean, "enterprises", gpd.GeoDataFrame({"name": ["企业一"]}, geometry=[shapely.box(102.70, 25.03, 102.71, 25.04)],
                                                crs=4326))
    square = "POLYGON ((102.70 25.03, 102.701 25.03, 102.701 25.031, 102.70 25.03))"
    path = tmp_path / "hi.csv"
    path.write_text("name,enterprise_id,level,wkt\n"
                    f"罐区一,1,2,\"{square}\"\n"
                    f"罐区二,999,2,\"{square}\"\n"     # no enterprise 999
                    f"罐区三,,7,\"{square}\"\n"        # no level 7
                    f"罐区四,998,1,\"{square}\"\n", encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, registry.get("hazard_installations"), path, area=AREA)
    assert [(r.row, r.reason) for r in err.value.rejections] == [
        (2, "enterprise_id 999: no such row in enterprises / 危险化学品企业（enterprises）中无编号 999"),
        (3, "level: 7 is not a valid code (allowed: 1, 2, 3, 4)"),
        (4, "enterprise_id 998: no such row in enterprises / 危险化学品企业（enterprises）中无编号 998")]
    assert count(clean, registry.get("hazard_installations")) == 0


def test_out_of_range_whole_numbers_quote_the_fields_own_bounds(clean, tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("name,kind,people,lon,lat\na,school,99999999999,102.71,25.04\nb,school,-99999999999,102.71,25.04\n",
                    encoding="utf-8")
    with pytest.raises(ImportRejected) as err:
        import_file(clean, RECEPTORS, path, area=AREA)
    assert [r.reason for r in err.value.rejections] == ["people: 99999999999 is above the maximum of 10000000",
                                                        "people: -99999999999 is below the minimum of 0"]
    path.write_text("name,enterprise_id,wkt\na,99999999999,\"POLYGON ((102.7 25, 102.71 25, 102.71 25.01, 102.7 25))\"\n",
                    encoding="utf-8")  # a field without bounds: its column's range
    with pytest.raises(ImportRejected) as err:
        import_file(clean, registry.get("hazard_installations"), path, area=AREA)
    assert err.value.rejections[0].reason == \
        "enterprise_id: 99999999999 is out of range (a whole number of at most 2147483647)"


def test_exports_for_excel_and_gis_keep_whole_numbers_and_import_back(clean, tmp_path):
    load(clean, "enterprises", gpd.GeoDataFrame({"name": ["企业一"]}, geometry=[shapely.box(102.70, 25.03, 102.71, 25.04)],
                                                crs=4326))
    load(clean, "receptors", gpd.GeoDataFrame(
        {"name": ["学校一", "居住区二"], "kind": ["school", "residential"], "people": [1131, None]},
        geometry=[shapely.Point(102.70, 25.03), shapely.Point(102.72, 25.05)], crs=4326))
    load(clean, "hazard_installations", gpd.GeoDataFrame(
        {"name": ["罐区一", "罐区二"], "enterprise_id": [1, None], "level": [2, None],
         "chemicals": ['[{"name": "氯", "quantity_t": 12.5}]', None]},
        geometry=[shapely.box(102.70, 25.03, 102.701, 25.031), shapely.box(102.72, 25.03, 102.721, 25.031)], crs=4326))
    columns = {"receptors": "id, name, kind, people, ST_AsText(geom)",
               "hazard_installations": "id, name, enterprise_id, level, ST_AsText(geom)"}

    def rows(layer):
        with clean.connect() as conn:
            return conn.execute(text(f"SELECT {columns[layer]} FROM {layer} ORDER BY id")).all()

    for layer, ints in (("receptors", ["people"]), ("hazard_installations", ["enterprise_id", "level"])):
        spec, before = registry.get(layer), rows(layer)
        for fmt in ("csv", "geojson", "gpkg"):
            export_layer(clean, spec, tmp_path / f"{layer}.{fmt}", fmt)
        raw = (tmp_path / f"{layer}.csv").read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf")  # UTF-8 with a byte-order mark: Excel reads the Chinese
        cells = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
        assert [[c[f] for f in ["id"] + ints] for c in cells] == (
            [["1", "1131"], ["2", ""]] if layer == "receptors" else [["1", "1", "2"], ["2", "", ""]])
        props = [f["properties"] for f in json.loads((tmp_path / f"{layer}.geojson").read_text())["features"]]
        assert [[p[f] for f in ints] for p in props] == ([[1131], [None]] if layer == "receptors" else [[1, 2], [None, None]])
        assert all(type(p[f]) is int for p in props[:1] for f in ints)  # (1131, not 1131.0)
        import pyogrio
        info = pyogrio.read_info(tmp_path / f"{layer}.gpkg")
        types = dict(zip(info["fields"], info["ogr_types"]))
        assert [types[f] for f in ["id"] + ints] == ["OFTInteger"] * (1 + len(ints))
        result = import_file(clean, spec, tmp_path / f"{layer}.csv", area=AREA, replace=True)
        assert rows(layer) == before
        # an installation without an inventory is written, and said (GB 18218 finds no major hazard in it)
        assert result.notes == ([] if layer == "receptors" else [
            "rows 2: no chemicals (the inventory, a JSON list of {name, cas, un_number, hazard_class, quantity_t}): "
            "graded not a major hazard (S = 0) until given", "第 2 行无化学品清单（chemicals 列）：补充前按非重大危险源（S = 0）计"])
    with clean.connect() as conn:  # the inventory came back with its installation
        assert conn.execute(text("SELECT installation_id, name, quantity_t FROM installation_chemicals")).one() == \
            (1, "氯", 12.5)
