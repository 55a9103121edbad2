"""The registry and the schema agree; every geometry has a GiST index; ids are unique; the shared code
lists (risk palette, road classes, structure length classes, route roles) are the ones the layers use."""

import doctest

import pytest
from sqlalchemy import inspect, text

from layers import registry
from layers.spec import ROAD_CLASS_SPEEDS, structure_class
import layers.spec
from layers.models import Base

PY_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


def test_every_registry_field_is_a_column_of_its_model():
    for spec in registry.LAYERS:
        cols = spec.model.__table__.c
        assert "geom" in cols and "id" in cols, spec.id
        for f in spec.fields:
            assert f.name in cols, f"{spec.id}.{f.name} has no column"
            if f.type in PY_TYPES:
                assert cols[f.name].type.python_type is PY_TYPES[f.type], f"{spec.id}.{f.name}"
        assert set(spec.popup) <= {f.name for f in spec.fields}, spec.id


def test_titles_are_bilingual_and_coded_fields_have_labels():
    for spec in registry.LAYERS:
        assert spec.title_zh and spec.title_en and spec.theme in registry.THEMES
        for f in spec.fields:
            assert f.title_zh and f.title_en
            for code in (f.codes or {}).values():
                assert code.zh and code.en


def test_schema_matches_models_and_every_geometry_is_gist_indexed(engine):
    insp = inspect(engine)
    with engine.connect() as conn:
        gist = {r.tablename for r in conn.execute(text(
            "SELECT tablename FROM pg_indexes WHERE indexdef ILIKE '%USING gist (geom)%'"))}
        geom_tables = {r.f_table_name for r in conn.execute(text(
            "SELECT f_table_name FROM geometry_columns WHERE f_table_schema = 'public'"))}
    assert geom_tables and geom_tables <= gist
    for table in Base.metadata.sorted_tables:
        db_cols = {c["name"] for c in insp.get_columns(table.name)}
        assert set(table.c.keys()) == db_cols, table.name


def test_layer_ids_are_unique_and_lookup_refuses_unknown():
    ids = [s.id for s in registry.LAYERS]
    assert len(ids) == len(set(ids))
    try:
        registry.get("'; DROP TABLE roads; --")
    except KeyError:
        pass
    else:
        raise AssertionError("unknown layer accepted")


def test_spec_docstrings():
    assert doctest.testmod(layers.spec).failed == 0


def test_risk_grades_are_the_four_colour_scheme():
    legend = [(i["value"], i["label_zh"], i["label_en"], i["color"]) for i in registry.get("chemical_parks").legend()]
    assert legend == [("red", "重大风险（红）", "Major risk (red)", "#e60012"),
                      ("orange", "较大风险（橙）", "Significant risk (orange)", "#ff8c00"),
                      ("yellow", "一般风险（黄）", "Moderate risk (yellow)", "#ffd700"),
                      ("blue", "低风险（蓝）", "Low risk (blue)", "#1e64c8")]
    # graded code lists use the same four colours, highest grade first
    for layer, field in (("hazard_installations", "level"), ("tailings_ponds", "grade"), ("receptors", "protection_class")):
        colors = [c.color for c in registry.get(layer).field(field).codes.values()][:4]
        assert colors == ["#e60012", "#ff8c00", "#ffd700", "#1e64c8"], layer


def test_road_classes_and_their_default_speeds():
    assert list(registry.get("roads").field("road_class").codes) == list(ROAD_CLASS_SPEEDS)
    assert dict(ROAD_CLASS_SPEEDS) == {"motorway": 100, "trunk": 80, "primary": 60, "secondary": 40, "urban": 40}


@pytest.mark.parametrize("kind, length, expected", [
    ("bridge", 1000.1, "bridge_xl"), ("bridge", 1000, "bridge_l"), ("bridge", 100, "bridge_l"),
    ("bridge", 99.9, "bridge_m"), ("bridge", 30.1, "bridge_m"), ("bridge", 30, "bridge_s"), ("bridge", 8, "bridge_s"),
    ("tunnel", 3000.1, "tunnel_xl"), ("tunnel", 3000, "tunnel_l"), ("tunnel", 1000.1, "tunnel_l"),
    ("tunnel", 1000, "tunnel_m"), ("tunnel", 500.1, "tunnel_m"), ("tunnel", 500, "tunnel_s"), ("tunnel", 50, "tunnel_s"),
])
def test_structure_length_classes(kind, length, expected):
    """JTG D60-2015: 特大桥 L > 1000, 大桥 100 ≤ L ≤ 1000, 中桥 30 < L < 100, 小桥 L ≤ 30;
    JTG 3370.1-2018: 特长 L > 3000, 长 1000 < L ≤ 3000, 中 500 < L ≤ 1000, 短 L ≤ 500."""
    assert structure_class(kind, length) == expected
    codes = registry.get("restricted_structures").field("structure_class").codes
    assert codes[expected].zh == {"bridge_xl": "特大桥", "bridge_l": "大桥", "bridge_m": "中桥", "bridge_s": "小桥",
                                  "tunnel_xl": "特长隧道", "tunnel_l": "长隧道", "tunnel_m": "中隧道",
                                  "tunnel_s": "短隧道"}[expected]


def test_route_layers_are_read_by_the_route_roles_and_editors():
    readers = {"route_controller", "planner", "emergency", "editor"}
    assert registry.get("hazmat_routes").roles == registry.get("route_conflicts").roles == readers


def test_numeric_bounds_of_the_base_layers():
    """Counts, sizes, lengths and amounts have a minimum of 0 (people at one receptor a maximum too); fields
    that may be negative (roads' layer) and ids (the database checks the reference) have none."""
    bounds = {(spec.id, f.name): (f.minimum, f.maximum) for spec in registry.BASE_LAYERS for f in spec.fields
              if f.minimum is not None or f.maximum is not None}
    zero = (0, None)
    assert bounds == {
        ("admin_areas", "population"): zero, ("admin_areas", "population_year"): (1900, 2100),
        ("tailings_ponds", "dam_height_m"): zero, ("tailings_ponds", "capacity_10k_m3"): zero,
        ("tailings_ponds", "toe_lon"): (-180, 180), ("tailings_ponds", "toe_lat"): (-90, 90),
        ("tailings_ponds", "downstream_people"): zero, ("tailings_ponds", "downstream_receptors"): zero,
        ("tailings_ponds", "downstream_facilities"): zero,
        ("accidents", "deaths"): zero, ("accidents", "injuries"): zero, ("accidents", "vehicles"): zero,
        ("roads", "speed_kmh"): zero, ("roads", "length_m"): zero, ("restricted_structures", "length_m"): zero,
        ("hazmat_routes", "quantity_t"): zero, ("receptors", "people"): (0, 10_000_000),
        ("emergency_resources", "capacity"): zero,
    }
    assert registry.MAX_PEOPLE == 10_000_000
    numeric = {(spec.id, f.name) for spec in registry.BASE_LAYERS for f in spec.fields if f.type in ("int", "float")}
    unbounded = numeric - set(bounds)
    assert unbounded == {("enterprises", "park_id"), ("hazard_installations", "enterprise_id"),
                         ("hazard_installations", "level"), ("tailings_ponds", "grade"),  # (code lists 1-4, 1-5)
                         ("roads", "layer"), ("roads", "osm_id")}


def test_bounds_only_on_numbers_and_in_order():
    with pytest.raises(ValueError, match="only int and float"):
        registry.F("name", "str", "名称", "Name", minimum=0)
    with pytest.raises(ValueError, match="above maximum"):
        registry.F("n", "int", "数", "N", minimum=5, maximum=1)


def test_installations_without_a_level_have_their_own_legend_entry_not_a_level_colour():
    spec = registry.get("hazard_installations")
    *levels, blank = spec.legend()
    assert [i["value"] for i in levels] == [1, 2, 3, 4]
    assert blank["value"] is None and blank["label_en"] == "No level (not a major hazard, or not graded)"
    assert blank["color"] == spec.style.fill and blank["color"] not in {i["color"] for i in levels}
