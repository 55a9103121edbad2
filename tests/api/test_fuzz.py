"""Property-based fuzz of every API operation: the API answers a 4xx with a message, never a 5xx or a traceback.

The OpenAPI schema is the app's own (``create_app(...).openapi()``; the test checks that the running server serves
that very document at ``/openapi.json``). For every operation schemathesis generates requests from it (path and
query parameters, headers, JSON, CSV and multipart bodies): valid ones (``positive``) and ones that break the
schema on purpose (``negative``: wrong types, missing or unknown fields, numbers out of range, bodies that are not
JSON). Two cases in three also get realistic values mixed in (a real layer, a tile over the data, ids that exist,
points near the roads, known chemicals and cargo, GeoJSON, GPX, readings of the real sensors; see ``overlay``), so
that requests reach the analyses and not only the first 404. Three callers: anonymous (no ``Authorization``), an
admin (a token from ``layers.users.add_user``) and whatever ``Authorization`` header schemathesis makes. Requests go
over HTTP to a real ``riskmap serve`` on a database of its own in the session's throwaway cluster, with a little of
every base layer loaded through layers.io, the roads and hazchem analyses run, monitoring readings and alarms, and
one incident in the duty log.

Checked on every answer: no 5xx (the database is up all along, so not even a 503), no Python traceback text, every
4xx JSON with a non-empty ``code`` and ``description``; and after each operation's test, no error and no traceback
in the server's log. Generation is deterministic (``derandomize``: the same choices on every run; times of readings
are relative to now) and bounded: ``FUZZ_EXAMPLES`` (default 40) scales the cases per operation, caller and mode
(``SHARE``), about 8,000 requests in all, under two minutes on a 2-core machine; no endpoint is left out. The
tables the API writes are put back to their state at the start before each operation's test, so the tests do not
depend on their order.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import geopandas as gpd
import httpx
import mercantile
import psycopg
import pytest
import requests
import schemathesis
import shapely
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from sqlalchemy import text

from api.app import create_app
from api.routers.monitoring import READINGS_BODY
from conftest import free_port, load, output, serve, stop
from gis import emergency as em
from gis import hazchem, monitoring, roadnet
from hazchem_world import X0, Y0, write_population
from layers import registry
from layers.crs import from_metric
from layers.db import make_engine, migrate
from layers.settings import StoreSettings
from layers.topics.monitoring import KINDS
from layers.users import add_user

# The app's own schema (no database is touched to build it: the engine is made in the lifespan).
SCHEMA = create_app("postgresql://fuzz@127.0.0.1:1/none").openapi()
API = schemathesis.openapi.from_dict(SCHEMA)
OPERATIONS = {op.label: op for op in (result.ok() for result in API.get_all_operations())}

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))  # cases per operation, caller and mode: times SHARE (below)
# The tables the API writes (rules, the duty log, monitoring): restored before each operation's test.
WRITTEN = ["safety_rules", "route_rules", "incidents", "incident_zones", "monitoring_sensors", "monitored_assets",
           "monitoring_readings", "monitoring_sensor_state", "monitoring_thresholds", "monitoring_alarms",
           "monitoring_alarm_events", "monitoring_daily"]
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")
LOGGED_ERROR = re.compile(r"^.*\bERROR\b.*$|Traceback \(most recent call last\)", re.MULTILINE)


def ll(dx: float, dy: float) -> tuple[float, float]:
    """Lon/lat of the point dx metres east and dy metres north of the hazchem world's origin (Kunming)."""
    lon, lat = from_metric(X0 + dx, Y0 + dy)
    return float(lon), float(lat)


def square(dx: float, dy: float, half: float) -> shapely.Polygon:
    (x1, y1), (x2, y2) = ll(dx - half, dy - half), ll(dx + half, dy + half)
    return shapely.box(x1, y1, x2, y2)


def line(*pts) -> shapely.LineString:
    return shapely.LineString([ll(*p) for p in pts])


def point(dx: float, dy: float) -> shapely.Point:
    return shapely.Point(ll(dx, dy))


def frame(rows: list[dict]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame([{k: v for k, v in r.items() if k != "geometry"} for r in rows],
                            geometry=[r["geometry"] for r in rows], crs="EPSG:4326")


LAYERS = {  # a little of every base layer, in the import's order (references after what they refer to)
    "admin_areas": [{"name": "测试区", "adcode": "530102", "geometry": square(0, 0, 5000)}],
    "chemical_parks": [{"name": "测试化工园区", "park_level": "provincial", "geometry": square(1000, 500, 800)}],
    "enterprises": [{"name": "测试企业", "kind": "production", "park_id": 1, "geometry": square(1000, 500, 300)}],
    "hazard_installations": [
        {"name": "液氯储罐区", "unit_type": "storage", "enterprise_id": 1, "geometry": square(1000, 500, 50),
         "chemicals": [{"name": "液氯", "quantity_t": 30}, {"name": "液氨", "quantity_t": 20}]},
        {"name": "汽油罐区", "unit_type": "storage", "geometry": square(-1500, 1500, 50),
         "chemicals": [{"name": "汽油", "quantity_t": 500}]}],
    "tailings_ponds": [{"name": "测试尾矿库", "grade": 3, "headtop": True, "geometry": square(3000, 3000, 150)}],
    "accidents": [{"occurred_at": f"2023-0{m}-1{m}T08:00:00", "deaths": m % 2, "geometry": point(500 * m, 0)}
                  for m in range(1, 6)],
    "roads": [{"name": n, "road_class": c, "speed_kmh": v, "geometry": line(*pts)} for n, c, v, pts in (
        ("R1", "primary", 60, ((-4000, 0), (0, 0), (2000, 0), (4000, 0))),
        ("R2", "secondary", 40, ((2000, 0), (2000, 3000))),
        ("R3", "urban", 30, ((0, 0), (0, -3000), (4000, -3000), (4000, 0))),
        ("R4", "secondary", 40, ((2000, 3000), (3000, 3000))))],
    "restricted_structures": [{"name": "长隧道", "kind": "tunnel", "structure_class": "tunnel_l", "length_m": 1000,
                               "geometry": line((-1500, 0), (-500, 0))}],
    "water_source_zones": [{"name": "水源保护区", "zone_level": "grade1", "geometry": square(2000, 1500, 300)}],
    "hazmat_routes": [{"name": "运输路线一", "geometry": line((-4000, 0), (0, 0), (2000, 0), (2000, 3000))}],
    "receptors": [{"name": n, "kind": k, "people": p, "geometry": point(*xy)} for n, k, p, xy in (
        ("幼儿园A", "kindergarten", 120, (1200, 600)), ("学校B", "school", 900, (100, 100)),
        ("医院C", "hospital", 400, (3000, -2000)), ("小区D", "residential", 3000, (-500, 800)))],
    "emergency_resources": [{"name": n, "kind": k, "capacity": c, "contact_name": "值班员",
                             "contact_phone": "0871-0000000", "geometry": point(*xy)} for n, k, c, xy in (
        ("消防站一", "fire_station", 3, (4000, 20)), ("医院一", "hospital", 300, (2000, 3010)),
        ("物资库一", "depot", None, (-3000, 50)), ("避难所一", "shelter", 800, (0, -3000)))],
}


class Server:
    """The fuzzed server: its URL, an admin's token, an engine on its database, the statements that restore the
    tables the API writes, and its log."""

    def __init__(self, proc, base: str, admin: str, engine, restore: list):
        self.proc, self.base, self.admin, self.engine, self.restore = proc, base, admin, engine, restore
        self.seen = 0

    def new_log(self) -> str:
        """What the server has logged since the last call."""
        out = output(self.proc)
        new, self.seen = out[self.seen:], len(out)
        return new


@pytest.fixture(scope="module")
def fuzz_server(cluster):
    """``riskmap serve`` on a database of its own (``riskmap_fuzz``), loaded and analysed."""
    with psycopg.connect(host="127.0.0.1", port=cluster.port, user="riskmap", password=cluster.password(),
                         dbname="postgres", autocommit=True) as conn:
        conn.execute('CREATE DATABASE "riskmap_fuzz"')
    url = cluster.url("riskmap_fuzz")
    migrate(url)
    data_dir = Path(tempfile.mkdtemp(prefix="riskmap-fuzz-"))
    store = StoreSettings(database_url=url, data_dir=data_dir)
    engine = make_engine(url, pool_size=2)
    for layer, rows in LAYERS.items():
        load(engine, layer, frame(rows))
    with engine.begin() as conn:
        write_population(conn, data_dir / "population.tif", {(x, y): 50.0 for x in range(-2000, 2001, 500)
                                                             for y in range(-2000, 2001, 500)})
        admin = add_user(conn, "fuzz-admin", "admin")
    roadnet.run(engine, store)
    hazchem.run(engine, store)
    monitoring.simulate(engine, hours=6, step_min=30, limit=1)  # readings and alarms of the pond and installation 1
    env = {**os.environ, "DATABASE_URL": url, "RISKMAP_DATA_DIR": str(data_dir), "RISKMAP_LOG_LEVEL": "warning"}
    port = free_port()
    proc = serve(env, port)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, trust_env=False, timeout=60) as http:
            assert http.get("/openapi.json").json() == SCHEMA  # the schema fuzzed is the one served
            lon, lat = ll(0, 10)
            r = http.post("/emergency/incident", headers={"Authorization": f"Bearer {admin}"},
                          json={"lon": lon, "lat": lat, "chemical": "1017"})
            assert r.status_code == 200, r.text  # incident 1 in the duty log (chlorine)
        with engine.begin() as conn:  # what the API may write, as it is now: put back before each test
            conn.execute(text("CREATE SCHEMA fuzz_start"))
            for table in WRITTEN:
                conn.execute(text(f"CREATE TABLE fuzz_start.{table} AS TABLE {table}"))
        server = Server(proc, base, admin, engine, restoring(engine))
        assert not LOGGED_ERROR.search(server.new_log())
        yield server
    finally:
        stop(proc)
        engine.dispose()
        shutil.rmtree(data_dir, ignore_errors=True)


def restoring(engine) -> list:
    """The statements that put the tables the API writes back to their state at the start (rows and sequences)."""
    statements = [text(f"TRUNCATE {', '.join(WRITTEN)}")]
    with engine.connect() as conn:
        for table in WRITTEN:
            columns = conn.execute(text(
                "SELECT column_name, is_identity = 'YES' OR column_default LIKE 'nextval(%' "
                "FROM information_schema.columns WHERE table_schema = 'public' AND table_name = :t "
                "AND is_generated = 'NEVER' ORDER BY ordinal_position"), {"t": table}).all()
            names = ", ".join(f'"{c}"' for c, _ in columns)
            statements.append(text(f"INSERT INTO {table} ({names}) OVERRIDING SYSTEM VALUE "
                                   f"SELECT {names} FROM fuzz_start.{table}"))
            statements += [text(f"SELECT setval(pg_get_serial_sequence('{table}', '{c}'), "
                                f"coalesce((SELECT max({c}) FROM {table}), 0) + 1, false)")
                           for c, serial in columns if serial]
    return statements


def check(case, response) -> None:
    """No 5xx, no traceback, every 4xx JSON ``{"code", "description"}`` with both non-empty."""
    text = response.content.decode("utf-8", "replace")  # (tiles are binary)
    body = case.body if isinstance(case.body, (dict, list, str)) else repr(case.body)
    where = (f"{case.method} {case.formatted_path} query={case.query!r} media_type={case.media_type!r} "
             f"body={str(body)[:1000]!r} -> {response.status_code}\n{text[:2000]}")
    assert response.status_code < 500, f"server error: {where}"
    assert not TRACEBACK.search(text), f"traceback in the answer: {where}"
    if response.status_code >= 400:
        assert response.headers.get("content-type", [""])[0].startswith("application/json"), f"not JSON: {where}"
        answer = response.json()
        assert isinstance(answer, dict), f"not a JSON object: {where}"
        for key in ("code", "description"):
            assert isinstance(answer.get(key), str) and answer[key].strip(), f"no {key}: {where}"


# ---- realistic values, mixed into what schemathesis generates -------------------------------------------------
# From the schema alone a layer id, a tile, an id or a route is almost never one that exists, so most requests would
# stop at the first 404 or 400. Two cases in three get some of their path parameters, query parameters and (valid
# requests only) their body from these strategies instead: a real layer, a tile over the data, ids that exist,
# points near the roads, chemicals and cargo the tables know, GeoJSON, GPX, readings of the real sensors, each mixed
# with arbitrary text and numbers.

LON0, LAT0 = ll(-5000, -4000)
LON1, LAT1 = ll(5000, 4000)
# any text, with the characters that break parsers (separators, quotes, line ends, NUL, wildcards) made common
SPECIAL = st.sampled_from(',;"\'\r\n\t\x00%_\\<&')
TEXT = st.lists(st.one_of(st.characters(codec="utf-8"), SPECIAL), max_size=24).map("".join)  # (st.text would merge
# the alphabets into one range of code points, in which these few are lost)
NUMBER = st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=False, allow_infinity=False), st.floats(-1, 1000))
LON, LAT = st.floats(LON0, LON1), st.floats(LAT0, LAT1)  # around the data
NEAR = st.tuples(LON, LAT)
LONLAT = st.one_of(NEAR, NEAR, NEAR, st.tuples(st.floats(-180, 180), st.floats(-90, 90)))
POSITION = st.one_of(LONLAT.map(list), st.lists(NUMBER, max_size=4), st.lists(TEXT, max_size=2))
# numbers as text that int() or float() refuses or reads unexpectedly: thousands of digits, other scripts' digits
ODD_NUMBERS = st.sampled_from(["9" * 5000, "\u0663", "0" * 40 + "1", "1_000"])
IDS = st.one_of(st.integers(1, 6), st.integers(-2**63, 2**63), ODD_NUMBERS)
SENSORS = [f"TP1-{sfx}" for sfx, *_ in monitoring.SIM_LAYOUT["tailings_ponds"]] + \
          [f"HI1-{sfx}" for sfx, *_ in monitoring.SIM_LAYOUT["hazard_installations"]]
UNITS = sorted({u for kind in KINDS.values() for u in kind.units})


def either(*values) -> st.SearchStrategy:
    """One of the values (two times in three), or any text."""
    return st.one_of(st.sampled_from(values), st.sampled_from(values), TEXT)


def iso_time(hours: float) -> str:
    return (datetime.now(timezone(timedelta(hours=8))) - timedelta(hours=hours)).isoformat(timespec="seconds")


TIME = st.one_of(st.floats(-1, 24 * 400).map(iso_time), st.sampled_from(["2024-07-01", "2000-01-01T00:00",
                                                                          "9999-12-31T23:59:59", "22:30"]), TEXT)
DEPARTURE = st.one_of(st.none(), TIME)


@st.composite
def geometry(draw) -> dict:
    """A GeoJSON geometry near the data (often invalid: a bow tie, an open ring, too few points)."""
    kind = draw(st.sampled_from(["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
                                 "GeometryCollection", "Circle"]))
    points = draw(st.lists(POSITION, min_size=0, max_size=6))
    closed = points + points[:1] if draw(st.booleans()) else points  # (a ring is closed, or not)
    coordinates = {"Point": points[0] if points else [], "Polygon": [closed], "MultiLineString": [points],
                   "MultiPolygon": [[closed]]}.get(kind, points)
    return {"type": kind, "coordinates": coordinates}


LINE = st.lists(LONLAT.map(list), min_size=0, max_size=8)


@st.composite
def route(draw) -> dict:
    line = draw(LINE)
    shape = draw(st.sampled_from(["line", "feature", "collection"]))
    geom = {"type": "LineString", "coordinates": line}
    if shape == "feature":
        return {"type": "Feature", "properties": {}, "geometry": geom}
    if shape == "collection":
        return {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": geom}]}
    return geom


@st.composite
def gpx(draw) -> str:
    tag = draw(st.sampled_from(["trkpt", "rtept", "wpt"]))
    points = "".join(f'<{tag} lat="{lat}" lon="{lon}"/>' for lon, lat in draw(st.lists(LONLAT, max_size=8)))
    inner = f"<trk><trkseg>{points}</trkseg></trk>" if tag == "trkpt" else f"<rte>{points}</rte>"
    return draw(st.sampled_from([f'<gpx version="1.1">{inner}</gpx>', inner, f"<gpx>{points}"]))


CARGO = st.one_of(
    st.fixed_dictionaries({"un_number": either("1017", "UN1005", "1203", "1965", "9999", "0")},
                          optional={"quantity_t": NUMBER}),
    st.fixed_dictionaries({"hazard_class": either("2.3", "2.1", "3", "6.1", "1.1", "8", "7", "10")},
                          optional={"quantity_t": st.one_of(NUMBER, TEXT)}),
    st.dictionaries(TEXT, st.one_of(TEXT, NUMBER), max_size=3))


@st.composite
def check_body(draw) -> dict:
    body = {"cargo": draw(CARGO)}
    given = draw(st.sampled_from(["route", "route", "gpx", "gpx", "ends", "ends", "two"]))
    if given in ("route", "two"):
        body["route"] = draw(route())
    if given in ("gpx", "two"):
        body["gpx"] = draw(gpx())
    if given == "ends":
        body["origin"], body["destination"] = draw(POSITION), draw(POSITION)
    if (departure := draw(DEPARTURE)) is not None:
        body["departure"] = departure
    return body


PLAN = st.fixed_dictionaries({"origin": POSITION, "destination": POSITION, "cargo": CARGO},
                             optional={"departure": TIME})
INCIDENT = st.builds(
    lambda lonlat, **kw: {"lon": lonlat[0], "lat": lonlat[1], **kw}, LONLAT,
    chemical=either("1017", "UN1005", "液氨", "chlorine", "guide:128", "guide:999", "7782-50-5", "汽油"),
    spill=st.sampled_from(["small", "large"]), wind_from_deg=st.one_of(st.none(), st.floats(0, 360)),
    wind_speed_ms=st.one_of(st.none(), st.floats(0, 79)), container=st.one_of(st.none(), either(*em.CONTAINERS)),
    save=st.booleans())
SITING = st.fixed_dictionaries({"geometry": geometry(), "use": st.sampled_from(hazchem.USES)},
                               optional={"level": st.integers(1, 4), "people": st.integers(0, 10**7),
                                         "kinds": st.lists(st.sampled_from(["toxic", "flammable", "explosive"]))})
CODES = st.lists(st.one_of(st.sampled_from(["*", "2.3", "3", "tunnel_l", "bridge_xl", "B", "grade1", "motorway"]),
                           TEXT), max_size=3)
ROUTE_RULE = st.fixed_dictionaries(
    {"name_zh": either("测试规则"), "name_en": either("test rule"), "cargo_classes": CODES,
     "target": either("structure", "water_zone", "road")},
    optional={k: CODES for k in ("structure_classes", "adr_categories", "zone_levels", "road_classes")} | {
        "min_quantity_t": st.one_of(NUMBER, TEXT), "ban_start": either("22:00", "06:00", "24:00"),
        "ban_end": either("06:00", "23:59"), "weekdays": st.lists(st.integers(-1, 8), max_size=8),
        "verdict": either("forbidden", "warning"), "active": st.one_of(st.booleans(), TEXT),
        "source": TEXT})
THRESHOLD = st.fixed_dictionaries(
    {"kind": either(*KINDS)},
    optional={"asset_layer": st.sampled_from(["tailings_ponds", "hazard_installations"]),
              "asset_id": st.integers(1, 3)}
    | {k: st.floats(-100, 1000) for k in ("blue", "yellow", "orange", "red", "hysteresis", "rate_red")})
READING = st.fixed_dictionaries({"sensor": either(*SENSORS), "time": TIME,
                                 "value": st.one_of(NUMBER, TEXT, st.sampled_from(["NaN", "inf", "1e999"])),
                                 "unit": either(*UNITS)})
READINGS = st.lists(READING, max_size=6)


def csv_text(readings: list[dict]) -> str:
    """The readings as CSV, written naively (no quoting: a comma, quote or line end in a value is in the CSV)."""
    return "sensor,time,value,unit\n" + "".join(
        ",".join(str(r[k]) for k in ("sensor", "time", "value", "unit")) + "\n" for r in readings)


def readings_body(media_type: str) -> st.SearchStrategy:
    if media_type.startswith("text/"):
        return READINGS.map(csv_text)
    if media_type.startswith("multipart/"):
        return READINGS.map(lambda r: {"file": csv_text(r).encode()})
    return READINGS.map(lambda r: {"readings": r})


BODIES = {
    "POST /emergency/incident": INCIDENT,
    "POST /analysis/siting-check": SITING,
    "POST /routes/check": check_body(),
    "POST /routes/plan": PLAN,
    "POST /routes/check/gpx": st.fixed_dictionaries(
        {"file": gpx().map(str.encode)},
        optional={"un_number": either("1017", "1203"), "hazard_class": either("2.3", "3"),
                  "quantity_t": st.one_of(NUMBER.map(str), TEXT), "departure": TIME}),
    "POST /routes/rules": ROUTE_RULE,
    "PUT /routes/rules/{rule_id}": ROUTE_RULE,
    "PUT /monitoring/thresholds": THRESHOLD,
}


@st.composite
def tile(draw) -> mercantile.Tile:
    lon, lat = draw(NEAR)
    return mercantile.tile(lon, lat, draw(st.integers(0, 22)))


def filters(layer: str) -> st.SearchStrategy:
    """Equality filters on a layer's fields (and the reserved parameters of the items)."""
    spec = registry.get(layer)
    values = [st.one_of(TEXT, NUMBER.map(str), st.sampled_from(["true", "no", "2024-01-01T00:00:00", "1e400"]))]
    values += [st.sampled_from([str(c) for c in f.codes]) for f in spec.fields if f.codes]
    names = [f.name for f in spec.fields] + ["f", "crs", "bbox-crs", "datetime", "properties", "geom", "id"]
    return st.dictionaries(st.sampled_from(names), st.one_of(*values), max_size=3)


BBOX = st.one_of(st.tuples(LON, LAT, LON, LAT), st.lists(NUMBER, max_size=5)).map(lambda v: ",".join(map(str, v)))


@st.composite
def overlay(draw, operation, mode: GenerationMode) -> dict:
    """Realistic path parameters, query parameters and (in positive mode) a body for ``operation``."""
    out = {"path": {}, "query": {}, "body": None}
    names = {p.name for p in operation.path_parameters}
    if "layer_id" in names:
        out["path"]["layer_id"] = draw(st.sampled_from([s.id for s in registry.LAYERS]))
    if names & {"z", "x", "y", "row", "col"}:
        t = draw(tile())
        out["path"] |= {"z": t.z, "x": t.x, "y": t.y, "row": t.y, "col": t.x}
        if draw(st.integers(0, 3)) == 0:
            out["path"][draw(st.sampled_from(sorted(names & {"z", "x", "y", "row", "col"})))] = draw(ODD_NUMBERS)
    for name in names & {"fid", "incident_id", "installation_id", "rule_id", "alarm_id", "asset_id"}:
        out["path"][name] = draw(IDS)
    if "asset_layer" in names:
        out["path"]["asset_layer"] = draw(st.sampled_from(["tailings_ponds", "hazard_installations"]))
    if "code" in names:
        out["path"]["code"] = draw(either(*SENSORS))
    out["path"] = {k: v for k, v in out["path"].items() if k in names}
    label = operation.label
    if label == "GET /collections/{layer_id}/items":
        out["query"] = draw(filters(out["path"]["layer_id"])) | draw(st.fixed_dictionaries({}, optional={
            "bbox": BBOX, "limit": st.integers(-1, 20000), "offset": st.integers(-1, 100)}))
    elif label == "GET /emergency/nearby":
        lon, lat = draw(LONLAT)
        out["query"] = {"lon": lon, "lat": lat} | draw(st.fixed_dictionaries({}, optional={
            "kind": either(*em.RESOURCE_KINDS, "hospital,shelter"), "min_capacity": st.integers(-1, 1000),
            "radius_m": st.floats(-1, 300000)}))
    elif label in ("GET /api/search", "GET /emergency/chemicals"):
        out["query"] = {"q": draw(either("测试", "R1", "530102", "液氯", "chlorine", "1017", "%", "_", " "))}
    elif label == "GET /monitoring/sensors/{code}/readings":
        out["query"] = draw(st.fixed_dictionaries({}, optional={"since": TIME, "until": TIME}))
    elif label in ("GET /monitoring/alarms", "GET /monitoring/daily"):
        out["query"] = draw(st.fixed_dictionaries({}, optional={
            "asset_layer": st.sampled_from(["tailings_ponds", "hazard_installations"]), "asset_id": IDS}))
    if mode is GenerationMode.POSITIVE:
        if label in BODIES:
            out["body"] = draw(BODIES[label])
        elif label == "POST /monitoring/readings":
            out["body"] = draw(st.sampled_from(list(READINGS_BODY["content"])).flatmap(
                lambda media_type: readings_body(media_type).map(lambda body: (media_type, body))))
    return out


def apply(case, extra: dict | None):
    """The generated case with the realistic values drawn for it (None: as generated)."""
    if extra is None:
        return case
    if extra["path"]:
        case.path_parameters = {**(case.path_parameters or {}), **extra["path"]}
    if extra["query"]:
        case.query = {**(case.query or {}), **extra["query"]}
    if extra["body"] is not None:
        if case.operation.label == "POST /monitoring/readings":
            case.media_type, case.body = extra["body"]
        else:
            case.body = extra["body"]
    return case


def cases(operation, mode: GenerationMode, caller: str, admin: str) -> st.SearchStrategy:
    headers = {"Authorization": f"Bearer {admin}"} if caller == "admin" else None
    generated = operation.as_strategy(mode, headers=headers)
    if caller == "anonymous":
        generated = generated.map(anonymous)
    realistic = overlay(operation, mode)
    return st.tuples(generated, st.one_of(st.none(), realistic, realistic)).map(lambda c: apply(*c))


P, N = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Callers (anonymous: no header; admin: an admin's token; any Authorization: whatever schemathesis makes for the
# header) and modes, with their cases in EXAMPLES: most for the admin, who gets past the role checks to the handlers.
SHARE = {("admin", P): 2, ("admin", N): 1, ("anonymous", P): 0.5, ("anonymous", N): 0.5, ("any Authorization", P): 0.25}


def anonymous(case):
    """The case without an Authorization header (what schemathesis generates for it is the third caller)."""
    for name in [h for h in (case.headers or {}) if h.lower() == "authorization"]:
        del case.headers[name]
    return case


@pytest.mark.parametrize("label", list(OPERATIONS))
def test_operation(label, fuzz_server):
    server = fuzz_server
    with server.engine.begin() as conn:  # the state of the start, whichever tests ran before
        for statement in server.restore:
            conn.execute(statement)
    server.new_log()
    operation = OPERATIONS[label]
    session = requests.Session()
    session.trust_env = False  # (no proxy for the loopback server)
    own = [p for p in operation.iter_parameters() if p.name.lower() != "authorization"]
    negative = bool(own or operation.body.items)  # (else there is nothing to break)
    admin_past_auth = []
    for (caller, mode), share in SHARE.items():
        if mode is N and not negative:
            continue

        @settings(max_examples=max(1, round(EXAMPLES * share)), derandomize=True, database=None, deadline=None,
                  print_blob=False, suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate, Phase.shrink])
        @given(case=cases(operation, mode, caller, server.admin))
        def fuzz(case):
            response = case.call(base_url=server.base, session=session, timeout=60)
            check(case, response)
            if caller == "admin":
                admin_past_auth.append(response.status_code not in (401, 403))
        try:
            fuzz()
        except Unsatisfiable:  # nothing breaks this operation's schema (e.g. only plain string path parameters)
            if mode is not N:
                raise
    assert any(admin_past_auth), "the admin's token never got past authentication"
    log = server.new_log()
    assert not LOGGED_ERROR.search(log), f"the server logged an error:\n{log[-6000:]}"
