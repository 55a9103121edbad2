"""Feature queries for a layer, driven by the registry (identifiers only ever come from a LayerSpec;
every value is a bound parameter)."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, func, literal, literal_column, or_, select, union_all, update

from layers import models
from layers.errors import DataError, ImportRejected
from layers.io import (_cast, check_assets, existing_references, features_frame, match_columns, select_columns,
                       store_inventories, validate)
from layers.registry import LayerSpec


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


def feature(row: dict, spec: LayerSpec) -> dict:
    geometry = json.loads(row.pop("geojson")) if row.get("geojson") else None
    fid = row.pop("id")
    return {
        "type": "Feature",
        "id": fid,
        "geometry": geometry,
        "properties": {k: _jsonable(v) for k, v in row.items()},
    }


def _where(spec: LayerSpec, role: str, bbox, filters: dict[str, str]):
    table = spec.model.__table__
    clauses = []
    if bbox is not None:
        envelope = func.ST_MakeEnvelope(*bbox, 4326)
        clauses.append(func.ST_Intersects(table.c.geom, envelope))
    visible = {f.name: f for f in spec.fields_for(role)}
    for name, raw in filters.items():
        if name not in visible:
            raise DataError(f"unknown property {name!r} for {spec.id}; filterable: {', '.join(visible)}")
        try:  # (not held to the field's minimum and maximum: rows stored before a bound can still be found)
            value = _cast(visible[name], raw, table.c[name], bounds=False)
        except (ValueError, TypeError) as exc:
            raise DataError(str(exc)) from exc
        col = table.c[name]
        clauses.append(col.is_(None) if value is None else col == value)
    return and_(*clauses) if clauses else None


def query_items(conn: Connection, spec: LayerSpec, role: str, *, bbox=None, limit: int = 100,
                offset: int = 0, filters: dict[str, str] | None = None) -> tuple[list[dict], int]:
    """A page of features (GeoJSON dicts) and the number matched in all."""
    table = spec.model.__table__
    where = _where(spec, role, bbox, filters or {})
    query = select(*select_columns(spec, role), func.ST_AsGeoJSON(table.c.geom, 7).label("geojson"))
    count = select(func.count()).select_from(table)
    if where is not None:
        query, count = query.where(where), count.where(where)
    rows = conn.execute(query.order_by(table.c.id).limit(limit).offset(offset)).mappings().all()
    matched = conn.execute(count).scalar_one()
    return [feature(dict(r), spec) for r in rows], matched


def get_item(conn: Connection, spec: LayerSpec, role: str, fid: int) -> dict | None:
    table = spec.model.__table__
    query = select(*select_columns(spec, role), func.ST_AsGeoJSON(table.c.geom, 7).label("geojson")).where(
        table.c.id == fid
    )
    row = conn.execute(query).mappings().first()
    return feature(dict(row), spec) if row else None


def layer_extent(conn: Connection, spec: LayerSpec) -> list[float] | None:
    table = spec.model.__table__
    box = conn.execute(
        select(func.ST_XMin(func.ST_Extent(table.c.geom)), func.ST_YMin(func.ST_Extent(table.c.geom)),
               func.ST_XMax(func.ST_Extent(table.c.geom)), func.ST_YMax(func.ST_Extent(table.c.geom)))
    ).one()
    return list(box) if box[0] is not None else None


def synthetic_layers(conn: Connection) -> set[str]:
    """Ids of the layers holding at least one synthetic (generated demo) record."""
    from layers.registry import LAYERS

    parts = [
        select(literal(spec.id).label("layer")).where(exists().where(spec.model.__table__.c.synthetic))
        for spec in LAYERS
    ]
    return set(conn.execute(union_all(*parts)).scalars())


SEARCH_FIELDS = ("name", "name_en", "credit_code", "adcode", "ref")


def search(conn: Connection, specs, q: str, limit: int = 20) -> list[dict]:
    """Features whose name or code contains ``q`` (case-insensitive), across ``specs``."""
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    parts = []
    for spec in specs:
        table = spec.model.__table__
        cols = [table.c[f] for f in SEARCH_FIELDS if f in table.c and f in {x.name for x in spec.fields}]
        if not cols:
            continue
        # (search_whole: one result per name, the first part's id and all parts' extent: a road, not its segments)
        box = func.ST_Extent(table.c.geom) if spec.search_whole else func.Box2D(table.c.geom)
        ident = func.min(table.c.id) if spec.search_whole else table.c.id
        found = select(literal(spec.id).label("layer"), ident.label("id"), table.c.name,
                       func.ST_XMin(box).label("x0"), func.ST_YMin(box).label("y0"),
                       func.ST_XMax(box).label("x1"), func.ST_YMax(box).label("y1")
                       ).where(or_(*[c.ilike(pattern) for c in cols]))
        parts.append((found.group_by(table.c.name).order_by(ident) if spec.search_whole else found).limit(limit))
    if not parts:
        return []
    rows = conn.execute(union_all(*parts).limit(limit)).mappings().all()
    return [{"layer": r["layer"], "id": r["id"], "name": r["name"],
             "bbox": [r["x0"], r["y0"], r["x1"], r["y1"]]} for r in rows]


# ---- editing one feature at a time (the API's POST, PUT and DELETE of items; OGC API Features Part 4)

def validated(conn: Connection, spec: LayerSpec, features: list, area) -> tuple[list[dict], list[str]]:
    """GeoJSON features validated exactly as an import validates a file's rows: the records to write and the
    properties ignored (no field of the layer). ImportRejected lists each rejected feature (row N: the N-th) and
    why; a required property no feature gives rejects each feature ("name: required"), as a blank cell would."""
    source = features_frame(features)
    frame, _ = match_columns(spec, source.frame)
    for f in spec.fields:
        if f.required and f.name not in frame.columns:
            frame[f.name] = None
    records, rejections, ignored = validate(spec, frame, area, unreadable=source.unreadable,
                                            existing=existing_references(conn, spec, frame))
    if rejections:
        raise ImportRejected(spec.id, rejections, len(frame))
    return records, ignored


def taken_ids(conn: Connection, spec: LayerSpec, ids: list[int]) -> list[int]:
    """Those of ``ids`` that rows of the layer have."""
    table = spec.model.__table__
    return sorted(conn.execute(select(table.c.id).where(table.c.id == func.any(ids))).scalars()) if ids else []


def lock_feature(conn: Connection, spec: LayerSpec, fid: int) -> bool:
    """Lock row ``fid`` for this transaction (no row of another table can come to refer to it meanwhile);
    whether it exists."""
    table = spec.model.__table__
    return conn.execute(select(table.c.id).where(table.c.id == fid).with_for_update()).first() is not None


def replace_feature(conn: Connection, spec: LayerSpec, fid: int, record: dict) -> None:
    """Update row ``fid`` to a validated record (an UPDATE: what refers to the row stays linked to it). Fields the
    record does not give get their default (NULL, or the column's default), as an import stores a row without
    them; a given ``chemicals`` list replaces the installation's inventory, none leaves it as it is."""
    check_assets(conn, spec, [record])
    table = spec.model.__table__
    values = {f.name: literal_column("DEFAULT") for f in spec.fields} | {
        k: v for k, v in record.items() if k not in ("id", "chemicals")}
    if "updated_at" in table.c:
        values["updated_at"] = func.now()
    conn.execute(update(table).where(table.c.id == fid).values(values))
    if "chemicals" in record:
        chemicals = models.InstallationChemical.__table__
        conn.execute(delete(chemicals).where(chemicals.c.installation_id == fid))
        store_inventories(conn, [fid], [record["chemicals"]])


def delete_feature(conn: Connection, spec: LayerSpec, fid: int) -> None:
    table = spec.model.__table__
    conn.execute(delete(table).where(table.c.id == fid))
