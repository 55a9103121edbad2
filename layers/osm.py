"""Import OpenStreetMap roads from a ``.osm.pbf`` (or ``.osm``) file into the ``roads`` layer.

Ways tagged ``highway`` in the trunk classes (motorway, trunk, primary, secondary, tertiary and
their ``*_link``; with ``include_minor`` also unclassified, residential, living_street, service)
are read with pyosmium, split at every node they share with another selected way (so the network
is routable: segments meet at their end points), and mapped to the ``roads`` registry codes:
motorway -> motorway, trunk -> trunk, primary -> primary, secondary/tertiary -> secondary, the rest
-> urban. ``name`` (``name:zh`` first), ``ref``, ``bridge``, ``tunnel``, ``layer``, ``oneway`` (``-1``
reverses the way; motorways and roundabouts are one-way unless tagged otherwise) and ``maxspeed``
(km/h or mph; left empty if absent: the routable graph gives such a road its class's default speed,
``layers.spec.ROAD_CLASS_SPEEDS``) are kept. Bridges and tunnels of the length classes in
``RESTRICTED_CLASSES`` (大桥 and longer, 中隧道 and longer; ``layers.spec.STRUCTURE_CLASSES``) on the main
road classes can also be written to ``restricted_structures``. Everything goes through the registry
validation and is written in one transaction.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import osmium
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy.engine import Engine

from layers import registry
from layers.errors import DataError, ImportRejected
from layers.io import GEOD, settle, validate, write
from layers.spec import structure_class

CLASS_MAP = {
    "motorway": "motorway", "motorway_link": "motorway", "trunk": "trunk", "trunk_link": "trunk",
    "primary": "primary", "primary_link": "primary", "secondary": "secondary", "secondary_link": "secondary",
    "tertiary": "secondary", "tertiary_link": "secondary",
}
MINOR = {"unclassified": "urban", "residential": "urban", "living_street": "urban", "service": "urban"}
# Bridges and tunnels imported as restricted structures: those on these road classes, of these length classes.
STRUCTURE_ROADS = ("motorway", "trunk", "primary", "secondary")
RESTRICTED_CLASSES = frozenset({"bridge_xl", "bridge_l", "tunnel_xl", "tunnel_l", "tunnel_m"})
SOURCE = "OpenStreetMap contributors (ODbL 1.0), {file}"
_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(mph|km/h|kmh|kph)?\s*$", re.I)


@dataclass
class OsmImport:
    """What an OSM import did."""

    roads: int
    structures: int
    ways: int
    skipped_outside: int
    skipped_broken: int
    components: int


def parse_speed(value: str | None) -> float | None:
    """OSM ``maxspeed`` in km/h (``"60"``, ``"60 km/h"``, ``"30 mph"``); None for anything else.

    >>> parse_speed("60"), parse_speed("30 mph"), parse_speed("CN:urban")
    (60.0, 48.3, None)
    """
    m = _SPEED.match(value or "")
    if not m:
        return None
    speed = float(m.group(1)) * (1.609344 if (m.group(2) or "").lower() == "mph" else 1.0)
    return round(speed, 1)


def _layer(value: str | None) -> int | None:
    return int(value) if value and re.fullmatch(r"-?\d{1,2}", value.strip()) else None


def components(lines) -> tuple[int, np.ndarray]:
    """Connected components of a line network joined at identical end points.

    Returns (number of components, component label of each line).
    """
    lines = np.asarray(lines, dtype=object)
    if not len(lines):
        return 0, np.zeros(0, int)
    start = shapely.get_coordinates(shapely.get_point(lines, 0))
    end = shapely.get_coordinates(shapely.get_point(lines, -1))
    keys, inv = np.unique(np.vstack([start, end]), axis=0, return_inverse=True)
    n, inv = len(lines), inv.ravel()
    graph = coo_matrix((np.ones(n), (inv[:n], inv[n:])), shape=(len(keys), len(keys)))
    count, labels = connected_components(graph, directed=False)
    return count, labels[inv[:n]]


def read_osm_roads(path: str | Path, area: tuple[float, float, float, float], include_minor: bool = False,
                   structures: bool = True) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, dict]:
    """Read the road ways of an OSM file, split at shared nodes, as frames for ``roads`` and
    ``restricted_structures`` (EPSG:4326) plus counts. Ways not wholly inside ``area`` are skipped."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    classes = CLASS_MAP | (MINOR if include_minor else {})
    ways, broken = [], 0
    try:
        reader = (osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY).with_locations()
                  .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
                  .with_filter(osmium.filter.KeyFilter("highway")))
        for way in reader:
            road_class = classes.get(way.tags.get("highway"))
            if road_class is None:
                continue
            nodes = [(n.ref, n.location.lon, n.location.lat) for n in way.nodes if n.location.valid()]
            if len(nodes) < len(way.nodes) or len({n[0] for n in nodes}) < 2:
                broken += 1
                continue
            ways.append((way.id, road_class, dict(way.tags), nodes))
    except RuntimeError as exc:  # osmium: unknown format, truncated file, ...
        raise DataError(f"cannot read {path.name} as OpenStreetMap data: {exc}") from exc
    minx, miny, maxx, maxy = area
    inside, outside = [], 0
    for w in ways:
        lon = [n[1] for n in w[3]]
        lat = [n[2] for n in w[3]]
        if min(lon) < minx or max(lon) > maxx or min(lat) < miny or max(lat) > maxy:
            outside += 1
        else:
            inside.append(w)
    # a node splits a way where another selected way uses it, or where the way passes it twice
    uses = Counter(ref for w in inside for ref in {n[0] for n in w[3]})
    rows, st_rows = [], []
    source = SOURCE.format(file=path.name)
    for way_id, road_class, tags, nodes in inside:
        oneway_tag = (tags.get("oneway") or "").lower()
        reverse = oneway_tag == "-1"
        implied = tags.get("highway") in ("motorway", "motorway_link") or tags.get("junction") == "roundabout"
        oneway = reverse or oneway_tag in ("yes", "true", "1") or (implied and oneway_tag != "no")
        if reverse:
            nodes = nodes[::-1]
        bridge = tags.get("bridge", "no") != "no"
        tunnel = tags.get("tunnel", "no") not in ("no", "building_passage")
        attrs = dict(name=tags.get("name:zh") or tags.get("name"), ref=tags.get("ref"), road_class=road_class,
                     speed_kmh=parse_speed(tags.get("maxspeed")), oneway=oneway,
                     bridge=bridge, tunnel=tunnel, layer=_layer(tags.get("layer")), osm_id=way_id,
                     synthetic=False, source=source)
        seen: Counter = Counter()
        piece = [nodes[0]]
        for k, node in enumerate(nodes[1:], 1):
            piece.append(node)
            seen[node[0]] += 1
            last = k == len(nodes) - 1
            if last or uses[node[0]] > 1 or seen[node[0]] > 1 or node[0] == nodes[0][0]:
                line = shapely.LineString([(n[1], n[2]) for n in piece])
                if line.length > 0:
                    rows.append(attrs | {"length_m": round(GEOD.geometry_length(line), 1), "geometry": line})
                piece = [node]
        if structures and (bridge or tunnel) and road_class in STRUCTURE_ROADS:
            line = shapely.LineString([(n[1], n[2]) for n in nodes])
            length = GEOD.geometry_length(line)
            kind = "bridge" if bridge else "tunnel"
            cls = structure_class(kind, length)
            if cls in RESTRICTED_CLASSES:
                label = tags.get(f"{kind}:name") or tags.get("name") or \
                    f"{tags.get('ref') or ''}{'桥' if bridge else '隧道'} (OSM way {way_id})"
                st_rows.append(dict(name=label, kind=kind, structure_class=cls,
                                    length_m=round(length, 1), adr_category=tags.get("hazmat:adr_tunnel_cat"),
                                    road_ref=tags.get("ref"), synthetic=False, source=source, geometry=line))
    roads = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326") if rows else \
        gpd.GeoDataFrame({"road_class": []}, geometry=[], crs="EPSG:4326")
    structs = gpd.GeoDataFrame(st_rows, geometry="geometry", crs="EPSG:4326") if st_rows else \
        gpd.GeoDataFrame({"name": []}, geometry=[], crs="EPSG:4326")
    stats = dict(ways=len(inside), skipped_outside=outside, skipped_broken=broken,
                 components=components(roads.geometry.values)[0])
    return roads, structs, stats


def import_osm(engine: Engine, path: str | Path, area: tuple[float, float, float, float], *, replace: bool = False,
               include_minor: bool = False, structures: bool = True) -> OsmImport:
    """Validate and write the roads (and long bridges/tunnels) of an OSM file in one transaction.

    With ``replace`` the current roads (and, when ``structures``, restricted structures) are
    replaced; otherwise appended. Raises DataError (nothing written) on an unreadable file, a
    file with no road, or any feature the registry rejects.
    """
    roads, structs, stats = read_osm_roads(path, area, include_minor, structures)
    if roads.empty:
        raise DataError(f"{Path(path).name} has no road ways inside the area {area} "
                        f"({stats['skipped_outside']} outside, {stats['skipped_broken']} without node locations)")
    checked = []
    for layer_id, frame in (("roads", roads), ("restricted_structures", structs)):
        if layer_id == "restricted_structures" and not structures:
            continue
        spec = registry.get(layer_id)
        records, rejections, _ = validate(spec, frame, area) if len(frame) else ([], [], [])
        if rejections:
            raise ImportRejected(layer_id, rejections, len(frame))
        checked.append((spec, records))
    with engine.begin() as conn:
        written = [write(conn, spec, records, replace=replace) for spec, records in checked]
    settle(engine, [spec for spec, _ in checked])
    return OsmImport(roads=written[0], structures=written[1] if len(written) > 1 else 0, ways=stats["ways"],
                     skipped_outside=stats["skipped_outside"], skipped_broken=stats["skipped_broken"],
                     components=stats["components"])
