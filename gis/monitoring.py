"""Online monitoring and early warning (在线监测预警): ingest, thresholds, the alarm state machine.

Readings arrive in batches (:func:`ingest`). Each is checked on its own (unknown sensor, wrong unit,
time in the future, NaN ...) and rejected with a reason while the good ones are kept. Accepted readings
are stored idempotently on (sensor, time). Then, in the same transaction, they are evaluated in time
order per sensor:

* **Point level** (one sensor = one monitoring point). The raw level of a reading is the highest of
  blue/yellow/orange/red whose threshold it passes (``above`` or ``below`` depending on the kind), and
  for kinds with rate rules (dam displacement) also the level of its rate of change over a window.
  The point level follows the raw level with **debounce** (``debounce`` readings past a higher
  threshold before a rise, as many consecutive clearly lower ones before a fall; red rises at once,
  never debounced) and **hysteresis** (to fall, the value must be past the threshold by
  ``hysteresis``, the rate below 80 % of its limit; a value inside that band neither rises nor falls).
* **Item level** (asset x monitoring item). Tailings ponds use the GB 39496-2020 5.5.4 escalation:
  4 points at blue or above make the item yellow, 3 at yellow or above orange, 2 at orange or above
  red; otherwise the highest point. Hazard installations take the highest point.
* **Asset level** (the map colour). Tailings: the same escalation over items (the standard's "four
  items at blue count as one yellow item", extended by analogy to 3 yellow -> orange, 2 orange ->
  red); when it lifts the pond above every single item, the pond gets a ``pond`` alarm. Installations:
  the highest item.
* **Alarms.** At most one open alarm per (asset, item): it opens when the item level leaves normal,
  escalates and de-escalates with it, and closes when it is back to normal; every change is an event
  of its history, and a user acknowledges it. A sensor silent for 3 sampling intervals raises the
  asset's ``offline`` alarm.

Speed: new readings go to the table by ``COPY`` while the state machines run in a worker thread;
readings inside a point's steady band skip the state machine (see :meth:`Rule.steady_band`); the
garbage collector is paused over a batch (:func:`gc_paused`).

Raw threshold crossings (a reading whose raw level is above the previous reading's: what a naive
system would alarm on) and alarms opened/escalated are counted per asset and day
(``monitoring_daily``) to show the alarm-fatigue reduction. Details: docs/tailings-monitoring.md.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import math
import threading
from bisect import bisect_right
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import itemgetter

import numpy as np
import psycopg
import pydantic_core
from sqlalchemy import Connection, text

from gis.errors import ConflictError
from layers import registry
from layers.db import db_key
from layers.errors import DataError
from layers.settings import LOCAL_TZ
from layers.topics.monitoring import ASSET_LAYERS, ITEMS, KINDS, LEVEL_CODES, LEVELS

OFFLINE_AFTER = 3                        # missed sampling intervals before a sensor is offline
FUTURE_TOLERANCE = timedelta(minutes=5)  # clock skew accepted on reading times
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_BATCH = 50_000
RATE_RELAX = 0.8                         # a rate must fall below 80 % of its limit to de-escalate
LOCK_KEY = 80006                         # advisory lock serialising evaluation across workers
_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="riskmap-eval")
_first = itemgetter(0)
BLUE, YELLOW, ORANGE, RED = 1, 2, 3, 4
# GB 39496-2020 5.5.4: n points (items) at this level or above raise the whole to the next level.
LADDER = ((ORANGE, 2, RED), (YELLOW, 3, ORANGE), (BLUE, 4, YELLOW))


# ---------------------------------------------------------------------------------------- rules
@dataclass(frozen=True)
class Rule:
    """Resolved thresholds of one sensor (see ``monitoring_thresholds``)."""

    direction: int                      # +1: higher is worse, -1: lower is worse
    limits: tuple                       # blue, yellow, orange, red (None: level not used)
    hysteresis: float = 0.0
    rates: tuple | None = None          # rate limits per day, blue..red
    rate_window_s: float = 86400.0
    debounce: int = 2

    def __post_init__(self):
        # Thresholds as ascending keys (negated when lower is worse) for a bisect per reading.
        used = [(k, lim) for k, lim in enumerate(self.limits, 1) if lim is not None]
        d, h = self.direction, self.hysteresis
        object.__setattr__(self, "_levels", (0,) + tuple(k for k, _ in used))
        object.__setattr__(self, "_keys", [d * lim for _, lim in used])
        object.__setattr__(self, "_relaxed", [d * lim - h for _, lim in used])

    def value_level(self, v: float, relax: bool = False) -> int:
        """Highest level whose threshold ``v`` reaches (shifted by the hysteresis if ``relax``)."""
        return self._levels[bisect_right(self._relaxed if relax else self._keys, self.direction * v)]

    def steady_band(self, level: int, raw: int) -> tuple[float, float] | None:
        """The range of ``direction * value`` in which a reading changes nothing for a point at
        ``level`` whose last raw level is ``raw`` (no pending rise or fall): same raw level, holds
        the current level. None when there is no such range (or the rule has rate limits)."""
        if self.rates or raw > level or raw not in self._levels or level not in self._levels:
            return None
        inf = float("inf")
        edges = lambda keys, k: (keys[k - 1] if k else -inf, keys[k] if k < len(keys) else inf)  # noqa: E731
        (a, b), (c, d) = edges(self._keys, self._levels.index(raw)), edges(self._relaxed, self._levels.index(level))
        lo, hi = max(a, c), min(b, d)
        return (lo, hi) if lo < hi else None

    def rate_level(self, rate: float | None, relax: bool = False) -> int:
        if rate is None or not self.rates:
            return 0
        f = RATE_RELAX if relax else 1.0
        return max((k for k, lim in enumerate(self.rates, 1) if lim is not None and rate >= lim * f), default=0)


def combine(levels, ladder: bool) -> int:
    """Level of a whole from its parts: the highest, raised by the GB 39496 ladder if ``ladder``.

    >>> combine([1, 1, 1, 1], ladder=True), combine([2, 2, 2], ladder=True), combine([3, 3], ladder=True)
    (2, 3, 4)
    >>> combine([1, 1, 1], ladder=True), combine([3, 3], ladder=False)
    (1, 3)
    """
    levels = list(levels)
    top = max(levels, default=0)
    if ladder:
        for at, n, raised in LADDER:
            if sum(v >= at for v in levels) >= n:
                top = max(top, raised)
    return top


def load_rules(conn: Connection) -> dict:
    """{(kind, asset_layer, asset_id): Rule}; asset_layer/asset_id None for a kind's default."""
    rules = {}
    for r in conn.execute(text("SELECT * FROM monitoring_thresholds")).mappings():
        kind = KINDS.get(r["kind"])
        if kind is None:
            continue
        rates = (r["rate_blue"], r["rate_yellow"], r["rate_orange"], r["rate_red"])
        rules[(r["kind"], r["asset_layer"], r["asset_id"])] = Rule(
            1 if kind.direction == "above" else -1, (r["blue"], r["yellow"], r["orange"], r["red"]),
            r["hysteresis"], rates if any(v is not None for v in rates) else None, r["rate_window_h"] * 3600.0,
            r["debounce"])
    return rules


def rule_for(rules: dict, kind: str, asset: tuple) -> Rule | None:
    return rules.get((kind, *asset)) or rules.get((kind, None, None))


def check_thresholds(kind: str, values: dict) -> None:
    """Refuse thresholds that are not in order for the kind's direction (DataError)."""
    _known_kind(kind)
    k = KINDS[kind]
    above = k.direction == "above"
    lo, hi = k.possible

    def zh(c):  # 红色预警, or 红色预警变化速率 for rate_red
        return LEVEL_CODES[c.removeprefix("rate_")][0] + ("变化速率" if c.startswith("rate_") else "")
    for c in LEVELS[1:]:  # (a threshold no working sensor can reach would never fire)
        if values.get(c) is not None and not lo <= values[c] <= hi:
            raise DataError(f"{kind}: {c} ({values[c]:g}) is beyond what a sensor can report ({lo:g} to {hi:g} "
                            f"{k.unit})",
                            zh=f"{k.zh}：{zh(c)}阈值 {values[c]:g} 超出传感器可测范围（{lo:g} 至 {hi:g} {k.unit}）")
    for group in (LEVELS[1:], [f"rate_{c}" for c in LEVELS[1:]]):
        seq = [(c, values.get(c)) for c in group if values.get(c) is not None]
        for (c1, v1), (c2, v2) in zip(seq, seq[1:]):
            if (v2 <= v1) if above or c1.startswith("rate") else (v2 >= v1):
                up = above or c1.startswith("rate")
                raise DataError(f"{kind}: {c2} ({v2}) must be {'above' if up else 'below'} {c1} ({v1})",
                                zh=f"{k.zh}：{zh(c2)}阈值（{v2}）应{'高' if up else '低'}于{zh(c1)}阈值（{v1}）")
    if values.get("hysteresis") is not None and values["hysteresis"] < 0:
        raise DataError(f"{kind}: hysteresis must be >= 0", zh=f"{k.zh}：回差应不小于 0")


def _known_kind(kind: str) -> None:
    if kind not in KINDS:
        raise DataError(f"unknown sensor kind {kind!r}; kinds: {', '.join(KINDS)}",
                        zh=f"未知的监测类型 {kind!r}；可用类型：{', '.join(KINDS)}")


def _asset_of_kind(kind: str, asset_layer: str | None, asset_id: int | None) -> None:
    """Refuse an asset that is half given or of another layer than the kind's sensors."""
    if (asset_layer is None) != (asset_id is None):
        raise DataError("give both asset_layer and asset_id (one asset) or neither (the kind's default)",
                        zh="asset_layer 与 asset_id 须同时给出（单个对象）或都不给（该类型的默认阈值）")
    if asset_layer is not None and asset_layer != KINDS[kind].asset_layer:
        raise DataError(f"{kind} sensors belong to {KINDS[kind].asset_layer}, not {asset_layer}",
                        zh=f"{KINDS[kind].zh}传感器属于 {KINDS[kind].asset_layer}，而非 {asset_layer}")


# ------------------------------------------------------------------------------- state machine
@dataclass
class State:
    """The alarm state machine of one point (row of ``monitoring_sensor_state``); times in epoch s."""

    sensor_id: int
    last_time: float | None = None
    last_value: float | None = None
    level: int = 0
    raw_level: int = 0
    up_n: int = 0
    up_min: int = 0
    down_n: int = 0
    down_max: int = 0
    anchors: list = field(default_factory=list)
    offline: bool = False


def rate_of(state: State, rule: Rule, t: float, v: float) -> float | None:
    """Rate of change per day: the mean of the current bucket of readings against the mean of the
    oldest bucket in the window (buckets of a sixth of the window; at least half a window apart).
    Means of ~24 readings make the rate robust to sensor noise; the state keeps at most 7 buckets
    ``[start, sum of t, sum of v, n]``."""
    window, buckets = rule.rate_window_s, state.anchors
    while buckets and t - buckets[0][0] > window:
        buckets.pop(0)
    if not buckets or t - buckets[-1][0] >= window / 6:
        buckets.append([t, 0.0, 0.0, 0])
    last = buckets[-1]
    last[1] += t
    last[2] += v
    last[3] += 1
    first = buckets[0]
    t0, t1 = first[1] / first[3], last[1] / last[3]
    if t1 - t0 < window / 2:
        return None
    return (last[2] / last[3] - first[2] / first[3]) / ((t1 - t0) / 86400.0)


def step(state: State, rule: Rule | None, t: float, v: float) -> tuple[bool, bool]:
    """Advance ``state`` by one reading at epoch ``t``; returns (point level changed, raw crossing).

    A reading past a higher threshold counts towards a rise (``debounce`` of them raise the level to
    the lowest level they all passed; a red one raises it to red at once). A reading inside the
    hysteresis band above the current level neither counts nor breaks the count, so a value hovering
    at a threshold rises once and stays. A reading clearly below the current level (past the
    threshold by ``hysteresis``) counts towards a fall; ``debounce`` consecutive ones lower it.
    """
    state.last_time, state.last_value, state.offline = t, v, False
    if rule is None:
        return False, False
    rate = rate_of(state, rule, t, v) if rule.rates else None
    up = max(rule.value_level(v), rule.rate_level(rate))
    hold = max(rule.value_level(v, True), rule.rate_level(rate, True))
    crossed = up > state.raw_level
    state.raw_level = up
    level = state.level
    if up > level:
        state.down_n = 0
        state.up_min = up if state.up_n == 0 else min(state.up_min, up)
        state.up_n += 1
        if up == RED:  # red is never debounced
            state.level = RED
        elif state.up_n >= rule.debounce:
            state.level = state.up_min
    elif hold > level:  # in the band above the current level
        state.down_n = 0
    elif hold < level:
        state.up_n = 0
        state.down_max = hold if state.down_n == 0 else max(state.down_max, hold)
        state.down_n += 1
        if state.down_n >= rule.debounce:
            state.level = state.down_max
    else:
        state.up_n = state.down_n = 0
    if state.level != level:
        state.up_n = state.down_n = 0
        return True, crossed
    return False, crossed


# -------------------------------------------------------------------------------------- sensors
@dataclass(frozen=True)
class SensorMeta:
    id: int
    code: str
    kind: str
    asset: tuple
    interval_s: int
    synthetic: bool


_CACHE: dict = {}
# monitoring_sensor_catalogue moves only with the columns of SensorMeta (migration 0008_monitoring),
# not with the alarm levels the ingest writes into monitoring_sensors.
VERSIONS_SQL = ("(SELECT version FROM layer_versions WHERE layer = 'monitoring_sensor_catalogue') AS sensors, "
                "(SELECT version FROM layer_versions WHERE layer = 'monitoring_thresholds') AS thresholds")


def catalogue(conn: Connection, lock: bool = False) -> tuple[dict[str, SensorMeta], dict]:
    """Sensors by code and threshold rules, cached per database until the sensor catalogue (code,
    kind, asset, interval, synthetic) or ``monitoring_thresholds`` changes (versions bumped by
    triggers); with ``lock`` the ingest lock is taken in the same round trip. A new catalogue
    version also re-synchronises ``monitored_assets``."""
    lock_sql = "pg_advisory_xact_lock(:k), " if lock else ""
    versions = conn.execute(text(f"SELECT {lock_sql}{VERSIONS_SQL}"), {"k": LOCK_KEY}).mappings().one()
    db = db_key(conn.engine)
    out = []
    for what, load in (("sensors", _load_sensors), ("thresholds", load_rules)):
        hit = _CACHE.get((db, what))
        if hit is None or hit[0] != versions[what]:
            hit = _CACHE[(db, what)] = (versions[what], load(conn))
        out.append(hit[1])
    return out[0], out[1]


def _load_sensors(conn: Connection) -> dict[str, SensorMeta]:
    rows = conn.execute(text("SELECT id, code, kind, asset_layer, asset_id, interval_s, synthetic "
                             "FROM monitoring_sensors")).all()
    sync_assets(conn)
    return {r.code: SensorMeta(r.id, r.code, r.kind, (r.asset_layer, r.asset_id), r.interval_s, r.synthetic)
            for r in rows}


def sensors(conn: Connection) -> dict[str, SensorMeta]:
    """Sensors by code (cached; see :func:`catalogue`)."""
    return catalogue(conn)[0]


def sync_assets(conn: Connection) -> None:
    """One ``monitored_assets`` row per asset that has sensors (point on surface of the asset), written
    only where something changed so the layer version (tile cache) is not bumped for nothing."""
    want = {}
    for layer in ASSET_LAYERS:
        table = registry.get(layer).table  # identifier from the registry only
        for r in conn.execute(text(
                f"SELECT a.id, a.name, bool_or(s.synthetic) OR bool_or(a.synthetic) AS synthetic, count(*) AS n, "
                f"ST_AsText(ST_PointOnSurface(a.geom)) AS wkt FROM monitoring_sensors s JOIN {table} a "
                f"ON a.id = s.asset_id WHERE s.asset_layer = :layer GROUP BY a.id"), {"layer": layer}):
            want[(layer, r.id)] = (r.name, r.synthetic, r.n, r.wkt)
    have = {(r.asset_layer, r.asset_id): (r.name, r.synthetic, r.sensors, r.wkt) for r in conn.execute(text(
        "SELECT asset_layer, asset_id, name, synthetic, sensors, ST_AsText(geom) AS wkt FROM monitored_assets"))}
    gone = [k for k in have if k not in want]
    if gone:
        conn.execute(text("DELETE FROM monitored_assets WHERE asset_layer = :l AND asset_id = :i"),
                     [{"l": l, "i": i} for l, i in gone])
    upsert = [{"l": k[0], "i": k[1], "name": v[0], "syn": v[1], "n": v[2], "wkt": v[3]}
              for k, v in want.items() if have.get(k) != v]
    if upsert:
        conn.execute(text(
            "INSERT INTO monitored_assets (asset_layer, asset_id, name, synthetic, sensors, geom) "
            "VALUES (:l, :i, :name, :syn, :n, ST_GeomFromText(:wkt, 4326)) ON CONFLICT (asset_layer, asset_id) "
            "DO UPDATE SET name = EXCLUDED.name, synthetic = EXCLUDED.synthetic, sensors = EXCLUDED.sensors, "
            "geom = EXCLUDED.geom"), upsert)


# --------------------------------------------------------------------------------------- parsing
_GC = {"pauses": 0, "was_enabled": False}
_GC_LOCK = threading.Lock()


@contextmanager
def gc_paused():
    """Pause CPython's cyclic garbage collector while a batch is decoded, validated and evaluated.

    A batch allocates a few containers per reading (decoded objects, validated tuples, per-sensor
    series): none of them form cycles, and reference counting frees them when the batch ends. Yet
    every allocation counts towards the collector's thresholds, so every few batches a full
    collection walked the whole heap of the process (~0.1 s in the server, as long as the batch's
    own work). Nested and concurrent pauses are counted; the last one re-enables the collector if it
    was enabled before the first.
    """
    with _GC_LOCK:
        if _GC["pauses"] == 0:
            _GC["was_enabled"] = gc.isenabled()
            gc.disable()
        _GC["pauses"] += 1
    try:
        yield
    finally:
        with _GC_LOCK:
            _GC["pauses"] -= 1
            if _GC["pauses"] == 0 and _GC["was_enabled"]:
                gc.enable()


def parse_json(body: bytes) -> list:
    """The readings of a JSON body ``{"readings": [...]}`` (pydantic-core's parser, already
    installed with FastAPI: 1.6x the standard library's on a batch; repeated strings such as keys,
    sensor codes and times are decoded once)."""
    try:
        data = pydantic_core.from_json(body)
    except ValueError as exc:
        raise DataError(f"body is not valid JSON: {exc} (a CSV is sent as Content-Type text/csv or as a multipart "
                        "upload in the field 'file')") from None
    if not isinstance(data, dict) or not isinstance(data.get("readings"), list):
        raise DataError('body must be {"readings": [{"sensor", "time", "value", "unit"}, ...]} '
                        "(or a CSV with the header sensor,time,value,unit)")
    return data["readings"]


def parse_time(value) -> datetime:
    """ISO 8601 text to an aware datetime (no offset: Beijing time, UTC+8)."""
    if not isinstance(value, str):
        raise ValueError("time must be an ISO 8601 string, e.g. 2024-07-01T08:00:00+08:00")
    t = datetime.fromisoformat(value.strip())
    return t.replace(tzinfo=LOCAL_TZ) if t.tzinfo is None else t


def parse_csv(body: bytes | str) -> list[dict]:
    """Rows of a CSV with the header sensor,time,value,unit (UTF-8, optional BOM)."""
    if isinstance(body, bytes):
        try:
            body = body.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise DataError("CSV must be UTF-8") from None
    # newline="": line ends (LF, CRLF or a lone CR) are the reader's to find, as the csv module asks; a CR inside
    # an unquoted field was its "new-line character seen in unquoted field" error, then a 500
    reader = csv.DictReader(io.StringIO(body, newline=""))
    try:
        missing = {"sensor", "time", "value", "unit"} - set(reader.fieldnames or ())
        if missing:
            raise DataError(f"CSV needs the columns sensor,time,value,unit (missing: {', '.join(sorted(missing))})")
        return [{k: row.get(k) for k in ("sensor", "time", "value", "unit")} for row in reader]
    except csv.Error as exc:  # (e.g. a field over the csv module's limit of 131,072 characters)
        raise DataError(f"CSV cannot be read: {exc} (after line {reader.line_num})") from None


def _time_checker(now: datetime):
    """time text -> (epoch, text PostgreSQL reads as timestamptz), memoised: a batch repeats its times."""
    latest, cache = now + FUTURE_TOLERANCE, {}

    def parse(value) -> tuple[float, str]:
        hit = cache.get(value) if isinstance(value, str) else None
        if hit is None:
            t = parse_time(value)
            if t > latest:
                raise ValueError(f"time {t.isoformat()} is in the future (now {now.isoformat(timespec='seconds')})")
            if t < EARLIEST:
                raise ValueError(f"time {t.isoformat()} is before {EARLIEST.year}")
            hit = cache[value] = (t.timestamp(), t.isoformat())
        return hit
    return parse


def check(items: list, known: dict[str, SensorMeta], now: datetime, offset: int = 0) -> tuple[list, list]:
    """Validate readings one by one.

    Returns (accepted ``[(sensor, epoch, value in the kind's unit, time text)]``, rejected
    ``[{index, sensor, reason}]``; indices count from ``offset``).
    """
    accepted, rejected = [], []
    parse = _time_checker(now)
    for i, item in enumerate(items, offset):
        code = item.get("sensor") if isinstance(item, dict) else None
        try:
            if not isinstance(item, dict):
                raise ValueError("a reading must be an object {sensor, time, value, unit}")
            meta = known.get(code) if isinstance(code, str) else None
            if meta is None:
                raise ValueError(f"unknown sensor {code!r}")
            t, t_text = parse(item.get("time"))
            raw = item.get("value")
            if isinstance(raw, bool) or raw is None or raw == "":
                raise ValueError("value must be a number")
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError(f"value {raw!r} is not a finite number")
            factor = KINDS[meta.kind].units.get(item.get("unit"))
            if factor is None:
                kind = KINDS[meta.kind]
                raise ValueError(f"unit {item.get('unit')!r} is wrong for {meta.kind} (expected {kind.unit}; "
                                 f"accepted: {', '.join(kind.units)})")
            value = value * factor if factor != 1.0 else value
            lo, hi = KINDS[meta.kind].possible
            if not lo <= value <= hi:
                raise ValueError(f"value {value:g} {KINDS[meta.kind].unit} is beyond what a {meta.kind} sensor can "
                                 f"report ({lo:g} to {hi:g}): a sensor fault, not stored")
            accepted.append((meta, t, value, t_text))
        except (ValueError, TypeError, OverflowError) as exc:
            rejected.append({"index": i, "sensor": code if isinstance(code, str) else None, "reason": str(exc)})
    return accepted, rejected


# ---------------------------------------------------------------------------------------- ingest
STATE_COLUMNS = ("level", "raw_level", "up_n", "up_min", "down_n", "down_max")


def _states(conn: Connection, ids) -> dict[int, State]:
    rows = conn.execute(text(
        f"SELECT sensor_id, extract(epoch FROM last_time)::float8 AS last_time, last_value, "
        f"{', '.join(STATE_COLUMNS)}, anchors, offline FROM monitoring_sensor_state WHERE sensor_id = ANY(:ids)"),
        {"ids": list(ids)})
    return {r[0]: State(*r) for r in rows}


def _save_states(conn: Connection, states: list[State]) -> None:
    """Upsert the states, sent as one JSON document (much cheaper to bind than ten arrays)."""
    if not states:
        return
    doc = json.dumps([[s.sensor_id, s.last_time, s.last_value, s.level, s.raw_level, s.up_n, s.up_min, s.down_n,
                       s.down_max, s.anchors] for s in states])
    conn.execute(text(f"""
        INSERT INTO monitoring_sensor_state (sensor_id, last_time, last_value, {', '.join(STATE_COLUMNS)}, anchors,
                                             offline)
        SELECT (e->>0)::int, to_timestamp((e->>1)::float8), (e->>2)::float8, (e->>3)::int, (e->>4)::int,
               (e->>5)::int, (e->>6)::int, (e->>7)::int, (e->>8)::int, e->9, false
        FROM jsonb_array_elements(CAST(:doc AS jsonb)) AS e
        ON CONFLICT (sensor_id) DO UPDATE SET last_time = EXCLUDED.last_time, last_value = EXCLUDED.last_value,
            level = EXCLUDED.level, raw_level = EXCLUDED.raw_level, up_n = EXCLUDED.up_n, up_min = EXCLUDED.up_min,
            down_n = EXCLUDED.down_n, down_max = EXCLUDED.down_max, anchors = EXCLUDED.anchors, offline = false
    """), {"doc": doc})


COPY_SQL = "COPY monitoring_readings (sensor_id, time, value) FROM STDIN"
COPY_CHUNK = 2000
UPSERT_SQL = text("INSERT INTO monitoring_readings (sensor_id, time, value) SELECT * FROM unnest(CAST(:s AS int[]), "
                  "CAST(:t AS timestamptz[]), CAST(:v AS float8[])) ON CONFLICT DO NOTHING")


class _Batch:
    """A batch validated chunk by chunk while its new readings stream to the server (see :func:`_store`)."""

    def __init__(self, items: list, known: dict, now: datetime, last: dict):
        self.items, self.known, self.now, self.last = items, known, now, last
        self.accepted, self.rejected, self.fresh, self.old = [], [], [], []

    def chunks(self):
        """Validate COPY_CHUNK items at a time; yield each chunk's readings newer than their sensor's
        last evaluated one (``fresh``); the others (``old``: late or resent) are kept aside."""
        for i in range(0, len(self.items), COPY_CHUNK):
            ok, bad = check(self.items[i:i + COPY_CHUNK], self.known, self.now, offset=i)
            self.accepted += ok
            self.rejected += bad
            new = []
            for r in ok:
                lt = self.last.get(r[0].id)
                (new if lt is None or r[1] > lt else self.old).append(r)
            self.fresh += new
            yield new


def _store(conn: Connection, batch: _Batch, meanwhile) -> tuple[int, object]:
    """Validate and write a batch; returns (how many readings were new, ``meanwhile()``'s result).

    Fresh readings (newer than their sensor's last evaluated one) cannot be stored yet, every write
    going through here under the lock: they stream to the server by COPY as each chunk is validated,
    so validation overlaps the server's inserts; then ``meanwhile`` (the evaluation) runs in a thread
    while the server finishes. Old ones may be duplicates: INSERT .. ON CONFLICT DO NOTHING. Should a
    fresh one exist after all (rows written behind our back, or twice in the batch), the COPY fails
    inside a savepoint and they take the ON CONFLICT path too.
    """
    stored, future = 0, None
    cur = conn.connection.driver_connection.cursor()
    chunks = batch.chunks()
    try:
        with conn.begin_nested():
            with cur.copy(COPY_SQL) as copy:
                for chunk in chunks:
                    if chunk:
                        copy.write("".join(f"{m.id}\t{t_text}\t{v!r}\n" for m, _, v, t_text in chunk).encode())
                future = _POOL.submit(meanwhile) if _POOL and batch.accepted else None
        stored += len(batch.fresh)
        old = batch.old
    except psycopg.errors.UniqueViolation:
        for _ in chunks:  # the server may refuse before the last chunk was validated
            pass
        old = batch.old + batch.fresh
    finally:
        cur.close()
    result = future.result() if future else (meanwhile() if batch.accepted else None)
    if old:
        stored += conn.execute(UPSERT_SQL, {"s": [m.id for m, _, _, _ in old], "t": [t for _, _, _, t in old],
                                            "v": [v for _, _, v, _ in old]}).rowcount
    return stored, result


def ingest(conn: Connection, items: list, now: datetime | None = None) -> dict:
    """Validate, store and evaluate a batch of readings on ``conn`` (the caller commits).

    Parameters
    ----------
    conn : Connection
        In a transaction; everything (readings, states, alarms, counts) is written in it.
    items : list of dict
        ``{"sensor": code, "time": ISO 8601, "value": number, "unit": str}``.
    now : datetime, optional
        The clock (default: the current time): later readings are rejected, and sensors silent for
        ``OFFLINE_AFTER`` intervals before it go offline. A replay passes its simulated time.

    Returns
    -------
    dict
        ``received``, ``accepted``, ``stored`` (new rows), ``duplicates`` (same sensor and time as
        a stored reading or an earlier one in the batch), ``late`` (not evaluated because not newer
        than the sensor's last evaluated reading: late arrivals and resent duplicates),
        ``crossings`` (raw threshold crossings), ``rejected`` (index, sensor, reason), ``alarms``
        (alarm events raised by this batch).
    """
    if len(items) > MAX_BATCH:
        raise DataError(f"a batch holds at most {MAX_BATCH} readings (got {len(items)}); split it")
    now = now or datetime.now(timezone.utc)
    with gc_paused():
        known, rules = catalogue(conn, lock=True)
        codes = {it.get("sensor") for it in items if isinstance(it, dict) and isinstance(it.get("sensor"), str)}
        states = _states(conn, {known[c].id for c in codes if c in known})
        batch = _Batch(items, known, now, {sid: st.last_time for sid, st in states.items()})
        stored, run = _store(conn, batch, lambda: _run_machines(batch.accepted, states, rules))
        result = {"received": len(items), "accepted": len(batch.accepted), "stored": stored,
                  "duplicates": len(batch.accepted) - stored, "late": 0, "crossings": 0,
                  "rejected": batch.rejected, "alarms": []}
        if batch.accepted:
            _record(conn, run, result)
        result["alarms"] += check_offline(conn, now)
    return result


@dataclass
class _Run:
    """What the state machines did with one batch (before anything is written)."""

    touched: list          # states that moved
    transitions: list      # (t, sensor id, new point level, value)
    before: dict           # sensor id -> point level before the batch
    metas: dict            # sensor id -> SensorMeta
    daily: dict            # ((asset), day) -> Counter
    back_online: set       # assets with a sensor that reported again
    late: int
    crossings: int
    last_t: float


def _run_machines(readings: list, states: dict, rules: dict) -> _Run:
    """Feed each sensor's readings, in time order, to its state machine (pure Python, no database)."""
    by_sensor, metas = defaultdict(list), {}  # keyed by id: hashing the frozen dataclass costs more
    for meta, t, v, _ in readings:
        series = by_sensor[meta.id]
        if not series:
            metas[meta.id] = meta
        series.append((t, v))
    run = _Run([], [], {}, metas, defaultdict(Counter), set(), 0, 0, max(r[1] for r in readings))
    days: dict = {}
    for sid, series in by_sensor.items():
        meta = metas[sid]
        state = states.get(meta.id) or State(meta.id)
        run.before[meta.id] = state.level
        if state.offline:
            run.back_online.add(meta.asset)
        rule = rule_for(rules, meta.kind, meta.asset)
        series.sort(key=_first)  # stable: of two readings at the same time, the first in the batch counts
        last = state.last_time
        counts = Counter()  # readings per day of this sensor
        band = _band(state, rule)
        sign = rule.direction if rule else 1
        prev, late_red = None, False
        for t, v in series:
            if t == prev:  # the same time twice in the batch: the first one counts
                continue
            prev = t
            if last is not None and t <= last:
                run.late += 1
                if rule is not None and state.level < RED and rule.value_level(v) == RED:
                    # Out of order, so not stepped (it would break debouncing), but a red value is never
                    # lost: the point goes red as of the sensor's latest reading (red is never debounced,
                    # see step) and later readings lower it as usual.
                    state.level = state.raw_level = RED
                    state.up_n = state.down_n = 0
                    band, late_red = _band(state, rule), True
                    run.crossings += 1
                    run.daily[(meta.asset, datetime.fromtimestamp(last, LOCAL_TZ).date())]["crossings"] += 1
                    run.transitions.append((last, meta.id, RED, v))
                continue
            day = days.get(t)
            if day is None:
                day = days[t] = datetime.fromtimestamp(t, LOCAL_TZ).date()
            counts[day] += 1
            if band is not None and band[0] <= sign * v < band[1]:  # fast path: nothing changes
                state.last_time, state.last_value, state.offline = t, v, False
                continue
            changed, crossed = step(state, rule, t, v)
            band = _band(state, rule)
            if crossed:
                run.daily[(meta.asset, day)]["crossings"] += 1
                run.crossings += 1
            if changed:
                run.transitions.append((t, meta.id, state.level, v))
        for day, n in counts.items():
            run.daily[(meta.asset, day)]["readings"] += n
        if late_red or (state.last_time is not None and state.last_time != last):
            run.touched.append(state)
    return run


def _band(state: State, rule: Rule | None) -> tuple[float, float] | None:
    """The steady band of a point (see :meth:`Rule.steady_band`); everything when it has no rule."""
    if rule is None:
        return (-math.inf, math.inf)
    if state.up_n or state.down_n:
        return None
    return rule.steady_band(state.level, state.raw_level)


def _record(conn: Connection, run: _Run, result: dict) -> None:
    """Write what the state machines did: states, alarms (in time order), daily counts."""
    result["late"] += run.late
    result["crossings"] += run.crossings
    _save_states(conn, run.touched)
    if run.transitions:
        result["alarms"] += _apply(conn, run.transitions, run.metas, run.before, run.daily)
    if run.back_online:
        result["alarms"] += _offline_alarms(conn, run.back_online, run.last_t)
    _save_daily(conn, run.daily)


def _item_levels(asset: tuple, points: dict) -> dict:
    """{item: level} of one asset from {sensor_id: (kind, level)}."""
    ladder = asset[0] == "tailings_ponds"
    by_kind = defaultdict(list)
    for kind, level in points.values():
        by_kind[kind].append(level)
    items = {kind: combine(levels, ladder) for kind, levels in by_kind.items()}
    if ladder:
        whole = combine(items.values(), True)
        items["pond"] = whole if whole > max(items.values(), default=0) else 0
    return items


def asset_level(asset: tuple, items: dict) -> int:
    values = [v for k, v in items.items() if k not in ("offline", "pond")]
    return combine(values, asset[0] == "tailings_ponds")


def _apply(conn: Connection, transitions: list, metas: dict, before: dict, daily: dict) -> list:
    """Replay the point-level changes in time order through item levels into alarm events."""
    assets = {metas[sid].asset for _, sid, _, _ in transitions}
    points: dict = defaultdict(dict)
    for r in conn.execute(text(
            "SELECT s.id, s.kind, s.asset_layer, s.asset_id, coalesce(st.level, 0) AS level FROM monitoring_sensors s "
            "LEFT JOIN monitoring_sensor_state st ON st.sensor_id = s.id WHERE (s.asset_layer, s.asset_id) IN "
            "(SELECT * FROM unnest(CAST(:l AS text[]), CAST(:i AS int[])))"),
            {"l": [a[0] for a in assets], "i": [a[1] for a in assets]}):
        # levels as they were before this batch (the state table already holds the new ones)
        points[(r.asset_layer, r.asset_id)][r.id] = (r.kind, before.get(r.id, r.level))
    alarms, pending = _open_alarms(conn, assets), {}
    items = {a: _item_levels(a, points[a]) for a in assets}
    events, level_times = [], {}
    for t, sid, level, value in sorted(transitions):
        meta = metas[sid]
        points[meta.asset][sid] = (meta.kind, level)
        new = _item_levels(meta.asset, points[meta.asset])
        old = items[meta.asset]
        for item in sorted(set(old) | set(new)):
            if old.get(item, 0) != new.get(item, 0):
                events.append(_alarm_change(conn, alarms, pending, meta, item, new.get(item, 0), t, value, daily))
        if asset_level(meta.asset, new) != asset_level(meta.asset, old):
            level_times[meta.asset] = t
        items[meta.asset] = new
    _flush(conn, pending)
    final = {sid: level for _, sid, level, _ in sorted(transitions)}
    conn.execute(text("UPDATE monitoring_sensors s SET alarm_level = u.lv FROM unnest(CAST(:ids AS int[]), "
                      "CAST(:lv AS text[])) AS u(id, lv) WHERE s.id = u.id AND s.alarm_level <> u.lv"),
                 {"ids": list(final), "lv": [LEVELS[v] for v in final.values()]})
    _update_assets(conn, {a: asset_level(a, items[a]) for a in assets}, level_times)
    return events


def _open_alarms(conn: Connection, assets) -> dict:
    rows = conn.execute(text(
        "SELECT * FROM monitoring_alarms WHERE status = 'open' AND (asset_layer, asset_id) IN "
        "(SELECT * FROM unnest(CAST(:l AS text[]), CAST(:i AS int[])))"),
        {"l": [a[0] for a in assets], "i": [a[1] for a in assets]}).mappings()
    return {((r["asset_layer"], r["asset_id"]), r["item"]): dict(r) for r in rows}


def _message(item: str, level: int, meta: SensorMeta | None, value: float | None) -> str:
    (zh, en), (level_zh, level_en, _) = ITEMS[item], LEVEL_CODES[LEVELS[level]]
    what = f"{zh}{level_zh} / {en}, {level_en.lower()} alarm"
    if meta is not None and value is not None and item in KINDS:
        what += f": {meta.code} = {value:g} {KINDS[item].unit}"
    return what


UPDATE_ALARM = text(
    "UPDATE monitoring_alarms SET level = :lv, max_level = greatest(max_level, :lv), updated_at = :t, "
    # (an escalation needs a new acknowledgement: SET reads the row's old level)
    "acknowledged_by = CASE WHEN :lv > level THEN NULL ELSE acknowledged_by END, "
    "acknowledged_at = CASE WHEN :lv > level THEN NULL ELSE acknowledged_at END, "
    "sensor_code = coalesce(:code, sensor_code), value = coalesce(:v, value), message = :msg, "
    "status = CASE WHEN :lv = 0 THEN 'closed' ELSE 'open' END, "
    "closed_at = CASE WHEN :lv = 0 THEN CAST(:t AS timestamptz) END WHERE id = :id")
INSERT_EVENT = text("INSERT INTO monitoring_alarm_events (alarm_id, time, event, level, sensor_code, value, note) "
                    "VALUES (:a, :t, :e, :lv, :code, :v, :msg)")


def _flush(conn: Connection, pending: dict) -> None:
    """Write the queued alarm updates and history events (executemany: one round trip each)."""
    for key, sql in (("updates", UPDATE_ALARM), ("events", INSERT_EVENT)):
        if pending.get(key):
            conn.execute(sql, pending[key])
            pending[key] = []


def _alarm_change(conn: Connection, alarms: dict, pending: dict, meta, item: str, level: int, t: float, value,
                  daily, asset: tuple | None = None, note: str | None = None) -> dict:
    """Open, escalate, de-escalate or close the (asset, item) alarm; returns the event. Updates and
    events are queued in ``pending`` (see :func:`_flush`); an opening is written at once."""
    asset = asset or meta.asset
    when = datetime.fromtimestamp(t, timezone.utc)
    key, code = (asset, item), meta.code if meta else None
    alarm = alarms.get(key)
    old = alarm["level"] if alarm else 0
    msg = note or _message(item, level, meta, value)
    counts = daily[(asset, when.astimezone(LOCAL_TZ).date())]
    if alarm is None:
        if level == 0:
            return {}
        _flush(conn, pending)  # a close of the same (asset, item) may be queued: one open alarm at a time
        alarm_id = conn.execute(text(
            "INSERT INTO monitoring_alarms (asset_layer, asset_id, item, level, max_level, opened_at, updated_at, "
            "sensor_code, value, message, synthetic) VALUES (:l, :i, :item, :lv, :lv, :t, :t, :code, :v, :msg, "
            "coalesce((SELECT synthetic FROM monitored_assets WHERE asset_layer = :l AND asset_id = :i), false)) "
            "RETURNING id"), {"l": asset[0], "i": asset[1], "item": item, "lv": level, "t": when, "code": code,
                              "v": value, "msg": msg}).scalar_one()
        alarms[key] = {"id": alarm_id, "level": level}
        event = "open"
        counts["opened"] += item != "offline"  # (the daily counts set alarms against threshold crossings: an
        # offline alarm has none, and counted it made the reduction negative)
    else:
        alarm_id = alarm["id"]
        event = "close" if level == 0 else ("escalate" if level > old else "deescalate")
        pending.setdefault("updates", []).append(
            {"lv": level, "t": when, "code": code, "v": value, "msg": msg, "id": alarm_id})
        if level == 0:
            del alarms[key]
        else:
            alarm["level"] = level
        if event == "escalate" and item != "offline":
            counts["escalated"] += 1
    if level == RED and old != RED:
        counts["red"] += 1
    pending.setdefault("events", []).append(
        {"a": alarm_id, "t": when, "e": event, "lv": level, "code": code, "v": value, "msg": msg})
    return {"alarm_id": alarm_id, "asset_layer": asset[0], "asset_id": asset[1], "item": item, "event": event,
            "level": LEVELS[level], "time": when.isoformat(), "sensor": code}


def _update_assets(conn: Connection, levels: dict, level_times: dict) -> None:
    """Write the current level and open/offline counts of ``levels``' assets where they changed."""
    if not levels:
        return
    keys = list(levels)
    rows = conn.execute(text("""
        SELECT a.asset_layer, a.asset_id, a.alarm_level, a.open_alarms, a.offline_sensors,
          (SELECT count(*) FROM monitoring_alarms m WHERE m.status = 'open' AND m.asset_layer = a.asset_layer
             AND m.asset_id = a.asset_id) AS n_open,
          (SELECT count(*) FROM monitoring_sensors s JOIN monitoring_sensor_state st ON st.sensor_id = s.id
             WHERE st.offline AND s.asset_layer = a.asset_layer AND s.asset_id = a.asset_id) AS n_offline
        FROM monitored_assets a WHERE (a.asset_layer, a.asset_id) IN
          (SELECT * FROM unnest(CAST(:l AS text[]), CAST(:i AS int[])))"""),
        {"l": [k[0] for k in keys], "i": [k[1] for k in keys]}).mappings()
    changes = []
    for r in rows:
        key = (r["asset_layer"], r["asset_id"])
        level = LEVELS[levels[key]] if levels[key] is not None else r["alarm_level"]
        if (level, r["n_open"], r["n_offline"]) != (r["alarm_level"], r["open_alarms"], r["offline_sensors"]):
            since = level_times.get(key)
            changes.append({"l": key[0], "i": key[1], "lv": level, "o": r["n_open"], "off": r["n_offline"],
                            "t": datetime.fromtimestamp(since, timezone.utc) if since else None})
    if changes:
        conn.execute(text("UPDATE monitored_assets SET alarm_level = :lv, open_alarms = :o, offline_sensors = :off, "
                          "level_since = coalesce(:t, level_since) WHERE asset_layer = :l AND asset_id = :i"), changes)


def _save_daily(conn: Connection, daily: dict) -> None:
    rows = [{"l": a[0], "i": a[1], "d": day, **{k: c[k] for k in ("readings", "crossings", "opened", "escalated",
                                                                     "red")}}
            for (a, day), c in daily.items()]
    if rows:
        conn.execute(text(
            "INSERT INTO monitoring_daily AS m (asset_layer, asset_id, day, readings, crossings, opened, escalated, red) "
            "VALUES (:l, :i, :d, :readings, :crossings, :opened, :escalated, :red) ON CONFLICT (asset_layer, asset_id, "
            "day) DO UPDATE SET readings = m.readings + EXCLUDED.readings, crossings = m.crossings + EXCLUDED.crossings, "
            "opened = m.opened + EXCLUDED.opened, escalated = m.escalated + EXCLUDED.escalated, "
            "red = m.red + EXCLUDED.red"), rows)


# --------------------------------------------------------------------------------------- offline
def check_offline(conn: Connection, now: datetime | None = None) -> list:
    """Mark sensors silent for ``OFFLINE_AFTER`` intervals offline and raise their assets' alarm."""
    now = now or datetime.now(timezone.utc)
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOCK_KEY})  # re-entrant within ingest
    rows = conn.execute(text(
        "UPDATE monitoring_sensor_state st SET offline = true FROM monitoring_sensors s WHERE s.id = st.sensor_id "
        "AND NOT st.offline AND st.last_time < CAST(:now AS timestamptz) - make_interval(secs => s.interval_s * :n) "
        "RETURNING s.asset_layer, s.asset_id"), {"now": now, "n": OFFLINE_AFTER}).all()
    return _offline_alarms(conn, {(r.asset_layer, r.asset_id) for r in rows}, now.timestamp()) if rows else []


def _offline_alarms(conn: Connection, assets: set, t: float) -> list:
    """Open or close the ``offline`` (blue) alarm of each asset from its offline sensors."""
    alarms, pending = _open_alarms(conn, assets), {}
    daily, events = defaultdict(Counter), []
    offline = defaultdict(list)
    for r in conn.execute(text(
            "SELECT s.asset_layer, s.asset_id, s.code FROM monitoring_sensors s JOIN monitoring_sensor_state st "
            "ON st.sensor_id = s.id WHERE st.offline AND (s.asset_layer, s.asset_id) IN "
            "(SELECT * FROM unnest(CAST(:l AS text[]), CAST(:i AS int[]))) ORDER BY s.code"),
            {"l": [a[0] for a in assets], "i": [a[1] for a in assets]}):
        offline[(r.asset_layer, r.asset_id)].append(r.code)
    for asset in sorted(assets):
        codes = offline.get(asset, [])
        level = BLUE if codes else 0
        current = alarms.get((asset, "offline"))
        if (current["level"] if current else 0) != level:
            note = f"传感器离线 Sensors offline: {', '.join(codes)}" if codes else "传感器恢复 Sensors back online"
            events.append(_alarm_change(conn, alarms, pending, None, "offline", level, t, None, daily, asset=asset,
                                        note=note))
    _flush(conn, pending)
    _update_assets(conn, {a: None for a in assets}, {})
    _save_daily(conn, daily)
    return [e for e in events if e]


# ---------------------------------------------------------------------------------------- queries
def _level_name(row: dict, *cols) -> dict:
    for c in cols:
        if row.get(c) is not None:
            row[c] = LEVELS[row[c]]
    return row


def _iso(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def list_alarms(conn: Connection, status: str = "open", asset_layer: str | None = None,
                asset_id: int | None = None, limit: int = 500) -> list[dict]:
    """Alarms (newest first) with their asset's name and the item's labels."""
    if status not in ("open", "closed", "all"):
        raise DataError("status must be open, closed or all")
    if asset_layer is not None and asset_layer not in ASSET_LAYERS:
        raise DataError(f"asset_layer must be one of {', '.join(ASSET_LAYERS)}")
    rows = conn.execute(text(
        "SELECT m.*, a.name AS asset_name FROM monitoring_alarms m LEFT JOIN monitored_assets a "
        "ON a.asset_layer = m.asset_layer AND a.asset_id = m.asset_id "
        "WHERE (:status = 'all' OR m.status = :status) AND (CAST(:l AS text) IS NULL OR m.asset_layer = :l) "
        "AND (CAST(:i AS int) IS NULL OR m.asset_id = :i) ORDER BY m.level DESC, m.updated_at DESC, m.id DESC "
        "LIMIT :lim"), {"status": status, "l": asset_layer, "i": asset_id, "lim": limit}).mappings()
    return [_iso(_level_name(dict(r), "level", "max_level")) | {"item_zh": ITEMS[r["item"]][0],
                                                                  "item_en": ITEMS[r["item"]][1]} for r in rows]


def alarm_detail(conn: Connection, alarm_id: int) -> dict | None:
    row = conn.execute(text("SELECT m.*, a.name AS asset_name FROM monitoring_alarms m LEFT JOIN monitored_assets a "
                            "ON a.asset_layer = m.asset_layer AND a.asset_id = m.asset_id WHERE m.id = :id"),
                       {"id": alarm_id}).mappings().first()
    if row is None:
        return None
    events = conn.execute(text("SELECT time, recorded_at, event, level, sensor_code, value, user_name, note "
                               "FROM monitoring_alarm_events WHERE alarm_id = :id ORDER BY id"), {"id": alarm_id})
    out = _iso(_level_name(dict(row), "level", "max_level"))
    out["history"] = [_iso(_level_name(dict(e._mapping), "level")) for e in events]
    return out | {"item_zh": ITEMS[row["item"]][0], "item_en": ITEMS[row["item"]][1]}


def acknowledge(conn: Connection, alarm_id: int, user: str, note: str | None = None) -> dict | None:
    """Record that ``user`` has seen the alarm (an ``ack`` event in its history).

    An alarm is acknowledged once per level reached: a second acknowledgement before it escalates
    again is refused (:class:`ConflictError`), keeping who acknowledged it first; an escalation clears
    the acknowledgement (``UPDATE_ALARM``)."""
    row = conn.execute(text("SELECT level, acknowledged_by, acknowledged_at FROM monitoring_alarms WHERE id = :id "
                            "FOR UPDATE"), {"id": alarm_id}).first()
    if row is None:
        return None
    if row.acknowledged_by is not None:
        at = row.acknowledged_at.astimezone(LOCAL_TZ)
        raise ConflictError(f"alarm {alarm_id} was already acknowledged by {row.acknowledged_by} at "
                            f"{at:%Y-%m-%d %H:%M} Beijing time (a new acknowledgement is needed only after it "
                            f"escalates)",
                            zh=f"警报 {alarm_id} 已由 {row.acknowledged_by} 于 {at:%Y-%m-%d %H:%M}（北京时间）确认"
                               f"（警报升级后才需再次确认）")
    conn.execute(text("UPDATE monitoring_alarms SET acknowledged_by = :u, acknowledged_at = now() WHERE id = :id"),
                 {"u": user, "id": alarm_id})
    conn.execute(text("INSERT INTO monitoring_alarm_events (alarm_id, time, event, level, user_name, note) "
                      "VALUES (:a, now(), 'ack', :lv, :u, :n)"), {"a": alarm_id, "lv": row.level, "u": user, "n": note})
    return alarm_detail(conn, alarm_id)


def daily_counts(conn: Connection, days: int = 7, asset_layer: str | None = None,
                 asset_id: int | None = None) -> list[dict]:
    """Per asset and day: readings, raw threshold crossings, alarms opened, escalations, red alarms."""
    rows = conn.execute(text(
        "SELECT d.*, a.name AS asset_name FROM monitoring_daily d LEFT JOIN monitored_assets a "
        "ON a.asset_layer = d.asset_layer AND a.asset_id = d.asset_id "
        "WHERE d.day > (now() AT TIME ZONE 'Asia/Shanghai')::date - :days "
        "AND (CAST(:l AS text) IS NULL OR d.asset_layer = :l) AND (CAST(:i AS int) IS NULL OR d.asset_id = :i) "
        "ORDER BY d.day DESC, d.asset_layer, d.asset_id"), {"days": days, "l": asset_layer, "i": asset_id}).mappings()
    return [{**dict(r), "day": r["day"].isoformat()} for r in rows]


def thresholds_of(rule: Rule | None) -> dict | None:
    if rule is None:
        return None
    return {"direction": "above" if rule.direction > 0 else "below",
            **dict(zip(LEVELS[1:], rule.limits)), "hysteresis": rule.hysteresis,
            "rates_per_day": dict(zip(LEVELS[1:], rule.rates)) if rule.rates else None,
            "debounce": rule.debounce}


def asset_view(conn: Connection, asset_layer: str, asset_id: int, hours: float = 48,
               max_points: int = 2000) -> dict | None:
    """An asset's level, open alarms and each sensor's recent readings with its thresholds (panel); an asset
    without sensors has none of them (not an error: the panel asks for every pond and installation it opens);
    None when there is no such asset."""
    if asset_layer not in ASSET_LAYERS:
        raise DataError(f"asset_layer must be one of {', '.join(ASSET_LAYERS)}")
    asset = conn.execute(text("SELECT name, alarm_level, open_alarms, offline_sensors, level_since, synthetic "
                              "FROM monitored_assets WHERE asset_layer = :l AND asset_id = :i"),
                         {"l": asset_layer, "i": asset_id}).mappings().first()
    if asset is None:  # (the table: one of ASSET_LAYERS, checked above)
        asset = conn.execute(text(f"SELECT name, NULL AS alarm_level, 0 AS open_alarms, 0 AS offline_sensors, "
                                  f"NULL AS level_since, synthetic FROM {asset_layer} WHERE id = :i"),
                             {"i": asset_id}).mappings().first()
        if asset is None:
            return None
    rules = load_rules(conn)
    out = _iso(dict(asset)) | {"asset_layer": asset_layer, "asset_id": asset_id, "sensors": [],
                               "alarms": list_alarms(conn, "open", asset_layer, asset_id)}
    sensors_ = conn.execute(text(
        "SELECT s.id, s.code, s.name, s.kind, s.alarm_level, s.interval_s, st.last_time, st.last_value, "
        "coalesce(st.offline, false) AS offline FROM monitoring_sensors s LEFT JOIN monitoring_sensor_state st "
        "ON st.sensor_id = s.id WHERE s.asset_layer = :l AND s.asset_id = :i ORDER BY s.kind, s.code"),
        {"l": asset_layer, "i": asset_id}).mappings().all()
    for s in sensors_:
        readings = conn.execute(text(
            "SELECT time, value FROM (SELECT time, value FROM monitoring_readings WHERE sensor_id = :id AND "
            "time > coalesce(CAST(:last AS timestamptz), now()) - make_interval(secs => :secs) "
            "ORDER BY time DESC LIMIT :n) r ORDER BY time"),
            {"id": s["id"], "last": s["last_time"], "secs": hours * 3600, "n": max_points}).all()
        kind = KINDS[s["kind"]]
        out["sensors"].append(_iso(dict(s)) | {
            "kind_zh": kind.zh, "kind_en": kind.en, "unit": kind.unit,
            "thresholds": thresholds_of(rule_for(rules, s["kind"], (asset_layer, asset_id))),
            "readings": [[r.time.isoformat(), r.value] for r in readings]})
    return out


def sensor_readings(conn: Connection, code: str, since: datetime | None = None, until: datetime | None = None,
                    limit: int = 10000) -> dict | None:
    meta = conn.execute(text("SELECT id, kind FROM monitoring_sensors WHERE code = :c"), {"c": code}).first()
    if meta is None:
        return None
    # (bounds without an offset are Beijing time, as reading times are on upload)
    since, until = (t.replace(tzinfo=LOCAL_TZ) if t is not None and t.tzinfo is None else t for t in (since, until))
    rows = conn.execute(text(
        "SELECT time, value FROM monitoring_readings WHERE sensor_id = :id AND (CAST(:a AS timestamptz) IS NULL OR "
        "time >= :a) AND (CAST(:b AS timestamptz) IS NULL OR time <= :b) ORDER BY time DESC LIMIT :n"),
        {"id": meta.id, "a": since, "b": until, "n": limit}).all()
    return {"sensor": code, "kind": meta.kind, "unit": KINDS[meta.kind].unit,
            "readings": [[r.time.isoformat(), r.value] for r in reversed(rows)]}


def list_thresholds(conn: Connection) -> list[dict]:
    rows = conn.execute(text("SELECT * FROM monitoring_thresholds ORDER BY kind, asset_layer NULLS FIRST, asset_id"))
    return [_iso(dict(r._mapping)) for r in rows]


THRESHOLD_FIELDS = ("blue", "yellow", "orange", "red", "hysteresis", "rate_blue", "rate_yellow", "rate_orange",
                    "rate_red", "rate_window_h", "debounce", "source", "synthetic")


def set_threshold(conn: Connection, kind: str, values: dict, asset_layer: str | None = None,
                  asset_id: int | None = None) -> dict:
    """Create or replace the thresholds of ``kind`` (for one asset, or the kind's default)."""
    check_thresholds(kind, values)
    _asset_of_kind(kind, asset_layer, asset_id)
    if asset_layer is not None and conn.execute(text(  # (the table: KINDS', equal to asset_layer just above)
            f"SELECT NOT EXISTS (SELECT 1 FROM {KINDS[kind].asset_layer} WHERE id = :i)"), {"i": asset_id}).scalar():
        raise DataError(f"no {asset_layer} {asset_id}: thresholds are set for an asset that exists",
                        zh=f"没有 {asset_layer} {asset_id}：只能为存在的对象设阈值")
    if not any(values.get(c) is not None for c in ("blue", "yellow", "orange", "red")):
        raise DataError("give at least one of blue, yellow, orange, red", zh="请至少给出蓝、黄、橙、红色预警阈值之一")
    row = {c: values.get(c) for c in THRESHOLD_FIELDS}
    row.update(hysteresis=row["hysteresis"] or 0.0, rate_window_h=row["rate_window_h"] or 24.0,
               debounce=row["debounce"] or 2, synthetic=bool(row["synthetic"]))
    conn.execute(text("DELETE FROM monitoring_thresholds WHERE kind = :k AND asset_layer IS NOT DISTINCT FROM :l "
                      "AND asset_id IS NOT DISTINCT FROM :i"), {"k": kind, "l": asset_layer, "i": asset_id})
    new = conn.execute(text(
        f"INSERT INTO monitoring_thresholds (kind, asset_layer, asset_id, {', '.join(THRESHOLD_FIELDS)}) "
        f"VALUES (:kind, :asset_layer, :asset_id, {', '.join(':' + c for c in THRESHOLD_FIELDS)}) RETURNING *"),
        row | {"kind": kind, "asset_layer": asset_layer, "asset_id": asset_id}).mappings().one()
    return _iso(dict(new))


def delete_threshold(conn: Connection, kind: str, asset_layer: str, asset_id: int) -> bool:
    """Remove one asset's thresholds of ``kind`` (False: it had none): its sensors fall back to the kind's default,
    which is replaced, never removed (a kind without one would raise no alarm). Also for an asset deleted since."""
    _known_kind(kind)
    _asset_of_kind(kind, asset_layer, asset_id)
    return conn.execute(text("DELETE FROM monitoring_thresholds WHERE kind = :k AND asset_layer = :l AND asset_id = :i"),
                        {"k": kind, "l": asset_layer, "i": asset_id}).rowcount > 0


# ------------------------------------------------------------------------------------ simulation
SIM_SOURCE = "riskmap simulate-sensors (synthetic demo feed)"
# Sensors created per asset by the simulation: (suffix, kind, zh label).
SIM_LAYOUT = {
    "tailings_ponds": [("D1", "displacement", "坝体位移1"), ("D2", "displacement", "坝体位移2"),
                       ("D3", "displacement", "坝体位移3"), ("D4", "displacement", "坝体位移4"),
                       ("P1", "phreatic_depth", "浸润线1"), ("P2", "phreatic_depth", "浸润线2"),
                       ("L1", "pond_level", "库水位"), ("F1", "freeboard", "安全超高"),
                       ("B1", "dry_beach", "干滩长度"), ("R1", "rainfall", "雨量计")],
    "hazard_installations": [("T1", "tank_level", "储罐液位"), ("T2", "temperature", "储罐温度"),
                             ("P1", "pressure", "储罐压力"), ("G1", "gas_flammable", "可燃气体探测器"),
                             ("G2", "gas_toxic", "有毒气体探测器（氨）")],
}
POND_BASE = 1900.0  # simulated pond water level datum (m); its thresholds are written per pond
# Per-asset thresholds written by the simulation for kinds that have no default (synthetic).
SIM_THRESHOLDS = {
    "pond_level": dict(blue=POND_BASE + 2.0, yellow=POND_BASE + 2.5, orange=POND_BASE + 3.0, red=POND_BASE + 3.5,
                       hysteresis=0.05, source="synthetic: red = simulated design highest flood level"),
    "temperature": dict(blue=45, yellow=50, orange=55, red=60, hysteresis=0.5, source="synthetic design values"),
    "pressure": dict(blue=1.3, yellow=1.4, orange=1.5, red=1.6, hysteresis=0.02,
                     source="synthetic: red = simulated design pressure 1.6 MPa"),
    "gas_toxic": dict(blue=15, yellow=29, orange=43, red=58, hysteresis=1,
                      source="synthetic, NH3: GB/T 50493-2019 first alarm <= 100 % OEL (PC-TWA 20 mg/m3 = 29 ppm, "
                             "yellow), second <= 200 % OEL (red)"),
}


def ensure_demo_sensors(conn: Connection, limit: int | None = None) -> dict:
    """Create synthetic sensors (and per-asset thresholds) for ponds and installations without any.

    Sensors are placed along the asset's outline. Returns {asset_layer: [asset ids with sensors]}.
    """
    out = {}
    for layer, layout in SIM_LAYOUT.items():
        table = registry.get(layer).table
        ids = conn.execute(text(f"SELECT id FROM {table} ORDER BY id LIMIT :n"), {"n": limit}).scalars().all()
        have = set(conn.execute(text("SELECT DISTINCT asset_id FROM monitoring_sensors WHERE asset_layer = :l"),
                                {"l": layer}).scalars())
        prefix = "TP" if layer == "tailings_ponds" else "HI"
        rows = [{"code": f"{prefix}{i}-{sfx}", "label": label, "kind": kind, "l": layer, "i": i,
                 "f": (k + 0.5) / len(layout)}
                for i in ids if i not in have for k, (sfx, kind, label) in enumerate(layout)]
        if rows:
            conn.execute(text(
                f"INSERT INTO monitoring_sensors (code, name, kind, asset_layer, asset_id, interval_s, synthetic, source, "
                f"geom) SELECT :code, coalesce(a.name, '') || ' ' || :label, :kind, :l, a.id, 600, true, :src, "
                f"ST_LineInterpolatePoint(ST_ExteriorRing(ST_GeometryN(a.geom, 1)), :f) FROM {table} a "
                f"WHERE a.id = :i"), [r | {"src": SIM_SOURCE} for r in rows])
        for i in ids:
            for kind, values in SIM_THRESHOLDS.items():
                if KINDS[kind].asset_layer == layer and not conn.execute(text(
                        "SELECT 1 FROM monitoring_thresholds WHERE kind = :k AND asset_layer = :l AND asset_id = :i"),
                        {"k": kind, "l": layer, "i": i}).first():
                    set_threshold(conn, kind, values | {"synthetic": True}, layer, i)
        out[layer] = list(ids)
    return out


def simulated_series(layer: str, kind: str, sfx: str, role: str, hours: np.ndarray, rng) -> np.ndarray:
    """A realistic-looking series for one sensor. ``role``: ``event`` (the injected incident in the
    last hours), ``hover`` (a value hovering at a threshold: alarm fatigue bait) or ``calm``."""
    T, n = hours[-1], len(hours)
    ramp = np.clip((hours - (T - 8)) / 8, 0, 1)          # 0 before the last 8 h, 1 at the end
    storm = np.clip((hours - (T - 10)) / 10, 0, 1)
    noise = rng.normal(0, 1, n)
    k = int(sfx[-1]) if sfx[-1].isdigit() else 1
    if kind == "displacement":
        base = {"event": (46, 52, 32, 33), "hover": (30, 12, 14, 16)}.get(role, (8, 10, 12, 14))[k - 1]
        creep = 0.3 * hours / 24
        accel = 84 * ramp ** 2 if role == "event" and k == 1 else 0
        return base + creep + accel + noise * (1.2 if role == "hover" and k == 1 else 0.4)
    if kind == "phreatic_depth":
        if role == "event":
            start, end = (6.2, 3.8) if k == 1 else (6.5, 4.3)
            return start - (start - end) * ramp + noise * 0.03
        return (5.0 if role == "hover" and k == 1 else 7.5) + noise * (0.08 if role == "hover" else 0.03)
    if kind in ("pond_level", "freeboard"):
        level = POND_BASE + 0.5 + (3.3 * storm ** 1.5 if role == "event" else 0) + noise * 0.01
        return level if kind == "pond_level" else POND_BASE + 4.7 - level
    if kind == "dry_beach":
        return 150 - (65 * storm if role == "event" else 0) + noise * 0.5
    if kind == "rainfall":
        daily = np.clip(6 + 5 * np.sin(hours / 7) + noise, 0, None)
        return daily + (124 * storm if role == "event" else 0)
    if kind == "tank_level":
        return (70 + 15.5 * np.sin(hours / 3) if role == "hover" else 55 + 15 * np.sin(hours / 5)) + noise * 0.3
    if kind == "temperature":
        return 25 + 5 * np.sin((hours - 8) / 24 * 2 * np.pi) + noise * 0.3
    if kind == "pressure":
        return 1.1 + noise * 0.01
    if kind == "gas_flammable":
        leak = 60 * np.exp(-(((hours - (T - 3)) / 0.3) ** 2)) if role == "event" else 0
        return np.clip(1 + noise * 0.5 + leak, 0, 100)
    return np.clip(2 + noise, 0, None)  # gas_toxic


def simulate(engine, hours: float = 48, step_min: float = 10, seed: int = 8, limit: int | None = None,
             live_delay: float = 0.0, live_hours: float = 6, now: datetime | None = None, progress=None) -> dict:
    """Feed a synthetic stream through :func:`ingest` (the same path as the API) and compare raw
    threshold crossings with the alarms raised, checking that no red episode was missed.

    One pond and one installation get an injected incident in the last hours (storm, rising pond
    and phreatic line, accelerating displacement; a flammable gas leak); about a third of the other
    assets have a value hovering at a threshold. The first batch also holds three bad readings to show
    their rejection. With ``live_delay`` > 0 the last ``live_hours`` are fed one step at a time with
    that many seconds between steps (watch the map change).
    """
    import time as _time

    now = (now or datetime.now(timezone.utc)).replace(microsecond=0)
    rng = np.random.default_rng(seed)
    with engine.begin() as conn:
        assets = ensure_demo_sensors(conn, limit)
        known = sensors(conn)
        rules = load_rules(conn)
        headtop = conn.execute(text("SELECT id FROM tailings_ponds WHERE headtop ORDER BY id LIMIT 1")).scalar()
    if not any(assets.values()):
        raise DataError("no tailings ponds or hazard installations to monitor: load the demo data first")
    steps = int(hours * 60 / step_min) + 1
    times = [now - timedelta(minutes=step_min * (steps - 1 - i)) for i in range(steps)]
    h = np.array([(t - times[0]).total_seconds() / 3600 for t in times])
    event = {"tailings_ponds": headtop or (assets["tailings_ponds"] or [None])[0],
             "hazard_installations": (assets["hazard_installations"] or [None])[0]}
    series, red_episodes = {}, []
    for meta in sorted(known.values(), key=lambda m: m.code):
        layer, aid = meta.asset
        if aid not in assets.get(layer, ()) or not meta.code.startswith(("TP", "HI")):
            continue
        role = "event" if aid == event[layer] else ("hover" if aid % 3 == 0 else "calm")
        values = simulated_series(layer, meta.kind, meta.code.split("-")[-1], role, h, rng)
        series[meta.code] = values
        rule, state, start = rule_for(rules, meta.kind, meta.asset), State(meta.id), None
        for t, v in zip(times, values):  # raw red episodes, for the "no red missed" check
            step(state, rule, t.timestamp(), float(v))
            if state.raw_level == RED and start is None:
                start = t
            elif state.raw_level != RED and start is not None:
                red_episodes.append((meta, start, t))
                start = None
        if start is not None:
            red_episodes.append((meta, start, times[-1] + timedelta(seconds=1)))
    unit = {code: KINDS[known[code].kind].unit for code in series}
    bad = [{"sensor": "NO-SUCH-SENSOR", "time": times[0].isoformat(), "value": 1.0, "unit": "mm"},
           {"sensor": next(iter(series)), "time": times[0].isoformat(), "value": 1.0, "unit": "furlong"},
           {"sensor": next(iter(series)), "time": times[0].isoformat(), "value": float("nan"),
            "unit": unit[next(iter(series))]}]
    totals = Counter()
    rejected, events = [], []
    live_from = steps - int(live_hours * 60 / step_min) if live_delay > 0 else steps
    per_batch = max(1, int(60 / step_min))  # an hour of readings per batch while back-filling
    i = 0
    while i < steps:
        j = i + 1 if i >= live_from else min(i + per_batch, live_from if i < live_from else steps)
        batch = [{"sensor": code, "time": times[k].isoformat(), "value": round(float(values[k]), 4),
                  "unit": unit[code]} for k in range(i, j) for code, values in series.items()]
        if i == 0:
            batch += bad
        with engine.begin() as conn:
            res = ingest(conn, batch, now=times[j - 1])
        for key in ("received", "accepted", "stored", "duplicates", "crossings"):
            totals[key] += res[key]
        rejected += res["rejected"]
        events += res["alarms"]
        if progress:
            progress(times[j - 1], res)
        i = j
        if i >= live_from and i < steps:
            _time.sleep(live_delay)
    with engine.connect() as conn:
        history = defaultdict(list)  # (asset_layer, asset_id, item) -> [(time, level)] in order
        for r in conn.execute(text(
                "SELECT m.asset_layer, m.asset_id, m.item, e.time, e.level FROM monitoring_alarm_events e "
                "JOIN monitoring_alarms m ON m.id = e.alarm_id WHERE e.event <> 'ack' ORDER BY e.time, e.id")):
            history[(r.asset_layer, r.asset_id, r.item)].append((r.time, r.level))

    def red_during(key, start, end) -> bool:
        before = [lv for t, lv in history.get(key, ()) if t <= start]
        return (before and before[-1] == RED) or any(lv == RED and start <= t < end for t, lv in history.get(key, ()))

    missed = [{"sensor": meta.code, "from": start.isoformat(), "to": end.isoformat()}
              for meta, start, end in red_episodes
              if not any(red_during((*meta.asset, item), start, end) for item in (meta.kind, "pond"))]
    opened = sum(e["event"] == "open" for e in events)
    escalated = sum(e["event"] == "escalate" for e in events)
    return {
        "sensors": len(series), "steps": steps, **totals, "rejected": rejected,
        "alarms_opened": opened, "escalations": escalated,
        "reduction": round(1 - (opened + escalated) / totals["crossings"], 3) if totals["crossings"] else None,
        "red_episodes": len(red_episodes), "red_missed": missed,
        "event_assets": event, "events": events,
    }
