"""Import and export of layers.

Import = read (GeoJSON, GeoPackage, zipped Shapefile, CSV with lon/lat or WKT) -> normalise CRS to
EPSG:4326 (EPSG codes, GCJ-02, BD-09) -> validate every feature against the registry -> write all of
it in one transaction, or nothing (``ImportRejected`` lists each rejected row and why).
"""

from __future__ import annotations

import codecs
import contextlib
import json
import math
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg
import pyogrio
import shapely
from pyproj import Geod
from shapely.validation import explain_validity
from sqlalchemy import BigInteger, Column, Connection, delete, func, insert, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from tqdm import tqdm

from layers import crs as crsmod
from layers import models, registry
from layers.errors import DataError, ImportRejected, Rejection
from layers.registry import FieldSpec, LayerSpec
from layers.spec import structure_class
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
YES, NO = ("true", "t", "yes", "y", "1", "是"), ("false", "f", "no", "n", "0", "否")
THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")  # (1,200: Excel's thousands separators)
# Day and month in either order (01/05/2024 is 1 May or 5 January): refused, not guessed value by value.
AMBIGUOUS_DATE = re.compile(r"\d{1,2}([/.-])\d{1,2}\1\d{2,4}(?!\d)")
CHINESE_DATE = re.compile(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日(?:\s*(\d{1,2})\s*(?:时|:)\s*(\d{1,2})\s*分?)?")
DATETIME_FORMS = ("YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS], ISO 8601 with a zone (2024-05-01T08:30:00+08:00) "
                  "or YYYY年M月D日[ H时M分]")
SHANGHAI, EARLIEST = ZoneInfo("Asia/Shanghai"), datetime(1900, 1, 1, tzinfo=timezone.utc)  # (naive times are local)
NON_ASCII = re.compile(rb"[\x80-\xff]")
SHAPEFILE_CUT = re.compile(r"(.{8})_\d+")  # GDAL's name for a cut field name already taken (downstre_1)
GEOD = Geod(ellps="WGS84")  # geodesic lengths of lines, in metres (as the OSM import measures them)
# Tables an import writes itself from the file (a hazard installation's ``chemicals``): replaced with the layer.
OWN_CHILDREN = frozenset({models.InstallationChemical.__table__.name})
ROW_NOTE = ("row N is the N-th feature (data row) of the file: in a CSV, line N+1 counting the header / "
            "第 N 行指文件中第 N 个要素（数据行）：CSV 中为含表头的第 N+1 行")


@dataclass
class ImportResult:
    layer: str
    written: int
    ignored_columns: list[str] = field(default_factory=list)
    source_crs: str = "EPSG:4326"
    matched_columns: dict[str, str] = field(default_factory=dict)  # file column -> field ("名称" -> "name")
    repaired: list[str] = field(default_factory=list)  # --make-valid: "row 3: repaired (area -70 %)"
    notes: list[str] = field(default_factory=list)  # what was written but deserves a look (bilingual lines)


@dataclass
class Source:
    """A file as read: features in EPSG:4326, the CRS they were converted from, whether it is a Shapefile
    (10-character column names) and the rows whose geometry could not be read, with why (1-based)."""
    frame: gpd.GeoDataFrame
    crs: str
    shapefile: bool = False
    unreadable: dict[int, str] = field(default_factory=dict)


def read_source(path: str | Path, source_crs: str | None = None, source_layer: str | None = None,
                encoding: str | None = None) -> tuple[gpd.GeoDataFrame, str]:
    """Read a file into a GeoDataFrame in EPSG:4326; returns it and the CRS it was converted from
    (:func:`read` tells more)."""
    source = read(path, source_crs, source_layer, encoding)
    return source.frame, source.crs


def read(path: str | Path, source_crs: str | None = None, source_layer: str | None = None,
         encoding: str | None = None) -> Source:
    """Read a file into EPSG:4326.

    ``source_layer`` names the layer to read of a file that holds several (a GeoPackage); a file with
    several layers and none named is refused with their names (see :func:`_choose_layer`). ``encoding``
    is the text encoding of a Shapefile's .dbf or of a CSV file (GeoJSON and GeoPackage are UTF-8 by
    definition); without it a Shapefile that does not say its encoding and holds non-ASCII text, or a
    CSV that is not UTF-8, is refused rather than read as mojibake. Library warnings are not shown:
    what they warn of (duplicate or missing ids, empty coordinates, M values) is refused or said by
    validation, or does not matter (M values: the layers have none).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    suffix = path.suffix.lower()
    if encoding is not None:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError:
            raise DataError(f"unknown encoding {encoding!r}: use e.g. GBK, GB18030 or UTF-8") from None
        if suffix not in (".csv", ".txt", ".shp", ".zip") and encoding != "utf-8":
            raise DataError(f"{path.name} is UTF-8 by definition: --encoding is for Shapefiles and CSV files")
    unreadable: dict[int, str] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if suffix in (".csv", ".txt"):
                if source_layer is not None:
                    raise DataError(f"{path.name} is a CSV file, a single table: --source-layer is for files that "
                                    "hold several layers (GeoPackage)")
                frame, unreadable = _read_csv(path, encoding)
                file_crs = None
            elif suffix in (".geojson", ".json", ".gpkg", ".shp", ".zip", ".fgb", ".kml"):
                source = _zipped_shapefile(path) if suffix == ".zip" else str(path)
                if suffix in (".shp", ".zip") and encoding is None and _undeclared_text(path, source):
                    raise DataError(f"{path.name}: the Shapefile does not say its text encoding (.cpg): "
                                    "give --encoding GBK (or UTF-8)")
                layer = _choose_layer(path, source, source_layer)
                frame = gpd.read_file(source, layer=layer, engine="pyogrio",
                                      **({"encoding": encoding} if encoding else {}))
                if suffix in (".geojson", ".json"):
                    frame = _geojson_values(path, frame)
                file_crs = frame.crs.to_string() if frame.crs is not None else None
            else:
                raise DataError(f"unsupported file type {suffix!r}: use GeoJSON, GeoPackage, zipped Shapefile or CSV")
    except DataError:
        raise
    except Exception as exc:  # a broken file: pyogrio/pandas say why
        raise DataError(f"cannot read {path.name}: {exc}") from exc
    crs = crsmod.parse_source_crs(source_crs or file_crs)
    geoms = crsmod.to_wgs84(frame.geometry.values, crs)
    frame = gpd.GeoDataFrame(frame.drop(columns=frame.geometry.name), geometry=list(geoms), crs="EPSG:4326")
    return Source(frame, crs, suffix in (".shp", ".zip"), unreadable)


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


def _geojson_values(path: Path, frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Put a GeoJSON file's own values back where GDAL's differ from them, so that validation sees (and
    can refuse) what the file holds.

    - A property holding a list or an object: GDAL turns the column into a list column (every value of
      it then a list: ``3`` becomes ``[3]``) or writes an object as JSON text (``{"a": 1}`` becomes the
      text ``'{ "a": 1 }'``, which a text field would take as it is).
    - A JSON boolean in a column of numbers: GDAL makes ``true`` a 1.
    - The features' ids (``"id"`` beside ``"properties"``, as this server's ``/items``, OGC API Features
      and QGIS write them): GDAL keeps whole numbers as feature ids, which geopandas drops, and alters
      repeated ones to be unique. Whole-number ids become the ``id`` column when no property is called
      ``id``; a feature without one beside others with one is refused by validation (``id: missing``).
    """
    doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    features = doc.get("features") if doc.get("type") == "FeatureCollection" else [doc]
    if not isinstance(features, list) or len(features) != len(frame):
        return frame
    features = [f if isinstance(f, dict) else {} for f in features]
    props = [f.get("properties") if isinstance(f.get("properties"), dict) else {} for f in features]
    keys = {k for p in props for k, v in p.items() if k in frame.columns and (
        isinstance(v, (list, dict)) or (isinstance(v, bool) and not pd.api.types.is_bool_dtype(frame[k])))}
    top, ids = _feature_ids(features, props)
    if top and not ids and "id" in frame.columns:
        # text ids, such as a WFS's "parks.1", name features elsewhere, not rows here (GDAL made them a column)
        frame = frame.drop(columns="id")
    if not keys and not ids:
        return frame
    frame = frame.copy()
    for k in keys:
        frame[k] = pd.Series([p.get(k) for p in props], index=frame.index, dtype=object)
    if ids:
        frame["id"] = pd.Series([f.get("id") for f in features], index=frame.index, dtype=object)
    return frame


def _feature_ids(features: list[dict], props: list[dict]) -> tuple[bool, bool]:
    """Whether GeoJSON ``features`` give ids beside their properties (none of which is called ``id``), and whether
    those are all whole numbers (row ids; text ids name features elsewhere)."""
    top = not any("id" in p for p in props) and any("id" in f for f in features)
    return top, top and all(isinstance(f["id"], int) and not isinstance(f["id"], bool) for f in features if "id" in f)


def features_frame(features: list) -> Source:
    """GeoJSON features (dicts, as a request gives them) as :func:`read` gives a file's: their properties as they
    are (a list stays a list, for validation to refuse or take), whole-number feature ids as the ``id`` column (as
    in a GeoJSON file), and the features whose geometry cannot be read, with why."""
    features = [f if isinstance(f, dict) else {} for f in features]
    props = [f.get("properties") if isinstance(f.get("properties"), dict) else {} for f in features]
    geoms, unreadable = [], {}
    for i, f in enumerate(features, 1):
        g = f.get("geometry")
        geoms.append(None)
        if g is not None and not (isinstance(g, dict) and isinstance(g.get("type"), str)):
            unreadable[i] = "geometry is not a GeoJSON geometry ({type, coordinates})"
        elif g is not None:
            try:
                geoms[-1] = shapely.geometry.shape(g)
            except Exception as exc:  # (shapely's errors for a broken GeoJSON geometry are of many kinds)
                unreadable[i] = f"cannot read the geometry: {exc or type(exc).__name__}"
        if f.get("type") != "Feature":
            unreadable[i] = f"not a GeoJSON Feature (type {f.get('type')!r})"
    frame = pd.DataFrame(props, dtype=object)
    top, ids = _feature_ids(features, props)
    if ids:
        frame["id"] = pd.Series([f.get("id") for f in features], dtype=object)
    return Source(gpd.GeoDataFrame(frame, geometry=geoms, crs="EPSG:4326"), "EPSG:4326", unreadable=unreadable)


def _zipped_shapefile(path: Path) -> str:
    """GDAL's name for the one Shapefile in a zip, at its root or in a folder (zip -r of a folder)."""
    with zipfile.ZipFile(path) as z:
        shapefiles = [n for n in z.namelist() if n.lower().endswith(".shp") and not n.startswith("__MACOSX/")]
    if len(shapefiles) != 1:
        raise DataError(f"{path.name} must hold exactly one Shapefile (.shp), it holds {len(shapefiles)}")
    return f"/vsizip/{path.resolve()}/{shapefiles[0]}"


def _undeclared_text(path: Path, source: str) -> bool:
    """Whether a Shapefile holds non-ASCII text (field names or values) in a .dbf that does not say its
    encoding: no .cpg and language driver id (byte 29) 0. GDAL would read it as ISO-8859-1: mojibake
    for GBK, the usual encoding of such files in China."""
    with contextlib.ExitStack() as stack:
        if path.suffix.lower() == ".zip":
            z = stack.enter_context(zipfile.ZipFile(path))
            names, stem, open_ = {n.lower(): n for n in z.namelist()}, source.split(f"{path.resolve()}/", 1)[1], z.open
        else:
            names, stem = {p.name.lower(): p for p in path.parent.iterdir()}, path.name
            open_ = lambda p: open(p, "rb")  # noqa: E731
        stem = stem[:-4].lower()
        if stem + ".cpg" in names or stem + ".dbf" not in names:
            return False
        dbf = stack.enter_context(open_(names[stem + ".dbf"]))
        head = dbf.read(32)
        if len(head) < 32 or head[29]:
            return False
        descriptors = dbf.read(int.from_bytes(head[8:10], "little") - 32)
        if NON_ASCII.search(b"".join(descriptors[i:i + 11] for i in range(0, len(descriptors), 32))):
            return True
        while chunk := dbf.read(1 << 20):
            if NON_ASCII.search(chunk):
                return True
    return False


def _read_csv(path: Path, encoding: str | None) -> tuple[gpd.GeoDataFrame, dict[int, str]]:
    """A CSV file's rows with their geometries (lon/lat or WKT columns), and the rows (1-based) whose
    geometry cannot be read, with why."""
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False,
                         encoding="utf-8-sig" if encoding in (None, "utf-8") else encoding)
    except UnicodeDecodeError:
        if encoding:
            raise
        raise DataError(f"{path.name} is not UTF-8: give --encoding GBK (GB18030), or save it as 'CSV UTF-8'") from None
    lower = {c.lower().strip(): c for c in df.columns}
    lon = next((lower[n] for n in LON_NAMES if n in lower), None)
    lat = next((lower[n] for n in LAT_NAMES if n in lower), None)
    wkt = next((lower[n] for n in ("wkt", "geometry", "geom") if n in lower), None)
    geoms = np.full(len(df), None, dtype=object)
    if lon and lat:
        cells = df[[lon, lat]].apply(lambda c: c.str.strip())
        xy = cells.apply(pd.to_numeric, errors="coerce").to_numpy(float)
        ok = np.isfinite(xy).all(axis=1)
        geoms[ok] = shapely.points(xy[ok])
        bad = np.flatnonzero(~ok & (cells != "").any(axis=1).to_numpy())
        unreadable = {i + 1: f"lon/lat not numbers ({cells.iat[i, 0]!r}, {cells.iat[i, 1]!r})" for i in bad}
        df = df.drop(columns=[lon, lat])
    elif wkt:
        text_ = df[wkt].str.strip().to_numpy(dtype=object)
        given = text_ != ""
        geoms[given] = shapely.from_wkt(text_[given], on_invalid="ignore")
        unreadable = {i + 1: _wkt_error(text_[i]) for i in np.flatnonzero(given & shapely.is_missing(geoms))}
        df = df.drop(columns=[wkt])
    else:
        raise DataError("CSV needs lon/lat columns (lon, lng, longitude / lat, latitude) or a WKT column")
    return gpd.GeoDataFrame(df.replace({"": None}), geometry=geoms), unreadable


def _wkt_error(wkt: str) -> str:
    try:
        shapely.from_wkt(wkt)
    except shapely.errors.GEOSException as exc:
        return f"cannot read the WKT: {str(exc).removeprefix('ParseException: ')}"
    return "cannot read the WKT"


def _bounds(spec: FieldSpec) -> str:
    """The field's minimum and maximum in words (" from 0 to 10000000"), or ""."""
    lo, hi = (None if b is None else _number(b) for b in (spec.minimum, spec.maximum))
    if lo is not None and hi is not None:
        return f" from {lo} to {hi}"
    return f" of at least {lo}" if lo is not None else f" of at most {hi}" if hi is not None else ""


def _expects(spec: FieldSpec) -> str:
    """What the field takes, in words ("a whole number (int) from 0 to 10000000")."""
    what = EXPECTS.get(spec.type, spec.type)
    if spec.codes is not None:
        what += f", one of the codes {', '.join(str(k) for k in spec.codes)}"
    return what + _bounds(spec)


def _number(b: float) -> str:
    return str(int(b)) if float(b).is_integer() else repr(float(b))


def field_lines(spec: LayerSpec) -> list[str]:
    """A layer's fields as ``riskmap fields LAYER`` lists them: name, type, titles (an import column may be
    named by the Chinese title), required, codes with their labels (a value may be given as either), bounds."""
    lines = [f"{spec.id}: {spec.title_zh} / {spec.title_en} ({spec.geometry_type})"]
    for f in spec.fields:
        notes = (["required"] if f.required else []) + ([_bounds(f).strip()] if _bounds(f) else []) + (
            [f"pattern {f.pattern}"] if f.pattern else [])
        lines.append(f"  {f.name:24} {f.type:9} {f.title_zh} / {f.title_en}" + (f"  [{'; '.join(notes)}]" if notes else ""))
        lines += [f"      {k}: {c.zh} / {c.en}" for k, c in (f.codes or {}).items()]
    lines.append(f"  {'id':24} {'int':9} optional: each row its own (without it the database numbers the rows)")
    if spec.id == "hazard_installations":
        lines.append(f"  {'chemicals':24} {'list':9} inventory: [{{{', '.join(CHEMICAL_FIELDS)}}}, ...]")
    return lines


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
    or bigint) and check it against the field's code list (a code may be given by its label, any case),
    pattern and (``bounds``) minimum and maximum; ValueError naming the field if it does not fit."""
    nested = _nested(spec, value)
    if nested:
        raise ValueError(nested)
    if spec.codes is not None and isinstance(value, str):
        value = _labels(spec.codes).get(value.strip().lower(), value)
    try:
        value = _convert(spec, value)
    except (ValueError, TypeError, OverflowError) as exc:
        msg = str(exc)
        raise ValueError(msg if msg.startswith(f"{spec.name}:") else f"{spec.name}: {value!r} is not a valid {spec.type}") from None
    if value is None:
        return None
    if bounds and spec.minimum is not None and value < spec.minimum:
        raise ValueError(f"{spec.name}: {value!r} is below the minimum of {_number(spec.minimum)}")
    if bounds and spec.maximum is not None and value > spec.maximum:
        raise ValueError(f"{spec.name}: {value!r} is above the maximum of {_number(spec.maximum)}")
    bits = 63 if column is not None and isinstance(column.type, BigInteger) else 31
    if spec.type == "int" and not -2**bits <= value < 2**bits:  # (after the field's own bounds: those are quoted first)
        raise ValueError(f"{spec.name}: {value!r} is out of range (a whole number of at most {2**bits - 1})")
    if spec.codes is not None and value not in spec.codes:
        allowed = ", ".join(str(k) for k in spec.codes)
        raise ValueError(f"{spec.name}: {value!r} is not a valid code (allowed: {allowed})")
    if spec.pattern and not re.fullmatch(spec.pattern, str(value)):
        raise ValueError(f"{spec.name}: {value!r} does not match the expected format")
    return value


def _labels(codes: Mapping) -> dict[str, Any]:
    """Code by lower-case code, Chinese label or English label (学校, School, SCHOOL -> school); a label two
    codes share is left out."""
    cached = _LABELS.get(id(codes))
    if cached is None or cached[0] is not codes:  # (the code list is kept with its labels: its id stays its own)
        found: dict[str, set] = {}
        for k, c in codes.items():
            for label in (str(k), c.zh, c.en):
                found.setdefault(label.strip().lower(), set()).add(k)
        cached = _LABELS[id(codes)] = (codes, {label: next(iter(ks)) for label, ks in found.items() if len(ks) == 1})
    return cached[1]


_LABELS: dict[int, tuple[Mapping, dict[str, Any]]] = {}


def _convert(spec: FieldSpec, value: Any) -> Any:
    if isinstance(value, str):
        value = value.strip()  # (also full-width spaces, U+3000: a cell of only spaces is empty)
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return None
    if spec.type == "str":
        value = str(value)
        if "\x00" in value:
            raise ValueError(f"{spec.name}: contains a NUL character")
    elif spec.type in ("int", "float"):
        if isinstance(value, (bool, np.bool_)):
            raise ValueError(f"{spec.name}: must be a number, got {json.dumps(bool(value))}")
        if isinstance(value, str) and THOUSANDS.fullmatch(value):
            value = value.replace(",", "")
        f = float(value)
        if spec.type == "float":
            if not math.isfinite(f):
                raise ValueError(f"{spec.name}: {value!r} is not a finite number")
            return f
        if not f.is_integer():
            raise ValueError(f"{spec.name}: {value!r} is not a whole number")
        value = int(f)
    elif spec.type == "bool":
        if isinstance(value, str):
            low = value.lower()
            if low not in YES + NO:
                raise ValueError(f"{spec.name}: {value!r} is not a yes/no value ({'/'.join(YES)} or {'/'.join(NO)})")
            value = low in YES
        else:
            value = bool(value)
    elif spec.type == "datetime":
        value = _datetime(spec, value)
    return value


def _datetime(spec: FieldSpec, value: Any) -> datetime | None:
    """A time, in Asia/Shanghai when the value has no zone; refused when the day and month order is unclear
    (01/05/2024), not written out (now) or not between 1900 and now."""
    if isinstance(value, str):
        if value.lower() in ("now", "today", "tomorrow", "yesterday"):
            raise ValueError(f"{spec.name}: {value!r} is not a date and time (write it out, e.g. 2024-05-01 08:30)")
        if AMBIGUOUS_DATE.match(value):
            raise ValueError(f"{spec.name}: {value!r} could be day/month or month/day: write dates as YYYY-MM-DD")
        with contextlib.suppress(ValueError):  # (ISO forms: 5x faster than pandas; else pandas says)
            m = CHINESE_DATE.fullmatch(value)
            value = datetime(*(int(g or 0) for g in m.groups())) if m else datetime.fromisoformat(value)
    if not isinstance(value, datetime) or value is pd.NaT:
        try:
            value = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"{spec.name}: {value!r} is not a date and time; write it as {DATETIME_FORMS}") from None
        if pd.isna(value):  # ("NaT": no time, as an empty cell)
            return None
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if value.tzinfo is None:
        value = value.replace(tzinfo=SHANGHAI)
    # records are of what has happened: a time in the future (or before 1900) is a typing error, and
    # would move every period that ends "at the latest record" (black spots)
    if not EARLIEST <= value <= datetime.now(timezone.utc) + timedelta(days=1):
        raise ValueError(f"{spec.name}: {value.isoformat()} is not between 1900 and now")
    return value


def _repair(geom, geometry_type: str):
    """shapely.make_valid keeping the union of the parts ("structure": a part inside another's hole fills
    it, where "linework" would cut it out), and only the parts of the layer's dimension."""
    fixed = shapely.make_valid(geom, method="structure", keep_collapsed=False) if geometry_type == "MultiPolygon" \
        else shapely.make_valid(geom)  # (the structure method is for polygons)
    if fixed.geom_type == "GeometryCollection":
        want = {"Point": 0, "LineString": 1, "MultiPolygon": 2}[geometry_type]
        parts = [g for g in fixed.geoms if shapely.get_dimensions(g) == want]
        fixed = shapely.union_all(parts) if parts else fixed
    return fixed


def _change(before, after) -> str:
    """How a repair changed a polygon's area or a line's length, in words ("area -70 %")."""
    what, measure = ("area", shapely.area) if shapely.get_dimensions(before) == 2 else ("length", shapely.length)
    a, b = measure(before), measure(after)
    if not a:  # (a self-intersecting outline whose lobes cancel out): the new area, roughly in m²
        return f"{what} was 0" + (f", now about {b * 111_320**2 * math.cos(math.radians(after.centroid.y)):,.0f} m²"
                                  if what == "area" else "")
    pct = (b - a) / a * 100
    return f"{what} {pct:+.0f} %" if abs(pct) >= 1 else f"{what} changed by less than 1 %"


def _check_geometry(spec: LayerSpec, geom, area) -> tuple[Any, str | None]:
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


def _known(spec: LayerSpec) -> set[str]:
    """The columns an import file may give for the layer."""
    return {f.name for f in spec.fields} | {"id"} | ({"chemicals"} if spec.id == "hazard_installations" else set())


def match_columns(spec: LayerSpec, frame: gpd.GeoDataFrame, shapefile: bool = False) -> tuple[gpd.GeoDataFrame, dict]:
    """Rename the columns that name a field other than by its name: by its Chinese title (名称 -> name),
    in other case (Name), or in a Shapefile by its name cut to the 10 characters of a .dbf field name
    (occurred_a -> occurred_at). Only a match with exactly one field is taken; the frame and {column: field}.
    DataError for a column that could be several fields (a shared title; in a Shapefile a cut several
    names share, or GDAL's name for a cut already taken, downstre_1) and for two columns giving one field."""
    known = _known(spec)
    aliases: dict[str, set[str]] = {}
    for f in spec.fields:
        for alias in {f.name.lower(), f.title_zh.strip()} | ({f.name[:10].lower()} if shapefile else set()):
            aliases.setdefault(alias, set()).add(f.name)
    columns = [c for c in frame.columns if c != frame.geometry.name]
    given = {c: c for c in columns if c in known}  # field -> the column that gives it
    renamed = {}
    for c in columns:
        if c in known:
            continue
        key = str(c).strip()
        found = aliases.get(key) or aliases.get(key.lower())
        cut = SHAPEFILE_CUT.fullmatch(key)
        if found and len(found) == 1:
            (name,) = found
            if name in given:
                raise DataError(f"columns {given[name]!r} and {c!r} both give {name}: keep one of them")
            given[name] = renamed[c] = name
        elif shapefile and (found or cut and any(len(f.name) > 10 and f.name.startswith(cut[1]) for f in spec.fields)):
            raise DataError(f"column {c!r} looks like a Shapefile-shortened name that cannot be matched to one field: "
                            "use GeoPackage or GeoJSON")
        elif found:
            raise DataError(f"column {c!r} could be any of {', '.join(sorted(found))}: rename it to one of them")
    return frame.rename(columns=renamed), renamed


def validate(spec: LayerSpec, frame: gpd.GeoDataFrame, area: tuple[float, float, float, float],
             progress: bool = False, make_valid: bool = False, unreadable: Mapping[int, str] | None = None,
             repaired: list[str] | None = None, existing: Mapping[str, tuple[set, LayerSpec]] | None = None,
             ) -> tuple[list[dict], list[Rejection], list[str]]:
    """Check every feature against the registry. Returns (records, rejections, ignored columns).
    ``unreadable``: why the geometry of a row (1-based) could not be read (:class:`Source`); ``repaired``
    gets a line for each geometry ``make_valid`` repaired, with how its area changed; ``existing``: for a
    reference field, the ids of the layer it refers to that exist (:func:`existing_references`), any other
    id given there refused. A line without ``length_m`` gets its geodesic length, and a structure without a
    class the class of that length (:func:`layers.spec.structure_class`), so the class the route check
    uses and the length shown agree."""
    known = _known(spec)
    table = spec.model.__table__
    columns = [c for c in frame.columns if c != frame.geometry.name]
    ignored = [c for c in columns if c not in known]
    missing = [f.name for f in spec.fields if f.required and f.name not in columns]
    if missing:
        raise DataError(f"layer {spec.id!r} needs column(s) {', '.join(missing)}; the file has {', '.join(columns)}")
    fields = [(f, table.c[f.name]) for f in spec.fields if f.name in columns]
    id_spec = FieldSpec("id", "int", "", "")
    unreadable, existing = unreadable or {}, existing or {}
    measure = spec.geometry_type == "LineString" and "length_m" in known
    records, rejections, first_row = [], [], {}
    rows = frame.to_dict("records")
    geoms = frame.geometry.values
    for i, (row, geom) in enumerate(tqdm(list(zip(rows, geoms)), desc=f"validate {spec.id}", unit="feat",
                                         disable=not progress, mininterval=0.5), start=1):
        reasons = []
        if make_valid and geom is not None and not geom.is_empty and not geom.is_valid:
            fixed = _repair(geom, spec.geometry_type)
            if repaired is not None:
                repaired.append(f"row {i}: repaired ({_change(geom, fixed)})")
            geom = fixed
        geom, why = (None, unreadable[i]) if i in unreadable else _check_geometry(spec, geom, area)
        if why:
            reasons.append(why)
        record: dict[str, Any] = {}
        for f, column in fields:
            try:
                record[f.name] = _cast(f, row[f.name], column)
            except (ValueError, TypeError) as exc:
                reasons.append(str(exc))
                continue
            if f.required and record[f.name] is None:
                reasons.append(f"{f.name}: required")
            elif f.name in existing and record[f.name] is not None and record[f.name] not in existing[f.name][0]:
                ref, v = existing[f.name][1], record[f.name]
                reasons.append(f"{f.name} {v}: no such row in {ref.id} / {ref.title_zh}（{ref.id}）中无编号 {v}")
        if "id" in row:  # (a file with ids: each row one, each its own)
            try:
                record["id"] = _cast(id_spec, row["id"], table.c["id"])
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
            if measure and record.get("length_m") is None:
                record["length_m"] = round(GEOD.geometry_length(geom), 1)
            if "structure_class" in known and record.get("structure_class") is None:
                record["structure_class"] = structure_class(record["kind"], record["length_m"])
            record["geom"] = f"SRID=4326;{geom.wkt}"
            records.append(record)
    return records, rejections, ignored


def existing_references(conn: Connection, spec: LayerSpec, frame: pd.DataFrame) -> dict[str, tuple[set, LayerSpec]]:
    """For each field of ``spec`` in ``frame`` that refers to another layer (a foreign key of its model,
    ``enterprise_id`` -> enterprises), the ids given there that exist, and that layer (:func:`validate`)."""
    table, found = spec.model.__table__, {}
    layers = {s.table: s for s in registry.LAYERS}
    for f in spec.fields:
        for fk in table.c[f.name].foreign_keys if f.name in frame.columns else ():
            if fk.column.table.name not in layers:
                continue
            ids = set()
            for v in frame[f.name]:
                with contextlib.suppress(ValueError, TypeError):  # (a value that is no id: validation says why)
                    ids.add(_cast(f, v, table.c[f.name], bounds=False))
            ids.discard(None)
            found[f.name] = (set(conn.execute(select(fk.column).where(fk.column == func.any(list(ids)))).scalars())
                             if ids else set(), layers[fk.column.table.name])
    return found


# Foreign keys to a table, from the catalog (so a table no model knows of, or added by a later migration, counts).
REFERRING = text("""
    SELECT r.relname AS tbl, a.attname AS col FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
    JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
    WHERE c.contype = 'f' AND c.confrelid = CAST(:t AS regclass) AND c.conrelid <> c.confrelid ORDER BY 1, 2""")
# Tables of analysis results (a run_id referring to analysis_runs), registry layers or not (installation_gradings).
ANALYSIS_RESULTS = text("""
    SELECT r.relname FROM pg_constraint c JOIN pg_class r ON r.oid = c.conrelid
    WHERE c.contype = 'f' AND c.confrelid = CAST('analysis_runs' AS regclass)""")


def dependents(conn: Connection, spec: LayerSpec, records: list[dict] = (),
               ids: list[int] | None = None) -> tuple[list[str], list[str]]:
    """What refers to this layer's rows, which replacing it (with ``records``) or deleting the rows ``ids`` would
    unlink or (ON DELETE CASCADE) delete: (rows of other base layers, "12 enterprises (park_id)"; rows of other
    tables, the history kept of the rows: "1200 monitoring_readings (sensor_id)"). Every foreign key to the table
    in the catalog counts, but those of derived layers (analyses redo them) and of the rows the import writes
    itself (inventories) or of any analysis result. Sensors are also named by their asset
    (layer and id) and alarms by their sensor's code, without a key. Without ``ids``, what refers to any row."""
    layers = {s.table: s for s in registry.LAYERS}
    quote = conn.dialect.identifier_preparer.quote
    which, params = ("IS NOT NULL", {}) if ids is None else ("= ANY(:ids)", {"ids": list(ids)})
    base, history = [], []
    # (the results of analyses about the rows go with them, such as the gradings, and the next run redoes them)
    results = set(conn.execute(ANALYSIS_RESULTS).scalars())
    for tbl, col in conn.execute(REFERRING, {"t": spec.table}).all():
        other = layers.get(tbl)
        if tbl in OWN_CHILDREN or tbl in results or (other is not None and other.derived):
            continue
        n = conn.execute(text(f"SELECT count(*) FROM {quote(tbl)} WHERE {quote(col)} {which}"), params).scalar()
        if n:
            (base if other is not None else history).append(f"{n} {tbl} ({col})")
    if spec.id in ASSET_LAYERS:
        n = conn.execute(text("SELECT count(*) FROM monitoring_sensors WHERE asset_layer = :l"
                              + ("" if ids is None else " AND asset_id = ANY(:ids)")), {"l": spec.id, **params}).scalar()
        if n:
            base.append(f"{n} monitoring_sensors (asset_layer, asset_id)")
    if spec.id == "monitoring_sensors":  # alarms whose sensor's code the file no longer gives (or is deleted)
        gone = "code <> ALL(:codes)" if ids is None else "id = ANY(:ids)"
        n = conn.execute(text("SELECT count(*) FROM monitoring_alarms WHERE sensor_code IN "
                              f"(SELECT code FROM monitoring_sensors WHERE {gone})"),
                         {"codes": [r["code"] for r in records], **params}).scalar()
        if n:
            history.append(f"{n} monitoring_alarms (sensor_code: they would name sensors that no longer exist)")
    return base, history


def _missing_assets(conn: Connection, records: list[dict]) -> list[str]:
    """The (asset_layer, asset_id) of sensor records that name no existing pond or installation."""
    wanted = {(r["asset_layer"], r["asset_id"]) for r in records}
    found = set()
    for layer in {layer for layer, _ in wanted} & set(ASSET_LAYERS):  # (registry table names, not user text)
        ids = [i for lay, i in wanted if lay == layer]
        found |= {(layer, i) for i in conn.execute(text(f"SELECT id FROM {layer} WHERE id = ANY(:i)"), {"i": ids})
                  .scalars()}
    return [f"{layer} {i}" for layer, i in sorted(wanted - found, key=str)]


def write(conn: Connection, spec: LayerSpec, records: list[dict], replace: bool = False,
          discard_history: bool = False) -> int:
    """Insert validated records into the layer table on ``conn`` (the caller owns the transaction).
    ``replace`` empties the layer first; DataError if rows of other layers refer to it (they would be lost),
    or rows of other tables (a sensor's readings and state, its alarms) unless ``discard_history``."""
    if replace:
        base, history = dependents(conn, spec, records)
        if base:
            raise DataError(f"--replace would unlink or delete what refers to {spec.id}: {', '.join(base)}; "
                            f"replace those layers first, or import without --replace (append); nothing written",
                            zh=f"--replace 会使引用 {spec.id} 的数据失去关联或被删除：{'，'.join(base)}；"
                               f"请先替换这些图层，或不加 --replace（追加）导入；未写入任何数据")
        if history and not discard_history:
            raise DataError(f"--replace would lose the history kept of the rows of {spec.id}: {', '.join(history)}; "
                            f"nothing written. Give --discard-history to replace them all the same, or import "
                            f"without --replace (append)",
                            zh=f"--replace 会丢失 {spec.id} 各行的历史记录：{'，'.join(history)}；未写入任何数据。"
                               f"确需替换请加 --discard-history，或不加 --replace（追加）导入")
        conn.execute(delete(spec.model.__table__))
    return len(insert_records(conn, spec, records))


def insert_records(conn: Connection, spec: LayerSpec, records: list[dict]) -> list[int]:
    """Insert validated records into the layer table on ``conn`` (with their inventories); the ids they got."""
    check_assets(conn, spec, records)
    chemicals = [r.pop("chemicals", None) for r in records]
    if not records:
        return []
    keys = sorted({k for r in records for k in r} | {"id"})
    given = any("id" in r for r in records)  # (validation gives ids on every row or on none)
    if given:
        ids = [r["id"] for r in records]
    else:  # the ids the rows get, drawn from the table's sequence (the child rows need them)
        ids = list(conn.execute(text(f"SELECT nextval(pg_get_serial_sequence('{spec.table}', 'id')) "
                                     "FROM generate_series(1, :n)"), {"n": len(records)}).scalars())
    _copy(conn, spec.table, keys, ([i if k == "id" else r.get(k) for k in keys] for i, r in zip(ids, records)))
    if given:
        conn.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{spec.table}', 'id'), "
            f"(SELECT coalesce(max(id), 0) + 1 FROM {spec.table}), false)"
        ))
    store_inventories(conn, ids, chemicals)
    return ids


def check_assets(conn: Connection, spec: LayerSpec, records: list[dict]) -> None:
    """DataError if sensor records name an asset (pond or installation) that does not exist."""
    if spec.id != "monitoring_sensors":
        return
    missing = _missing_assets(conn, records)
    if missing:
        raise DataError(f"sensors name assets that do not exist: {', '.join(missing[:10])}"
                        + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""),
                        zh=f"监测点所属的对象不存在：{'，'.join(missing[:10])}"
                           + (f" 等 {len(missing)} 个" if len(missing) > 10 else ""))


def store_inventories(conn: Connection, ids: list[int], chemicals: list[list[dict] | None]) -> None:
    """Insert each installation's inventory (``chemicals[i]``, validated, of installation ``ids[i]``; None or empty:
    none); the caller deletes an inventory being replaced."""
    child = [dict(c, installation_id=i) for i, cs in zip(ids, chemicals) if cs for c in cs]
    if child:
        conn.execute(insert(models.InstallationChemical.__table__), child)


def _copy(conn: Connection, table: str, columns: list[str], rows) -> None:
    """``COPY`` rows into ``table`` in this transaction: a fifth of the time of batched INSERTs for a large
    import. Its triggers fire as for an INSERT; a row the database refuses raises :class:`IntegrityError`.
    Table and column names come from the registry, not from the file."""
    cols = ", ".join(f'"{c}"' for c in columns)
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cur, cur.copy(f"COPY {table} ({cols}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    except psycopg.errors.IntegrityError as exc:  # (as SQLAlchemy reports it for an INSERT)
        raise IntegrityError(f"COPY {table}", None, exc) from None


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
                area: tuple[float, float, float, float], replace: bool = False, progress: bool = False,
                make_valid: bool = False, source_layer: str | None = None, encoding: str | None = None,
                discard_history: bool = False, say: Callable[[str], None] = lambda message: None) -> ImportResult:
    """Read, validate and write a whole file in one transaction, or raise and write nothing.
    ``source_layer`` and ``encoding``: see :func:`read`; ``discard_history``: see :func:`write`; ``say`` is
    told each phase as it starts; ``progress`` shows a bar while validating."""
    if spec.derived or spec.id in WRITTEN_BY_THE_SERVER:
        raise DataError(f"{spec.id} is not imported: " + (WRITTEN_BY_THE_SERVER.get(spec.id)
                                                          or "it is derived, computed by `riskmap analyze`"))
    say(f"reading {Path(path).name} ...")
    source = read(path, source_crs, source_layer, encoding)
    frame, matched = match_columns(spec, source.frame, source.shapefile)
    say(f"validating {len(frame)} features ...")
    repaired: list[str] = []
    with engine.connect() as conn:
        existing = existing_references(conn, spec, frame)
    records, rejections, ignored = validate(spec, frame, area, progress=progress, make_valid=make_valid,
                                            unreadable=source.unreadable, repaired=repaired, existing=existing)
    if rejections:
        raise ImportRejected(spec.id, rejections, len(frame))
    if not records:
        raise DataError(f"{Path(path).name} has no features")
    notes = _notes(spec, records)  # (before write, which takes the inventories out of the records)
    say(f"writing {len(records)} features ...")
    try:
        with engine.begin() as conn:
            n = write(conn, spec, records, replace=replace, discard_history=discard_history)
    except IntegrityError as exc:  # (an id already taken, a reference to a missing row: rolled back)
        detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None)  # ("Key (id)=(1) already exists.")
        raise DataError(f"the database refused the rows, nothing written: {str(exc.orig).splitlines()[0]}"
                        + (f" ({detail})" if detail else "")) from None
    say(f"analysing the table {spec.table} ...")
    settle(engine, [spec])
    return ImportResult(spec.id, n, ignored, source.crs, matched, repaired, notes)


def _notes(spec: LayerSpec, records: list[dict]) -> list[str]:
    """Hazard installations without an inventory: GB 18218 finds no major hazard in them (S = 0), which an
    import whose chemicals column was missing or misnamed (a 台账's 化学品名称/数量 columns) would not show."""
    if spec.id != "hazard_installations":
        return []
    empty = [str(i) for i, r in enumerate(records, 1) if not r.get("chemicals")]
    if not empty:
        return []
    rows = ", ".join(empty[:20]) + (f" … ({len(empty)})" if len(empty) > 20 else "")
    return [f"rows {rows}: no chemicals (the inventory, a JSON list of {{name, cas, un_number, hazard_class, "
            f"quantity_t}}): graded not a major hazard (S = 0) until given",
            f"第 {rows} 行无化学品清单（chemicals 列）：补充前按非重大危险源（S = 0）计"]


def select_columns(spec: LayerSpec, role: str) -> list:
    """The table columns of the fields ``role`` may see (always with id)."""
    table = spec.model.__table__
    return [table.c.id] + [table.c[f.name] for f in spec.fields_for(role)]


def export_layer(engine: Engine, spec: LayerSpec, out: str | Path, fmt: str, role: str = "admin") -> int:
    """Write a layer to GeoJSON, GeoPackage or CSV (lon/lat for points, WKT otherwise; UTF-8 with a byte-order
    mark, which Excel needs to read Chinese text). Whole-number fields stay whole numbers, blanks included
    (pandas would make a column with a blank float: 1131.0), typed Integer (Integer64 for bigint) in a GeoPackage."""
    table = spec.model.__table__
    query = select(*select_columns(spec, role), func.ST_AsBinary(table.c.geom).label("geom")).order_by(table.c.id)
    with engine.connect() as conn:
        frame = gpd.read_postgis(query, conn, geom_col="geom", crs="EPSG:4326")
    for name in ["id"] + [f.name for f in spec.fields if f.type == "int" and f.name in frame.columns]:
        frame[name] = frame[name].astype("Int64" if isinstance(table.c[name].type, BigInteger) else "Int32")
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
        df.to_csv(out, index=False, encoding="utf-8-sig")
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
