"""Vector-tile SQL built from the registry (ST_AsMVT in PostGIS).

Each layer of a tile is one ``ST_AsMVT`` of the features the role may see, with only the fields the
role may see; several layers are concatenated (a valid MVT). Dense point layers are clustered on
the server below their ``cluster_below_zoom``; lines and polygons are simplified to the tile's pixel
size; each layer has a feature cap, and a capped layer is announced in the tile itself (a
``_truncated`` layer with one feature per capped layer) and to the caller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql

from layers.registry import LayerSpec

EXTENT = 4096  # tile units across a tile (the client draws a tile 256 screen pixels wide: 16 units a pixel)
BUFFER = 64  # tile units
WORLD = 40075016.685578488  # width of the Web Mercator world in metres
TILE_PX = 256  # screen pixels across a tile
CLUSTER_PX = 48  # grid cell of server-side clusters, in screen pixels
_quote = postgresql.dialect().identifier_preparer.quote
_ZXY = "%(z)s, %(x)s, %(y)s"


@dataclass(frozen=True)
class Tile:
    z: int
    x: int
    y: int

    def valid(self) -> bool:
        return 0 <= self.z <= 22 and 0 <= self.x < 2**self.z and 0 <= self.y < 2**self.z

    @property
    def pixel_m(self) -> float:
        """Metres a screen pixel covers at this zoom (not a tile unit: a pixel is EXTENT / TILE_PX of those)."""
        return WORLD / (2**self.z * TILE_PX)


def _property_sql(spec: LayerSpec, role: str) -> list[str]:
    cols = []
    for f in spec.fields_for(role):
        col = f"t.{_quote(f.name)}"
        cols.append(f"{col}::text AS {_quote(f.name)}" if f.type == "datetime" else col)
    return cols


_SQL: dict[tuple, tuple[LayerSpec, str]] = {}


def layer_sql(spec: LayerSpec, role: str, tile: Tile, cap: int) -> str:
    """SELECT returning one row (mvt bytea, n int, more bool) for one layer of one tile.

    Bound parameters (driver style): %(z)s %(x)s %(y)s. Identifiers come only from the registry;
    numbers are cast here. The text depends on the tile's zoom only; it is kept per (spec, role, zoom,
    cap) (the spec is held with it, so its id is not reused meanwhile).
    """
    key = (id(spec), role, tile.z, cap)
    hit = _SQL.get(key)
    if hit is None or hit[0] is not spec:
        hit = _SQL[key] = (spec, _layer_sql(spec, role, tile, cap))
    return hit[1]


def _layer_sql(spec: LayerSpec, role: str, tile: Tile, cap: int) -> str:
    table, name, cap = _quote(spec.table), spec.id, int(cap)
    env = f"ST_TileEnvelope({_ZXY}, margin => {BUFFER / EXTENT})"
    tile_env = f"ST_TileEnvelope({_ZXY})"
    filt = f"t.geom && ST_Transform({env}, 4326)" + (f" AND ({spec.tile_where})" if spec.tile_where else "")
    if spec.cluster_below_zoom is not None and tile.z < spec.cluster_below_zoom:
        # Server-side clustering on a global grid (clients cannot cluster vector tiles): one point
        # per occupied cell with the count and summed casualties. Never capped.
        cell = tile.pixel_m * CLUSTER_PX
        sums = [f.name for f in spec.fields_for(role) if f.name in ("deaths", "injuries", "people")]
        carry = "".join(f", t.{_quote(s)}" for s in sums)
        agg = "".join(f", sum({_quote(s)})::int AS {_quote(s)}" for s in sums)
        keep = "".join(f", {_quote(s)}" for s in sums)
        # The points of a cell drawn in the tile's buffer lie up to half a cell beyond it: read a cell more,
        # so that a cluster copied into a neighbour's buffer has its whole count there too.
        wide = f"t.geom && ST_Transform(ST_TileEnvelope({_ZXY}, margin => {BUFFER / EXTENT + CLUSTER_PX / TILE_PX}), 4326)"
        # A one-point cluster carries its row's id (a click opens that feature); larger ones an id past every
        # table id (ids are int4; MVT ids are unsigned), so never one of a feature.
        return f"""
        WITH pts AS (SELECT t.id, ST_SnapToGrid(ST_Transform(t.geom, 3857), {cell}) AS cell{carry}
                     FROM {table} t WHERE {wide}),
        c AS (SELECT cell, count(*)::int AS cluster_count, min(id) AS first{agg} FROM pts GROUP BY cell),
        kept AS (SELECT CASE WHEN cluster_count = 1 THEN first
                             ELSE 2147483648 + row_number() OVER (ORDER BY ST_X(cell), ST_Y(cell)) END AS id,
                        ST_AsMVTGeom(cell, {tile_env}, {EXTENT}, {BUFFER}, true) AS geom, cluster_count{keep}
                 FROM c)
        SELECT coalesce((SELECT ST_AsMVT(kept, '{name}', {EXTENT}, 'geom', 'id') FROM kept
                         WHERE geom IS NOT NULL), ''::bytea) AS mvt,
               (SELECT count(*) FROM kept WHERE geom IS NOT NULL)::int AS n, false AS more"""
    geom = "ST_Transform(t.geom, 3857)"
    if spec.geometry_type != "Point":
        geom = f"ST_Simplify({geom}, {tile.pixel_m / 2}, true)"  # nothing below half a pixel survives
    props = "".join(f", {c}" for c in _property_sql(spec, role))
    return f"""
        WITH cand AS (SELECT t.id, ST_AsMVTGeom({geom}, {tile_env}, {EXTENT}, {BUFFER}, true) AS geom{props}
                      FROM {table} t WHERE {filt} ORDER BY t.id LIMIT {cap + 1}),
        kept AS (SELECT * FROM cand WHERE geom IS NOT NULL ORDER BY id LIMIT {cap})
        SELECT coalesce((SELECT ST_AsMVT(kept, '{name}', {EXTENT}, 'geom', 'id') FROM kept), ''::bytea) AS mvt,
               (SELECT count(*) FROM kept)::int AS n,
               (SELECT count(*) FROM cand WHERE geom IS NOT NULL) > {cap} AS more"""


def render_steps(specs: list[LayerSpec], role: str, tile: Tile, cap: int):
    """The statements of one tile, driver-independent: a generator that yields ``(sql, params)``,
    is sent each statement's first row and returns (MVT bytes, ids of layers whose cap was hit)."""
    parts, truncated = [], []
    params = {"z": tile.z, "x": tile.x, "y": tile.y}
    for spec in specs:
        if not (spec.minzoom <= tile.z <= spec.maxzoom):
            continue
        mvt, n, more = yield layer_sql(spec, role, tile, cap), params
        parts.append(bytes(mvt))
        if more:
            truncated.append(spec.id)
    if truncated:
        (marker,) = yield (
            f"SELECT ST_AsMVT(m, '_truncated', 4096, 'geom') FROM (SELECT "
            f"ST_AsMVTGeom(ST_Centroid(ST_TileEnvelope({_ZXY})), ST_TileEnvelope({_ZXY})) AS geom, "
            "%(names)s::text AS layers, %(cap)s::int AS cap) m"), params | {"names": ",".join(truncated), "cap": cap}
        parts.append(bytes(marker))
    return b"".join(parts), truncated


def render(conn: Connection, specs: list[LayerSpec], role: str, tile: Tile, cap: int) -> tuple[bytes, list[str]]:
    """The MVT bytes for ``specs`` at ``tile`` and the ids of layers whose feature cap was hit."""
    steps = render_steps(specs, role, tile, cap)
    try:
        sql, params = next(steps)
        while True:
            sql, params = steps.send(conn.exec_driver_sql(sql, params).one())
    except StopIteration as done:
        return done.value


async def render_async(conn, specs: list[LayerSpec], role: str, tile: Tile, cap: int) -> tuple[bytes, list[str]]:
    """``render`` on an asyncpg connection (the API's tile fast path, api/asyncpool.py)."""
    steps = render_steps(specs, role, tile, cap)
    try:
        sql, params = next(steps)
        while True:
            numbered, names = _numbered(sql)
            sql, params = steps.send(await conn.fetchrow(numbered, *(params[n] for n in names)))
    except StopIteration as done:
        return done.value


@lru_cache(maxsize=1024)
def _numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """A statement with ``%(name)s`` parameters in asyncpg's ``$n`` style, and the names in order."""
    names: list[str] = []

    def number(m: re.Match) -> str:
        if m[1] not in names:
            names.append(m[1])
        return f"${names.index(m[1]) + 1}"
    return re.sub(r"%\((\w+)\)s", number, sql), tuple(names)
