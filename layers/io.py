"""Import and export of layers.

Import = read (GeoJSON, GeoPackage, zipped Shapefile, CSV with lon/lat or WKT) -> normalise CRS to
EPSG:4326 (EPSG codes, GCJ-02, BD-09) -> validate every feature against the registry -> write all of
it in one transaction, or nothing (``ImportRejected`` lists each rejected row and why).
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from shapely.validation import explain_validity
from sqlalchemy import BigInteger, Column, Connection, delete, func, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm

from layers import crs as crsmod
from layers import models, registry
from layers.errors import DataError, ImportRejected, Rejection
from layers.registry import FieldSpec, LayerSpec
from layers.topics.monitoring import ASSET_LAYERS

LON_NAMES = ("lon", "lng", "longitude", "x", "经度")
LAT_NAMES = ("lat", "latitude", "y", "纬度")
GEOM_TYPES = {
    "Point": ("Point",),
    "LineString": ("LineString", "MultiLineString"),
    "MultiPolygon": ("Polygon", "MultiPolygon"),
}
CHEMICAL_FIELDS = ("name", "cas", "un_number", "hazard_class", "quantity_t")
# What each field type takes, for the reasons of a rejected value.
EXPECTS = {"str": "text (str)", "int": "a whole number (int)", "float": "a number (float)",
           "bool": "yes/no (bool: true/false)", "datetime": "a date and time (datetime)"}


@dataclass
class ImportResult:
    layer: str
    written: int
    ignored_columns: list[str] = field(default_factory=list)
    source_crs: str = "EPSG:4326"


def read_source(path: str | Path, source_crs: str | None = None,
                source_layer: str | None = None) -> tuple[gpd.GeoDataFrame, str]:
    """Read a file into a GeoDataFrame in EPSG:4326; returns it and the CRS it was converted from.

    ``source_layer`` names the layer to read of a file that holds several (a GeoPackage); a file with
    several layers and none named is refused with their names (see :func:`_choose_layer`).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            if source_layer is not None:
                raise DataError(f"{path.name} is a CSV file, a single table: --source-layer is for files that "
                                "hold several layers (GeoPackage)")
            frame, file_crs = _read_csv(path), None
        elif suffix in (".geojson", ".json", ".gpkg", ".shp", ".zip", ".fgb", ".kml"):
            source = _zipped_shapefile(path) if suffix == ".zip" else path
            layer = _choose_layer(path, source, source_layer)
            frame = gpd.read_file(source, layer=layer, engine="pyogrio")
            if suffix in (".geojson", ".json"):
                frame = _geojson_nested_values(path, frame)
            file_crs = frame.crs.to_string() if frame.crs is not None else None
        else:
            raise DataError(f"unsupported file type {suffix!r}: use GeoJSON, GeoPackage, zipped Shapefile or CSV")
    except DataError:
        raise
    except Exception as exc:  # a broken file: pyogrio/pandas say why
        raise DataError(f"cannot read {path.name}: {exc}") from exc
    source = crsmod.parse_source_crs(source_crs or file_crs)
    geoms = crsmod.to_wgs84(frame.geometry.values, source)
    frame = gpd.GeoDataFrame(frame.drop(columns=frame.geometry.name), geometry=list(geoms), crs="EPSG:4326")
    return frame, source


def _choose_layer(path: Path, source: str | Path, wanted: str | None) -> str:
    """The layer of ``source`` to import: ``wanted`` (which must be one of its layers with geometries), else
    its only layer, else its only layer with geometries (a GeoPackage may hold attribute tables too).
    DataError naming the layers when the file holds several and none is chosen: importing the first
    and leaving the others unsaid would lose them silently."""
    layers = [(str(name), geom_type) for name, geom_type in pyogrio.list_layers(source)]
    names = [name for name, _ in layers]
    spatial = [name for name, geom_type in layers if geom_type is not None]
    if wanted is not None:
        if wanted not in names:
            raise DataError(f"{path.name} has no layer {wanted!r}; its layers: {', '.join(names) or 'none'}")
        if wanted not in spatial and len(names) > 1:
            raise DataError(f"layer {wanted!r} of {path.name} is a table without geometries; layers with "
                            f"geometries: {', '.join(spatial) or 'none'}")
        return wanted
    if len(names) == 1:
        return names[0]
    if len(spatial) == 1:
        return spatial[0]
    if not spatial:
        raise DataError(f"{path.name} holds no layer with geometries (tables: {', '.join(names) or 'none'})")
    raise DataError(f"{path.name} holds {len(spatial)} layers: {', '.join(spatial)}; choose the one to import "
                    "with --source-layer NAME")


def _geojson_nested_values(path: Path, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Put a GeoJSON file's own values back in the columns where a property holds a list or an object.

    GDAL turns such a column into a list column (every value of it then a list: ``3`` becomes ``[3]``)
    or writes an object as JSON text (``{"a": 1}`` becomes the text ``'{ "a": 1 }'``, which a text field
    would take as it is). With the file's values, validation can say which rows hold a list or object.
    The file is parsed again only when the frame shows a sign of one (a list, a dict, or text that
    starts with ``[`` or ``{``)."""
    def nested(v: Any) -> bool:
        return isinstance(v, (list, dict, np.ndarray)) or (isinstance(v, str) and v.lstrip()[:1] in ("[", "{"))

    columns = [c for c in frame.columns if c != frame.geometry.name
               and (frame[c].dtype == object or pd.api.types.is_string_dtype(frame[c].dtype))]
    if not any(nested(v) for c in columns for v in frame[c]):
        return frame
    doc = json.loads(path.read_text(encoding="utf-8-sig"))
    features = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if not isinstance(features, list) or len(features) != len(frame):
        return frame
    props = [(f.get("properties") or {}) if isinstance(f, dict) else {} for f in features]
    keys = {k for p in props for k, v in p.items() if isinstance(v, (list, dict))} & set(frame.columns)
    if not keys:
        return frame
    frame = frame.copy()
    for k in keys:
        frame[k] = pd.Series([p.get(k) for p in props], index=frame.index, dtype=object)
    return frame


def _zipped_shapefile(path: Path) -> str:
    """GDAL's name for the one Shapefile in a zip, at its root or in a folder (zip -r of a folder)."""
    with zipfile.ZipFile(path) as z:
        shapefiles = [n for n in z.namelist() if n.lower().endswith(".shp") and not n.startswith("__MACOSX/")]
    if len(shapefiles) != 1:
        raise DataError(f"{path.name} must hold exactly one Shapefile (.shp), it holds {len(shapefiles)}")
    return f"/vsizip/{path.resolve()}/{shapefiles[0]}"


def _read_csv(path: Path) -> gpd.GeoDataFrame:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    lower = {c.lower().strip(): c for c in df.columns}
    lon = next((lower[n] for n in LON_NAMES if n in lower), None)
    lat = next((lower[n] for n in LAT_NAMES if n in lower), None)
    wkt = next((lower[n] for n in ("wkt", "geometry", "geom") if n in lower), None)
    if lon and lat:
        def point(row):
            try:
                return shapely.Point(float(row[lon]), float(row[lat]))
            except ValueError:
                return None
        geoms = [point(r) for _, r in df.iterrows()]
        df = df.drop(columns=[lon, lat])
    elif wkt:
        def parse(s):
            try:
                return shapely.from_wkt(s) if s else None
            except shapely.errors.GEOSException:
                return None
        geoms = [parse(s) for s in df[wkt]]
        df = df.drop(columns=[wkt])
    else:
        raise DataError("CSV needs lon/lat columns (lon, lng, longitude / lat, latitude) or a WKT column")
    return gpd.GeoDataFrame(df.replace({"": None}), geometry=geoms)


def _expects(spec: FieldSpec) -> str:
    """What the field takes, in words ("a whole number (int) from 0 to 10000000")."""
    what = EXPECTS.get(spec.type, spec.type)
    if spec.codes is not None:
        what += f", one of the codes {', '.join(str(k) for k in spec.codes)}"
    lo, hi = (None if b is None else _number(b) for b in (spec.minimum, spec.maximum))
    if lo is not None and hi is not None:
        what += f" from {lo} to {hi}"
    elif lo is not None:
        what += f" of at least {lo}"
    elif hi is not None:
        what += f" of at most {hi}"
    return what


def _number(b: float) -> str:
    return str(int(b)) if float(b).is_integer() else repr(float(b))


def _nested(spec: FieldSpec, value: Any) -> str | None:
    """The reason to refuse a list or object (JSON array/object) given for a field, or None."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple, dict, set)):
        return None
    kind = "an object" if isinstance(value, dict) else "a list"
    shown = json.dumps(list(value) if isinstance(value, set) else value, ensure_ascii=False, default=str)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"{spec.name}: the property holds {kind} ({shown}); {spec.name} expects a single value: {_expects(spec)}"


def _cast(spec: FieldSpec, value: Any, column: Column | None = None, bounds: bool = True) -> Any:
    """Cast one value to the field's type (and whole numbers to the range of ``column``, a PostgreSQL integer
    or bigint) and check it against the field's code list, pattern and (``bounds``) minimum and maximum;
    ValueError naming the field if it does not fit."""
    nested = _nested(spec, value)
    if nested:
        raise ValueError(nested)
    try:
        value = _convert(spec, value, 63 if column is not None and isinstance(column.type, BigInteger) else 31)
    except (ValueError, TypeError, OverflowError) as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(f"{spec.name}:") else f"{spec.name}: {value!r} is not a valid {spec.type}") from None
    if value is None:
        return None
    if bounds and spec.minimum is not None and value < spec.minimum:
        raise ValueError(f"{spec.name}: {value!r} is below the minimum of {_number(spec.minimum)}")
    if bounds and spec.maximum is not None and value > spec.maximum:
        raise ValueError(f"{spec.name}: {value!r} is above the maximum of {_number(spec.maximum)}")
    if spec.codes is not None and value not in spec.codes:
        allowed = ", ".join(str(k) for k in spec.codes)
        raise ValueError(f"{spec.name}: {value!r} is not a valid code (allowed: {allowed})")
    if spec.pattern and not re.fullmatch(spec.pattern, str(value)):
        raise ValueError(f"{spec.name}: {value!r} does not match the expected format")
    return value


def _convert(spec: FieldSpec, value: Any, int_bits: int) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if spec.type == "str":
        value = str(value).strip()
        if "\x00" in value:
            raise ValueError(f"{spec.name}: contains a NUL character")
    elif spec.type == "int":
        f = float(value)
        if not f.is_integer():
            raise ValueError(f"{spec.name}: {value!r} is not a whole number")
        value = int(f)
        if not -2**int_bits <= value < 2**int_bits:
            raise ValueError(f"{spec.name}: {value!r} is out of range (a whole number of at most {2**int_bits - 1})")
    elif spec.type == "float":
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{spec.name}: {value!r} is not a finite number")
    elif spec.type == "bool":
        if isinstance(value, str):
            low = value.strip().lower()
            if low not in ("true", "false", "1", "0", "yes", "no", "t", "f", "是", "否"):
                raise ValueError(f"{spec.name}: {value!r} is not a yes/no value")
            value = low in ("true", "1", "yes", "t", "是")
        else:
            value = bool(value)
    elif spec.type == "datetime":
        if isinstance(value, str) and value.strip().lower() in ("now", "today", "tomorrow", "yesterday"):
            raise ValueError(f"{spec.name}: {value!r} is not a date and time (write it out, e.g. 2024-05-01 08:30)")
        value = pd.Timestamp(value)
        if pd.isna(value):  # ("NaT": no time, as an empty cell)
            return None
        if value.tzinfo is None:
            value = value.tz_localize("Asia/Shanghai")
        # records are of what has happened: a time in the future (or before 1900) is a typing error, and
        # would move every period that ends "at the latest record" (black spots)
        if not pd.Timestamp("1900-01-01", tz="UTC") <= value <= pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1):
            raise ValueError(f"{spec.name}: {value.isoformat()} is not between 1900 and now")
        value = value.to_pydatetime()
    return value


def _repair(geom, geometry_type: str):
    """shapely.make_valid, keeping only the parts of the layer's dimension."""
    fixed = shapely.make_valid(geom)
    if fixed.geom_type == "GeometryCollection":
        want = {"Point": 0, "LineString": 1, "MultiPolygon": 2}[geometry_type]
        parts = [g for g in fixed.geoms if shapely.get_dimensions(g) == want]
        fixed = shapely.union_all(parts) if parts else fixed
    return fixed


def _check_geometry(spec: LayerSpec, geom, area, make_valid: bool = False) -> tuple[Any, str | None]:
    if make_valid and geom is not None and not geom.is_empty and not geom.is_valid:
        geom = _repair(geom, spec.geometry_type)
    if geom is None or geom.is_empty:
        return None, "missing or empty geometry"
    allowed = GEOM_TYPES[spec.geometry_type]
    if geom.geom_type not in allowed:
        return None, f"geometry is {geom.geom_type}, layer needs {spec.geometry_type}"
    if geom.has_z:
        geom = shapely.force_2d(geom)
    if not geom.is_valid:
        return None, f"invalid geometry: {explain_validity(geom)} (use --make-valid to repair)"
    if spec.geometry_type == "MultiPolygon" and geom.geom_type == "Polygon":
        geom = shapely.MultiPolygon([geom])
    if spec.geometry_type == "LineString" and geom.geom_type == "MultiLineString":
        merged = shapely.line_merge(geom)
        if merged.geom_type != "LineString":
            return None, "MultiLineString with disjoint parts: split it into one feature per part"
        geom = merged
    minx, miny, maxx, maxy = geom.bounds
    if minx < area[0] or miny < area[1] or maxx > area[2] or maxy > area[3]:
        return None, (
            f"geometry outside the area of interest {area} (bounds {tuple(round(b, 5) for b in geom.bounds)}); "
            "wrong CRS? try --source-crs"
        )
    return geom, None


def _chemicals(value: Any) -> list[dict]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    items = json.loads(value) if isinstance(value, str) else value
    if not isinstance(items, list):
        raise ValueError("chemicals: expected a list of {name, cas, un_number, hazard_class, quantity_t}")
    out = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict) or not item.get("name"):
            raise ValueError(f"chemicals[{i}]: needs a name")
        try:
            q = float(item.get("quantity_t"))
        except (TypeError, ValueError):
            raise ValueError(f"chemicals[{i}] ({item['name']}): quantity_t must be a number of tonnes") from None
        if not math.isfinite(q) or q < 0:
            raise ValueError(f"chemicals[{i}] ({item['name']}): quantity_t must be >= 0")
        out.append({k: (str(item[k]) if item.get(k) is not None else None) for k in CHEMICAL_FIELDS[:-1]}
                   | {"quantity_t": q})
    return out


def validate(spec: LayerSpec, frame: gpd.GeoDataFrame, area: tuple[float, float, float, float],
             progress: bool = False, make_valid: bool = False) -> tuple[list[dict], list[Rejection], list[str]]:
    """Check every feature against the registry. Returns (records, rejections, ignored columns)."""
    known = {f.name for f in spec.fields} | {"id"}
    if spec.id == "hazard_installations":
        known.add("chemicals")
    columns = [c for c in frame.columns if c != frame.geometry.name]
    ignored = [c for c in columns if c not in known]
    missing = [f.name for f in spec.fields if f.required and f.name not in columns]
    if missing:
        raise DataError(f"layer {spec.id!r} needs column(s) {', '.join(missing)}; the file has {', '.join(columns)}")
    records, rejections, first_row = [], [], {}
    rows = frame.to_dict("records")
    geoms = frame.geometry.values
    for i, (row, geom) in enumerate(tqdm(list(zip(rows, geoms)), desc=f"validate {spec.id}", unit="feat",
                                         disable=not progress, mininterval=0.5), start=1):
        reasons = []
        geom, why = _check_geometry(spec, geom, area, make_valid)
        if why:
            reasons.append(why)
        record: dict[str, Any] = {}
        for f in spec.fields:
            if f.name not in row:
                continue
            try:
                record[f.name] = _cast(f, row[f.name], spec.model.__table__.c[f.name])
            except (ValueError, TypeError) as exc:
                reasons.append(str(exc))
                continue
            if f.required and record[f.name] is None:
                reasons.append(f"{f.name}: required")
        if "id" in row:  # (a file with ids: each row one, each its own)
            try:
                record["id"] = _cast(FieldSpec("id", "int", "", ""), row["id"], spec.model.__table__.c["id"])
            except ValueError as exc:
                reasons.append(str(exc))
            else:
                if record["id"] is None:
                    reasons.append("id: missing (the file gives ids: every row needs one)")
                elif record["id"] in first_row:
                    reasons.append(f"id: {record['id']} is also row {first_row[record['id']]}'s")
                else:
                    first_row[record["id"]] = i
        if "chemicals" in known and "chemicals" in row:
            try:
                record["chemicals"] = _chemicals(row["chemicals"])
            except (ValueError, json.JSONDecodeError) as exc:
                reasons.append(str(exc))
        if reasons:
            rejections.append(Rejection(i, "; ".join(reasons)))
        else:
            record["geom"] = f"SRID=4326;{geom.wkt}"
            records.append(record)
    return records, rejections, ignored


def _dependents(conn: Connection, spec: LayerSpec) -> list[str]:
    """The rows of other base layers that refer to this layer's rows ("12 enterprises (park_id)"): replacing
    the layer would unlink or (ON DELETE CASCADE) delete them. Derived layers are left out: analyses redo them."""
    table, found = spec.model.__table__, []
    for other in registry.LAYERS:
        if other.derived or other.id == spec.id:
            continue
        for fk in other.model.__table__.foreign_keys:
            if fk.column.table is table:
                n = conn.execute(select(func.count()).select_from(fk.parent.table).where(fk.parent.isnot(None))).scalar()
                if n:
                    found.append(f"{n} {other.id} ({fk.parent.name})")
    # sensors name their asset by layer and id (no foreign key: the asset may be a pond or an installation)
    if spec.id in ASSET_LAYERS:
        n = conn.execute(text("SELECT count(*) FROM monitoring_sensors WHERE asset_layer = :l"), {"l": spec.id}).scalar()
        if n:
            found.append(f"{n} monitoring_sensors (asset_layer, asset_id)")
    return found


def _missing_assets(conn: Connection, records: list[dict]) -> list[str]:
    """The (asset_layer, asset_id) of sensor records that name no existing pond or installation."""
    wanted = {(r["asset_layer"], r["asset_id"]) for r in records}
    found = set()
    for layer in {layer for layer, _ in wanted} & set(ASSET_LAYERS):  # (registry table names, not user text)
        ids = [i for lay, i in wanted if lay == layer]
        found |= {(layer, i) for i in conn.execute(text(f"SELECT id FROM {layer} WHERE id = ANY(:i)"), {"i": ids})
                  .scalars()}
    return [f"{layer} {i}" for layer, i in sorted(wanted - found, key=str)]


def write(conn: Connection, spec: LayerSpec, records: list[dict], replace: bool = False) -> int:
    """Insert validated records into the layer table on ``conn`` (the caller owns the transaction).
    ``replace`` empties the layer first; DataError if rows of other layers refer to it (they would be lost)."""
    table = spec.model.__table__
    if replace:
        dependents = _dependents(conn, spec)
        if dependents:
            raise DataError(f"--replace would unlink or delete what refers to {spec.id}: {', '.join(dependents)}; "
                            f"replace those layers first, or import without --replace (append)")
        conn.execute(delete(table))
    if spec.id == "monitoring_sensors":
        missing = _missing_assets(conn, records)
        if missing:
            raise DataError(f"sensors name assets that do not exist: {', '.join(missing[:10])}"
                            + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    chemicals = [r.pop("chemicals", None) for r in records]
    if not records:
        return 0
    keys = sorted({k for r in records for k in r})
    rows = [{k: r.get(k) for k in keys} for r in records]
    if "id" in keys:
        conn.execute(insert(table), rows)
        ids = [r["id"] for r in rows]
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{spec.table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {spec.table}), false)"
        ))
    else:
        ids = list(conn.execute(insert(table).returning(table.c.id), rows).scalars())
    child = [dict(c, installation_id=i) for i, cs in zip(ids, chemicals) if cs for c in cs]
    if child:
        conn.execute(insert(models.InstallationChemical.__table__), child)
    return len(rows)


def settle(engine: Engine, specs: list[LayerSpec]) -> None:
    """``VACUUM (ANALYZE)`` the tables of a committed bulk import: planner statistics, hint bits and the
    visibility map now, not when autovacuum comes round (about a minute later). Until then the first
    queries on freshly imported rows are planned blind and set hint bits as they read (the incident
    contents query took ~2x longer on the x10 demo right after loading, bench/emergency.py)."""
    tables = [spec.table for spec in specs] + (
        [models.InstallationChemical.__table__.name] if any(s.id == "hazard_installations" for s in specs) else [])
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in tables:  # (registry names, not user text)
            conn.execute(text(f"VACUUM (ANALYZE) {table}"))


WRITTEN_BY_THE_SERVER = {"incidents": "the incident log is written by POST /emergency/incident",
                         "incident_zones": "incident zones are written by POST /emergency/incident"}


def import_file(engine: Engine, spec: LayerSpec, path: str | Path, *, source_crs: str | None = None,
                area: tuple[float, float, float, float], replace: bool = False,
                progress: bool = False, make_valid: bool = False, source_layer: str | None = None) -> ImportResult:
    """Read, validate and write a whole file in one transaction, or raise and write nothing.
    ``source_layer``: the layer to read of a file that holds several (a GeoPackage; :func:`read_source`)."""
    if spec.derived or spec.id in WRITTEN_BY_THE_SERVER:
        raise DataError(f"{spec.id} is not imported: " + (WRITTEN_BY_THE_SERVER.get(spec.id)
                                                          or "it is derived, computed by `riskmap analyze`"))
    frame, source = read_source(path, source_crs, source_layer)
    records, rejections, ignored = validate(spec, frame, area, progress=progress, make_valid=make_valid)
    if rejections:
        raise ImportRejected(spec.id, rejections, len(frame))
    if not records:
        raise DataError(f"{Path(path).name} has no features")
    try:
        with engine.begin() as conn:
            n = write(conn, spec, records, replace=replace)
    except IntegrityError as exc:  # (an id already taken, a reference to a missing row: rolled back)
        detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None)  # ("Key (id)=(1) already exists.")
        raise DataError(f"the database refused the rows, nothing written: {str(exc.orig).splitlines()[0]}"
                        + (f" ({detail})" if detail else "")) from None
    settle(engine, [spec])
    return ImportResult(spec.id, n, ignored, source)


def select_columns(spec: LayerSpec, role: str) -> list:
    """The table columns of the fields ``role`` may see (always with id)."""
    table = spec.model.__table__
    return [table.c.id] + [table.c[f.name] for f in spec.fields_for(role)]


def export_layer(engine: Engine, spec: LayerSpec, out: str | Path, fmt: str, role: str = "admin") -> int:
    """Write a layer to GeoJSON, GeoPackage or CSV (lon/lat for points, WKT otherwise)."""
    table = spec.model.__table__
    query = select(*select_columns(spec, role), func.ST_AsBinary(table.c.geom).label("geom")).order_by(table.c.id)
    with engine.connect() as conn:
        frame = gpd.read_postgis(query, conn, geom_col="geom", crs="EPSG:4326")
    if spec.id == "hazard_installations":
        frame["chemicals"] = _inventories(engine, frame["id"].tolist())
    out = Path(out)
    if not out.parent.is_dir():
        raise DataError(f"no folder {out.parent} to write {out.name} in")
    if fmt == "geojson":
        frame.to_file(out, driver="GeoJSON", engine="pyogrio")
    elif fmt == "gpkg":
        frame.to_file(out, driver="GPKG", layer=spec.id, engine="pyogrio")
    elif fmt == "csv":
        df = pd.DataFrame(frame.drop(columns="geom"))
        if spec.geometry_type == "Point":
            df["lon"], df["lat"] = frame.geometry.x, frame.geometry.y
        else:
            df["wkt"] = frame.geometry.to_wkt(rounding_precision=-1)  # (full precision: 6 decimals lose ~7 cm)
        df.to_csv(out, index=False)
    else:
        raise DataError(f"unknown export format {fmt!r}: use geojson, gpkg or csv")
    return len(frame)


def _inventories(engine: Engine, ids: Iterable[int]) -> list[str]:
    t = models.InstallationChemical.__table__
    with engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.id)).mappings().all()
    by = {}
    for r in rows:
        by.setdefault(r["installation_id"], []).append({k: r[k] for k in CHEMICAL_FIELDS})
    return [json.dumps(by.get(i, []), ensure_ascii=False) for i in ids]
