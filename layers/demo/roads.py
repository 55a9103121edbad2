"""The demo road network (connecting the real towns), its bridges and tunnels, and road accidents.

Everything here is synthetic. Lines run between real places (GeoNames towns, DataV district seats,
the OSM airport and railway stations); their courses, classes and structures are generated.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.ops import substring
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra, minimum_spanning_tree
from scipy.spatial import Delaunay, cKDTree

from layers.crs import METRIC_EPSG
from layers.demo.sources import Inputs
from layers.demo.terrain import Surface
from layers.osm import components
from layers.spec import ROAD_CLASS_SPEEDS, STRUCTURE_CLASSES, structure_class

SOURCE = "synthetic (layers.demo, seed {seed}): generated course between real places (GeoNames, DataV seats, OSM)"


@dataclass(frozen=True)
class RoadClass:
    """How the demo draws a road class (its speed is the class default, ``layers.spec.ROAD_CLASS_SPEEDS``)."""

    window: float           # m, smoothing of the grade line
    grade: float            # maximum gradient of the grade line
    bridge: float           # m of fill above the terrain that becomes a bridge
    tunnel: float           # m of cut below the terrain that becomes a tunnel
    meander: float          # midpoint displacement, fraction of the segment length
    ref: str
    zh: str
    en: str


CLASSES = {
    "motorway": RoadClass(1500, 0.035, 20, 40, 0.06, "DEMO-E{:02d}", "演示高速", "Demo expressway"),
    "trunk": RoadClass(600, 0.06, 20, 50, 0.12, "DEMO-N{:02d}", "演示国道", "Demo national road"),
    "primary": RoadClass(400, 0.08, 18, 70, 0.15, "DEMO-P{:03d}", "演示省道", "Demo provincial road"),
    "secondary": RoadClass(300, 0.09, 15, np.inf, 0.18, "DEMO-C{:04d}", "演示县道", "Demo county road"),
    "urban": RoadClass(0, 1.0, np.inf, np.inf, 0.0, "", "演示城市道路", "Demo urban street"),
}
RANK = {c: i for i, c in enumerate(CLASSES)}

# Expressway corridors through real places (names as in Inputs.settlements; "airport" = 长水机场).
CORRIDORS = (
    ("昆明", "安宁市驻地", "草铺", "禄脿"),
    ("昆明", "呈贡区驻地", "化城", "江城"),
    ("昆明", "小板桥", "七甸", "宜良县驻地", "石林彝族自治县驻地"),
    ("昆明", "airport", "嵩明县驻地", "寻甸回族彝族自治县驻地", "东川区驻地"),
    ("昆明", "富民县驻地", "禄劝彝族苗族自治县驻地"),
    ("安宁市驻地", "海口", "晋宁区驻地", "上蒜", "晋城", "呈贡区驻地"),
)


@dataclass
class Edge:
    line: shapely.LineString  # metric
    road_class: str
    ref: str | None
    name: str


def _meander(p, q, frac: float, rng: np.random.Generator, seg: float = 1500.0) -> np.ndarray:
    """A winding polyline from p to q by recursive midpoint displacement (endpoints exact)."""
    pts = [np.asarray(p, float), np.asarray(q, float)]
    amp = frac
    while np.hypot(*(pts[1] - pts[0])) > seg and frac > 0:
        out = [pts[0]]
        for a, b in zip(pts[:-1], pts[1:]):
            d = b - a
            normal = np.array([-d[1], d[0]])
            out += [(a + b) / 2 + normal * rng.normal(0, amp), b]
        pts, amp = out, amp / 1.6
    return np.array(pts)


def _detour(line: shapely.LineString, obstacle) -> shapely.LineString:
    """Route ``line`` around a polygonal ``obstacle`` along its boundary (the shorter way)."""
    for poly in getattr(obstacle, "geoms", [obstacle]):
        if not line.intersects(poly):
            continue
        along = shapely.line_locate_point(line, shapely.points(shapely.get_coordinates(line.intersection(poly))))
        d_in, d_out = along.min(), along.max()
        ring = poly.exterior
        a, b = ring.project(line.interpolate(d_in)), ring.project(line.interpolate(d_out))
        lo, hi = min(a, b), max(a, b)
        inner = substring(ring, lo, hi)
        rest = [g for g in (substring(ring, hi, ring.length), substring(ring, 0, lo)) if g.geom_type == "LineString"]
        outer = shapely.line_merge(shapely.MultiLineString(rest))
        arc = np.asarray((inner if inner.length <= outer.length else outer).coords)
        if np.hypot(*(arc[0] - np.asarray(line.interpolate(d_in).coords[0]))) > 1e-6:
            arc = arc[::-1]
        before = np.asarray(substring(line, 0, d_in).coords)
        after = np.asarray(substring(line, d_out, line.length).coords)
        line = shapely.LineString(np.vstack([before, arc, after]))
    return line


def _edges(inputs: Inputs, pop: Surface, rng: np.random.Generator, scale: int, gates) -> list[Edge]:
    """Trunk network between real places: expressway corridors, national roads between the seats
    (Delaunay), provincial roads (minimum spanning tree of all places), county roads (2nd nearest
    neighbour), the urban grid and ring road of central Kunming, spurs to stations and to the
    ``gates`` ((label, (x, y)) pairs, e.g. park entrances)."""
    places = inputs.settlements
    nodes = {r.name: (r.geometry.x, r.geometry.y) for r in places.itertuples()}
    nodes["airport"] = (inputs.airport.x, inputs.airport.y)
    names = list(nodes)
    city = np.array(nodes["昆明"])
    if scale > 1:  # villages where people live (denser network for the benchmarks)
        extra = pop.sample_cells(rng, 40 * (scale - 1))
        for i, (x, y) in enumerate(extra):
            nodes[f"村{i:05d}"] = (x, y)
        names = list(nodes)
    xy = np.array([nodes[n] for n in names])
    obstacle = inputs.lake.buffer(400)
    edges: list[Edge] = []
    used: set[tuple[str, str]] = set()

    def add(a: str, b: str, road_class: str, ref: str | None, name: str) -> None:
        key = tuple(sorted((a, b)))
        if a == b or key in used:
            return
        used.add(key)
        c = CLASSES[road_class]
        coords = _meander(nodes[a], nodes[b], c.meander, rng)
        line = _detour(shapely.LineString(coords), obstacle)
        edges.append(Edge(line, road_class, ref, name))

    motorway = CLASSES["motorway"]
    for k, corridor in enumerate(CORRIDORS, 1):
        stops = [s for s in corridor if s in nodes]
        label = f"{motorway.zh} E{k:02d} {stops[0].removesuffix('驻地')}—{stops[-1].removesuffix('驻地')}"
        for a, b in zip(stops[:-1], stops[1:]):
            add(a, b, "motorway", motorway.ref.format(k), f"{label} / {motorway.en} E{k:02d}")

    hubs = [n for n in names if n.endswith("驻地") and np.hypot(*(np.array(nodes[n]) - city)) > 6000]
    hubs += ["昆明", "airport"]
    hub_xy = np.array([nodes[n] for n in hubs])
    trunk, k = CLASSES["trunk"], 0
    for a, b in sorted({tuple(sorted(e)) for s in Delaunay(hub_xy).simplices for e in
                        ((s[0], s[1]), (s[1], s[2]), (s[0], s[2]))}):
        if np.hypot(*(hub_xy[a] - hub_xy[b])) < 70000:
            k += 1
            add(hubs[a], hubs[b], "trunk", trunk.ref.format(k),
                f"{trunk.zh} N{k:02d} / {trunk.en} N{k:02d}")

    dist = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1)) if len(xy) < 3000 else None
    tree = cKDTree(xy)
    mst = minimum_spanning_tree(_knn_graph(tree, xy, 8) if dist is None else dist).tocoo()
    primary, secondary = CLASSES["primary"], CLASSES["secondary"]
    for n, (a, b) in enumerate(zip(mst.row, mst.col), 1):
        if names[a].startswith("村") or names[b].startswith("村"):  # village roads
            add(names[a], names[b], "secondary", secondary.ref.format(n),
                f"{secondary.zh} C{n:04d} / {secondary.en} C{n:04d}")
        else:
            add(names[a], names[b], "primary", primary.ref.format(n), f"{primary.zh} P{n:03d} / {primary.en} P{n:03d}")
    _, nearest = tree.query(xy, k=3)
    for i, row in enumerate(nearest):
        j = row[2]
        if np.hypot(*(xy[i] - xy[j])) < 20000:
            n = len(edges) + 1
            add(names[i], names[j], "secondary", secondary.ref.format(n),
                f"{secondary.zh} C{n:04d} / {secondary.en} C{n:04d}")

    # urban grid and ring road of central Kunming, kept out of Dianchi
    spacing = max(800.0 / np.sqrt(scale), 150.0)
    half = 7000.0
    offsets = np.arange(-half, half + 1, spacing)
    lines = [shapely.LineString([(city[0] + o, city[1] - half), (city[0] + o, city[1] + half)]) for o in offsets]
    lines += [shapely.LineString([(city[0] - half, city[1] + o), (city[0] + half, city[1] + o)]) for o in offsets]
    lines.append(shapely.Point(city).buffer(5500, quad_segs=32).exterior)
    water = inputs.lake.buffer(150)
    for i, line in enumerate(lines):
        kept = line.difference(water)
        for part in getattr(kept, "geoms", [kept]):
            if part.length > 1:
                ring = i == len(lines) - 1
                edges.append(Edge(part, "urban", None, "演示环路 / Demo ring road" if ring else
                                  f"{CLASSES['urban'].zh} / {CLASSES['urban'].en}"))
    # spurs to the named railway stations
    stations = inputs.stations[(inputs.stations.station == "train") & inputs.stations.name.notna()]
    for st in stations.itertuples():
        _, j = tree.query([st.geometry.x, st.geometry.y])
        key = f"站:{st.name}"
        nodes[key] = (st.geometry.x, st.geometry.y)
        add(key, names[j], "secondary", None, f"演示站前路（{st.name}站） / Demo station road")
    for label, point in gates:
        _, j = tree.query(point)
        nodes[label] = tuple(point)
        add(label, names[j], "secondary", None, f"演示园区道路（{label}） / Demo access road")
    return edges


def _knn_graph(tree: cKDTree, xy: np.ndarray, k: int):
    d, j = tree.query(xy, k=k + 1)
    rows = np.repeat(np.arange(len(xy)), k)
    return coo_matrix((d[:, 1:].ravel() + 1e-9, (rows, j[:, 1:].ravel())), shape=(len(xy), len(xy))).tocsr()


def structure_runs(line: shapely.LineString, dem: Surface, c: RoadClass, step: float = 45.0) -> list[tuple]:
    """Where a road of class ``c`` needs bridges and tunnels: (start m, end m, 'bridge'|'tunnel').

    The grade line is the terrain profile smoothed over ``c.window`` and limited to ``c.grade``
    (forward and backward passes); fill above ``c.bridge`` m is a bridge, cut deeper than ``c.tunnel``
    m a tunnel. Runs of one kind less than 150 m apart are merged; bridges under 20 m and tunnels
    under 100 m are dropped, and so are bridges over 2.5 km and tunnels over 8 km (a real road would
    wind down such a slope; the demo does not model switchbacks).
    """
    if c.window <= 0 or line.length < 4 * step:
        return []
    s = np.linspace(0, line.length, int(line.length // step) + 1)
    pts = shapely.line_interpolate_point(line, s)
    z = dem.sample(shapely.get_x(pts), shapely.get_y(pts)).astype(float)
    dx = s[1] - s[0]
    n = max(int(c.window / dx) // 2 * 2 + 1, 3)
    padded = np.pad(z, n // 2, mode="edge")
    g = np.convolve(padded, np.ones(n) / n, mode="valid")
    g[0], g[-1] = z[0], z[-1]
    lim = c.grade * dx
    for i in range(1, len(g)):
        g[i] = min(max(g[i], g[i - 1] - lim), g[i - 1] + lim)
    for i in range(len(g) - 2, -1, -1):
        g[i] = min(max(g[i], g[i + 1] - lim), g[i + 1] + lim)
    runs = []
    for kind, mask, shortest, longest in (("bridge", g - z > c.bridge, 20.0, 2500.0),
                                          ("tunnel", z - g > c.tunnel, 100.0, 8000.0)):
        edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(int), 0]))
        spans = [[max(s[a] - dx / 2, 0), min(s[b - 1] + dx / 2, line.length)] for a, b in zip(edges[::2], edges[1::2])]
        merged = []
        for span in spans:
            if merged and span[0] - merged[-1][1] < 150:
                merged[-1][1] = span[1]
            else:
                merged.append(span)
        runs += [(a, b, kind) for a, b in merged if shortest <= b - a <= longest]
    runs.sort()
    out = []
    for a, b, kind in runs:  # a tunnel and a bridge never overlap; trim if smoothing made them touch
        if out and a < out[-1][1]:
            a = out[-1][1]
        if b - a > 1:
            out.append((a, b, kind))
    return out


def split_line(line: shapely.LineString, runs: list[tuple]) -> list[tuple[shapely.LineString, str | None]]:
    """Cut ``line`` at the run ends; pieces share their cut points exactly."""
    coords = np.asarray(line.coords)
    cum = np.r_[0, np.cumsum(np.hypot(*np.diff(coords, axis=0).T))]
    cuts = sorted({0.0, cum[-1], *[d for a, b, _ in runs for d in (a, b)]})
    points = {d: np.asarray(line.interpolate(d).coords[0]) for d in cuts}
    points[0.0], points[cum[-1]] = coords[0], coords[-1]
    kinds = {a: kind for a, b, kind in runs}
    pieces = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        if b - a < 1e-6:
            continue
        inner = coords[(cum > a) & (cum < b)]
        pieces.append((shapely.LineString(np.vstack([points[a], inner, points[b]])), kinds.get(a)))
    return pieces


# ADR tunnel category (ADR 1.9.5.2.2, A–E) assumed for the demo, longer = stricter: no national rule
# assigning categories to Chinese tunnels was found.
ADR = {"tunnel_xl": "E", "tunnel_l": "D", "tunnel_m": "C", "tunnel_s": "B"}
# Structures the demo lists in restricted_structures: bridges from 大桥 up, every tunnel (the shortest kept is 100 m).
LISTED_STRUCTURES = frozenset({"bridge_xl", "bridge_l", "tunnel_xl", "tunnel_l", "tunnel_m", "tunnel_s"})


def build_roads(inputs: Inputs, dem: Surface, pop: Surface, seed: int, scale: int = 1, gates=(),
                log=print) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """Roads (noded, one connected component) and restricted structures, metric CRS.

    Bridges (layer 1) and tunnels (layer -1) are separate segments joined to the rest only at
    their ends; at-grade roads are noded where they cross (expressways only among themselves).
    """
    rng = np.random.default_rng([seed, 2])
    edges = _edges(inputs, pop, rng, scale, gates)
    log(f"demo: {len(edges)} road links; profiling bridges and tunnels")
    pieces, structures = [], []
    counters: dict[str, int] = {}
    for e in edges:
        c = CLASSES[e.road_class]
        for geom, kind in split_line(e.line, structure_runs(e.line, dem, c)):
            pieces.append({"geometry": geom, "road_class": e.road_class, "ref": e.ref, "name": e.name,
                           "kind": kind})
            if kind and e.road_class in ("motorway", "trunk", "primary"):
                cls = structure_class(kind, geom.length)
                if cls in LISTED_STRUCTURES:
                    key = e.ref or e.road_class
                    counters[key] = counters.get(key, 0) + 1
                    zh = STRUCTURE_CLASSES[cls].zh
                    en = "bridge" if kind == "bridge" else "tunnel"
                    structures.append({
                        "name": f"演示{zh} {key}-{counters[key]:02d} / Demo {en} {key}-{counters[key]:02d}",
                        "kind": kind, "structure_class": cls, "length_m": round(geom.length, 1),
                        "adr_category": ADR.get(cls), "road_ref": e.ref, "geometry": geom})
    frame = gpd.GeoDataFrame(pieces, geometry="geometry", crs=METRIC_EPSG)
    roads = _node(frame)
    # snap to 1 mm: near-coincident nodes merge and the slivers between them vanish
    roads["geometry"] = shapely.set_precision(roads.geometry.values, 0.001)
    roads = _connect(roads[~roads.geometry.is_empty & (roads.length > 0.01)].reset_index(drop=True))
    c = roads["road_class"].map(ROAD_CLASS_SPEEDS)
    roads["speed_kmh"] = np.where(roads["tunnel"], np.minimum(c, 80), c).astype(float)
    roads.loc[roads["name"].str.startswith("演示环路"), "speed_kmh"] = 60.0
    roads["oneway"] = False
    urban = np.flatnonzero((roads["road_class"] == "urban").to_numpy())
    roads.iloc[urban[rng.random(len(urban)) < 0.03], roads.columns.get_loc("oneway")] = True
    roads["length_m"] = roads.length.round(1)
    roads["synthetic"] = True
    roads["source"] = SOURCE.format(seed=seed)
    st = gpd.GeoDataFrame(structures, geometry="geometry", crs=METRIC_EPSG)
    st["synthetic"] = True
    st["source"] = SOURCE.format(seed=seed) + "; class by length (JTG D60-2015, JTG 3370.1-2018), ADR category assumed"
    return roads.reset_index(drop=True), st


def _node(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Node the at-grade pieces (expressways among themselves) and give each noded segment the
    attributes of the highest-class piece it lies on."""
    level = frame[frame["kind"].isna()]
    groups = [level[level.road_class == "motorway"], level[level.road_class != "motorway"]]
    noded = [g for grp in groups for g in shapely.get_parts(shapely.union_all(grp.geometry.values))]
    noded = gpd.GeoSeries(noded, crs=frame.crs)
    mid = noded.interpolate(0.5, normalized=True)
    src, hit = level.sindex.query(mid, predicate="dwithin", distance=0.01)
    pairs = pd.DataFrame({"seg": src, "piece": level.index.values[hit]})
    pairs["rank"] = level.loc[pairs["piece"], "road_class"].map(RANK).values
    best = pairs.sort_values(["seg", "rank"]).drop_duplicates("seg")
    at_grade = level.loc[best["piece"]].drop(columns="geometry").reset_index(drop=True)
    at_grade = gpd.GeoDataFrame(at_grade, geometry=noded.values[best["seg"].values], crs=frame.crs)
    structures = frame[frame["kind"].notna()]
    out = pd.concat([at_grade, structures], ignore_index=True)
    out["bridge"] = out["kind"] == "bridge"
    out["tunnel"] = out["kind"] == "tunnel"
    out["layer"] = np.select([out["bridge"], out["tunnel"]], [1, -1], 0)
    return gpd.GeoDataFrame(out.drop(columns="kind"), geometry="geometry", crs=frame.crs)


def _connect(roads: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Join every stray component to the largest by a county road between their nearest end points."""
    while True:
        count, labels = components(roads.geometry.values)
        if count == 1:
            return roads
        main = np.bincount(labels).argmax()
        ends = np.vstack([shapely.get_coordinates(shapely.get_point(roads.geometry.values, i)) for i in (0, -1)])
        lab = np.r_[labels, labels]
        tree = cKDTree(ends[lab == main])
        other = ends[lab != main]
        d, j = tree.query(other)
        i = d.argmin()
        link = shapely.LineString([other[i], ends[lab == main][j[i]]])
        row = {"geometry": link, "road_class": "secondary", "ref": None, "bridge": False, "tunnel": False,
               "layer": 0, "name": f"{CLASSES['secondary'].zh}（连接线） / Demo link road"}
        roads = pd.concat([roads, gpd.GeoDataFrame([row], geometry="geometry", crs=roads.crs)], ignore_index=True)


# Accident mix (kind, share) and per-km weights by road class (urban streets see the most crashes).
ACCIDENT_KINDS = (("collision", 0.62), ("pedestrian", 0.15), ("rollover", 0.08), ("fire", 0.02),
                  ("leak", 0.01), ("other", 0.12))
CRASH_RATE = {"motorway": 1.0, "trunk": 1.6, "primary": 1.2, "secondary": 0.5, "urban": 3.0}


def build_accidents(roads: gpd.GeoDataFrame, seed: int, n: int, hot_spots=None,
                    n_hot: int = 12) -> gpd.GeoDataFrame:
    """``n`` accidents 2021-2025 on the road lines: 80 % spread by length x class rate, 20 % in
    ``n_hot`` clusters (half at ``hot_spots`` points snapped to the nearest road, e.g. the real
    waterlogging hot-spots, the rest at random trunk-road spots), within ~300 m along the roads."""
    rng = np.random.default_rng([seed, 3])
    geoms = roads.geometry.values
    lengths = shapely.length(geoms)
    w = lengths * roads["road_class"].map(CRASH_RATE).to_numpy()
    n_cluster = int(n * 0.2)
    seg = rng.choice(len(roads), size=n - n_cluster, p=w / w.sum())
    pos = rng.uniform(0, lengths[seg])

    centres = []
    if hot_spots is not None and len(hot_spots):
        picks = rng.choice(len(hot_spots), size=min(n_hot // 2, len(hot_spots)), replace=False)
        centres += [hot_spots[i] for i in picks]
    trunk = np.flatnonzero(roads["road_class"].isin(["trunk", "primary"]).to_numpy() & (lengths > 500))
    for i in rng.choice(trunk, size=n_hot - len(centres), replace=False):
        centres.append(geoms[i].interpolate(rng.uniform(0, lengths[i])))
    tree = shapely.STRtree(geoms)
    c_seg, c_pos = [], []
    for k, centre in enumerate(centres):
        m = n_cluster // len(centres) + (1 if k < n_cluster % len(centres) else 0)
        near = tree.query(centre, predicate="dwithin", distance=400)
        if len(near) == 0:
            near = np.array([tree.nearest(centre)])
        pick = rng.choice(near, size=m)
        along = shapely.line_locate_point(geoms[pick], np.full(m, centre))
        c_seg.append(pick)
        c_pos.append(np.clip(along + rng.normal(0, 120, m), 0, lengths[pick]))
    seg = np.r_[seg, np.concatenate(c_seg)]
    pos = np.r_[pos, np.concatenate(c_pos)]
    points = shapely.line_interpolate_point(geoms[seg], pos)

    start, span = pd.Timestamp("2021-01-01", tz="Asia/Shanghai"), 5 * 365 + 1
    day = rng.integers(0, span, n)
    hour = rng.choice(24, size=n, p=_hour_profile())
    when = start + pd.to_timedelta(day, "D") + pd.to_timedelta(hour * 3600 + rng.integers(0, 3600, n), "s")
    kinds = [k for k, _ in ACCIDENT_KINDS]
    kind = rng.choice(kinds, size=n, p=[p for _, p in ACCIDENT_KINDS])
    deaths = rng.choice([0, 1, 2, 3], size=n, p=[0.9, 0.075, 0.018, 0.007])
    injuries = np.minimum(rng.poisson(1.1, n), 12)
    vehicles = np.where(kind == "pedestrian", 1, 1 + rng.poisson(0.8, n))
    hazmat = (kind == "leak") | (rng.random(n) < 0.01)
    order = np.argsort(when.asi8, kind="stable")
    frame = gpd.GeoDataFrame({
        "occurred_at": when[order], "kind": kind[order], "deaths": deaths[order], "injuries": injuries[order],
        "vehicles": vehicles[order], "hazmat": hazmat[order],
    }, geometry=points[order], crs=roads.crs)
    frame["name"] = [f"演示事故 {i:07d} / Demo accident" for i in range(1, n + 1)]
    frame["synthetic"] = True
    frame["source"] = f"synthetic (layers.demo, seed {seed}): placed on the demo roads, with hot-spot clusters"
    return frame


def _hour_profile() -> np.ndarray:
    """Share of crashes by hour of day: morning and evening peaks."""
    h = np.arange(24)
    p = 0.3 + np.exp(-((h - 8.5) ** 2) / 4) + 1.2 * np.exp(-((h - 18) ** 2) / 5) + 0.4 * np.exp(-((h - 13) ** 2) / 6)
    return p / p.sum()


# Demo cargoes (UN number, ADR/GB 6944 class, name): the substances Kunming's parks hold most.
CARGOES = (("1017", "2.3", "氯 Chlorine"), ("1005", "2.3", "液氨 Ammonia, anhydrous"),
           ("1203", "3", "汽油 Gasoline"), ("1075", "2.1", "液化石油气 LPG"), ("1830", "8", "硫酸 Sulphuric acid"),
           ("1202", "3", "柴油 Diesel"), ("1789", "8", "盐酸 Hydrochloric acid"), ("1230", "3", "甲醇 Methanol"))


def build_hazmat_routes(roads: gpd.GeoDataFrame, gates, places: gpd.GeoDataFrame, seed: int,
                        n: int) -> gpd.GeoDataFrame:
    """``n`` regular hazardous-cargo runs, each from a park entrance to a real place at least 15 km
    away along the fastest way on ``roads`` (metric; one-way ignored: the line is the route's course).

    The paths come from one scipy Dijkstra per park over the segment graph (time = length / speed).
    """
    rng = np.random.default_rng([seed, 7])
    geoms = roads.geometry.values
    start = shapely.get_coordinates(shapely.get_point(geoms, 0))
    end = shapely.get_coordinates(shapely.get_point(geoms, -1))
    keys, inv = np.unique(np.vstack([start, end]), axis=0, return_inverse=True)
    a, b = inv.ravel()[:len(geoms)], inv.ravel()[len(geoms):]
    seconds = roads.length.to_numpy() / (roads["speed_kmh"].to_numpy() / 3.6)
    # both directions, each (u, v) pair once with its fastest segment
    edges = pd.DataFrame({"u": np.r_[a, b], "v": np.r_[b, a], "t": np.r_[seconds, seconds],
                          "seg": np.r_[np.arange(len(geoms)), np.arange(len(geoms))]})
    edges = edges.sort_values("t").drop_duplicates(["u", "v"])
    graph = coo_matrix((edges["t"], (edges["u"], edges["v"])), shape=(len(keys), len(keys))).tocsr()
    seg_of = dict(zip(zip(edges["u"], edges["v"]), edges["seg"]))
    tree = cKDTree(keys)
    gate_nodes = tree.query(np.array([xy for _, xy in gates]))[1]
    place_nodes = tree.query(shapely.get_coordinates(places.geometry.values))[1]
    _, pred = dijkstra(graph, indices=gate_nodes, return_predecessors=True)
    rows = []
    for i in range(n):
        g = i % len(gates)
        far = np.flatnonzero((np.hypot(*(keys[place_nodes] - keys[gate_nodes[g]]).T) > 15000)
                             & (pred[g, place_nodes] >= 0))
        if not len(far):
            continue
        p = far[rng.integers(len(far))]
        node, coords = place_nodes[p], []
        while node != gate_nodes[g]:  # walk back from the place, then reverse into gate -> place
            prev = pred[g, node]
            seg = geoms[seg_of[(prev, node)]]
            xy = shapely.get_coordinates(seg)
            xy = xy if np.allclose(xy[0], keys[prev]) else xy[::-1]
            coords = [xy] + coords
            node = prev
        un, cls, cargo = CARGOES[rng.integers(len(CARGOES))]
        hour, minute = int(rng.integers(6, 20)), int(rng.choice([0, 15, 30, 45]))
        park, place = gates[g][0], places.iloc[p]["name"]
        rows.append({"name": f"演示危化品运输路线 {i + 1:02d}（{park}→{place}） / Demo hazmat route {i + 1:02d}",
                     "carrier": f"演示危货运输公司 {g + 1:02d} / Demo carrier {g + 1:02d}",
                     "cargo_un": un, "cargo_class": cls, "quantity_t": float(rng.integers(8, 33)),
                     "schedule": f"每日 {hour:02d}:{minute:02d} 发车（{cargo}） / daily {hour:02d}:{minute:02d}",
                     "geometry": shapely.LineString(np.vstack([c[:-1] for c in coords] + [coords[-1][-1:]]))})
    out = gpd.GeoDataFrame(rows, geometry="geometry", crs=roads.crs)
    out["synthetic"] = True
    out["source"] = SOURCE.format(seed=seed) + "; runs and cargoes invented, courses are fastest paths on demo roads"
    return out
