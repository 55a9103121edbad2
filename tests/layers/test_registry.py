"""The registry and the schema agree; every geometry has a GiST index; ids are unique."""

from sqlalchemy import inspect, text

from layers import registry
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
