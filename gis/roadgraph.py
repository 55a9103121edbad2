"""The routable road graph held in process memory for route searches, reloaded when it is rebuilt.

``riskmap analyze roads`` (:func:`gis.roadnet.build_graph`) builds the graph in PostGIS/pgRouting
(noding, costs, links to structures and zones, the connectivity report) and stores it in
``road_edges``/``road_nodes``/``road_edge_links``. Searches do not query those tables each time (a
``pgr_dijkstra`` call reads its edges from the table on every call, which costs more than the whole
search on a city network, docs/road-safety.md): :func:`get` loads them once per process into compact
arrays — the directed arcs in CSR form, by tail and by head (two-way edges give two arcs, one-way
roads one), the edges' ids, road ids, classes, lengths, times and geometries, the links as edge
index arrays, a KD-tree of the nodes — and the searches run on those in compiled code.

Freshness: :func:`bump_version` (called by ``build_graph`` and ``link_features`` in their transaction)
bumps the row ``road_graph`` of ``layer_versions``; every request reads that row (one indexed
lookup, or the API's change feed holds it, api/changes.py) and the graph is reloaded when the row's
version or the transaction that wrote it (``xmin``) differs from the loaded one, so a rebuilt graph is never served stale — neither after another
process commits a rebuild, nor inside the rebuilding transaction itself, nor after a rolled-back
rebuild whose version number is reused.

Point-to-point searches are A* compiled with numba (:func:`_astar`) with landmark lower bounds (ALT):
travel times to and from 8 landmarks on the rim of the network are computed once per graph (16 full
Dijkstras, ~10 ms at the x10 demo), and the triangle inequality over them bounds the time left to the
destination, so a search expands the nodes towards it rather than a disc around the origin (at x10,
0.13 ms against 0.19 ms for the bidirectional Dijkstra it replaced). Banned edges are a mask; they only
lengthen paths, so the bounds stay valid. The cost returned is the sum of the path's edge costs in
travel order (as ``pgr_dijkstra``'s ``agg_cost``). Times from many nodes to one (emergency resources)
are one Dijkstra from that node over the incoming arcs (the reversed graph), stopped once all of them
are settled (:func:`_times`). Both run without the GIL.
"""

from __future__ import annotations

import heapq
import threading
from dataclasses import dataclass

import numpy as np
import shapely
from numba import njit
from pyproj import Geod
from scipy.spatial import cKDTree
from sqlalchemy import Connection, text

from gis.errors import AnalysisError
from layers.db import db_key

GEOD = Geod(ellps="WGS84")
LANDMARKS = 8
_VERSION_SQL = text("SELECT version, xmin::text AS x FROM layer_versions WHERE layer = 'road_graph'")


def bump_version(conn: Connection) -> None:
    """Mark the graph tables as changed (in the caller's transaction): every process reloads them."""
    conn.execute(text("""
        INSERT INTO layer_versions (layer, version, updated_at) VALUES ('road_graph', 1, now())
        ON CONFLICT (layer) DO UPDATE SET version = layer_versions.version + 1, updated_at = now()"""))


@dataclass
class Path:
    """A search result: node indices and edge indices in travel order, and the total cost."""

    nodes: np.ndarray
    edges: np.ndarray
    forward: np.ndarray  # per edge: travelled source -> target (else reversed)
    costs: np.ndarray    # per edge: its time in that direction
    cost_s: float


class RoadGraph:
    """The graph tables as arrays (see the module docstring). Read-only once built: shared by threads."""

    def __init__(self, key, nodes, edges, links, inputs=None) -> None:
        self.key = key
        # layer -> the layer_versions row (version, xmin) of the structures and zones the links were made
        # from (gis.roadnet.link_features); links of a layer changed since are stale
        self.inputs: dict[str, tuple] = dict(inputs or {})
        self.node_ids = np.asarray(nodes["id"], dtype=np.int64)  # sorted
        self.node_xy = np.column_stack([nodes["x"], nodes["y"]]).astype(float).reshape(-1, 2)
        self.node_component = np.asarray(nodes["component"], dtype=np.int64)
        n = self.n = len(self.node_ids)
        self.edge_ids = np.asarray(edges["id"], dtype=np.int64)  # sorted
        self.edge_road = np.asarray(edges["road_id"], dtype=np.int64)
        self.edge_class = np.asarray(edges["road_class"], dtype=object)
        self.edge_length = np.asarray(edges["length_m"], dtype=float)
        self.edge_cost = np.asarray(edges["cost_s"], dtype=float)
        self.edge_rcost = np.asarray(edges["reverse_cost_s"], dtype=float)
        self.edge_src = self.node_index(np.asarray(edges["source"], dtype=np.int64))
        self.edge_tgt = self.node_index(np.asarray(edges["target"], dtype=np.int64))
        geoms = shapely.from_wkb(list(edges["wkb"])) if len(self.edge_ids) else np.array([])
        coords, which = shapely.get_coordinates(geoms, return_index=True)
        self.coords, self._coord_edge = coords, which
        self.coord_start = np.searchsorted(which, np.arange(len(self.edge_ids) + 1))
        self._geoms = self._tree = self._landmarks = self._metric = None
        self._closed: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}  # banned edges -> (edge, arc) masks
        # (layer, feature id) -> indices of the edges it covers
        self.links: dict[tuple[str, int], np.ndarray] = {}
        # and by edge: the links of edge i are link_key/lo/hi[link_ptr[i]:link_ptr[i + 1]], each (layer,
        # feature id) and the stretch of the edge it covers (fractions, digitised direction)
        link_edge = self.edge_index(np.asarray(links["edge_id"], dtype=np.int64))
        if len(link_edge):
            lk = np.column_stack([link_edge, np.asarray(links["feature_id"], dtype=np.int64)])
            layers = np.asarray(links["layer"], dtype=object)
            for layer in set(layers):
                sel = lk[layers == layer]
                sel = sel[np.lexsort((sel[:, 0], sel[:, 1]))]
                cut = np.flatnonzero(np.diff(sel[:, 1])) + 1
                for part in np.split(sel, cut):
                    self.links[(layer, int(part[0, 1]))] = part[:, 0]
        by_edge = np.argsort(link_edge, kind="stable")
        self.link_ptr = np.searchsorted(link_edge[by_edge], np.arange(len(self.edge_ids) + 1))
        self.link_key = [(links["layer"][i], int(links["feature_id"][i])) for i in by_edge]
        self.link_lo = np.asarray(links["lo"], dtype=float)[by_edge]
        self.link_hi = np.asarray(links["hi"], dtype=float)[by_edge]
        # directed arcs sorted by (tail, head, cost): arc k = edge arc_edge[k], forward or reversed
        m = len(self.edge_ids)
        two = self.edge_rcost >= 0
        tail = np.concatenate([self.edge_src, self.edge_tgt[two]])
        head = np.concatenate([self.edge_tgt, self.edge_src[two]])
        cost = np.concatenate([self.edge_cost, self.edge_rcost[two]])
        arc_edge = np.concatenate([np.arange(m), np.flatnonzero(two)])
        order = np.lexsort((cost, head, tail))
        self.arc_tail, self.arc_head, self.arc_cost = tail[order], head[order], cost[order]
        self.arc_edge = arc_edge[order]
        self.arc_forward = order < m
        self.indptr = np.searchsorted(self.arc_tail, np.arange(n + 1))
        # the same arcs by head (incoming arcs of each node): backward search, searches to one node
        self.rarc = np.lexsort((self.arc_tail, self.arc_head))
        self.rindptr = np.searchsorted(self.arc_head[self.rarc], np.arange(n + 1))
        self.kdtree = cKDTree(self.node_xy) if n else None

    # ------------------------------------------------------------------ lookups

    def node_index(self, ids) -> np.ndarray:
        """Indices of node ids (all must exist)."""
        return np.searchsorted(self.node_ids, ids)

    def edge_index(self, ids) -> np.ndarray:
        """Indices of the edge ids that exist (unknown ids are left out)."""
        ids = np.asarray(ids, dtype=np.int64)
        idx = np.searchsorted(self.edge_ids, ids)
        ok = idx < len(self.edge_ids)
        ok[ok] = self.edge_ids[idx[ok]] == ids[ok]
        return idx[ok]

    def has_node(self, node_id: int) -> bool:
        i = int(np.searchsorted(self.node_ids, node_id))
        return i < self.n and self.node_ids[i] == node_id

    def nearest(self, lon, lat) -> tuple[np.ndarray, np.ndarray]:
        """Index of the node nearest each point (planar lon/lat distance, as PostGIS ``<->``) and the
        geodesic distance to it in metres (WGS84, as ``ST_Distance(geography)``)."""
        if not self.n:
            raise AnalysisError("the road graph is empty: import roads and run `riskmap analyze roads`")
        lon, lat = np.atleast_1d(np.asarray(lon, dtype=float)), np.atleast_1d(np.asarray(lat, dtype=float))
        _, idx = self.kdtree.query(np.column_stack([lon, lat]))
        _, _, dist = GEOD.inv(lon, lat, self.node_xy[idx, 0], self.node_xy[idx, 1])
        return idx, np.asarray(dist, dtype=float)

    def edges_of(self, features) -> np.ndarray:
        """Indices of the edges covered by ``(layer, feature id)`` pairs."""
        parts = [self.links[f] for f in features if f in self.links]
        return np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)

    # ------------------------------------------------------------------ searches

    def shortest_path(self, o: int, t: int, banned: np.ndarray | None = None) -> Path | None:
        """Fastest path from node index ``o`` to ``t`` avoiding the edge indices ``banned``, or None."""
        if o == t:
            return Path(np.array([o]), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool), np.zeros(0), 0.0)
        to_lm, from_lm = self.landmarks()
        arcs = _astar(self.indptr, self.arc_head, self.arc_cost, self.arc_tail, self.closed(banned)[1],
                      to_lm, from_lm, o, t)
        if arcs is None:
            return None
        nodes = np.concatenate([[o], self.arc_head[arcs]])
        costs = self.arc_cost[arcs]
        cost = float(np.cumsum(costs)[-1])  # summed in travel order, as pgr_dijkstra's agg_cost
        return Path(nodes, self.arc_edge[arcs], self.arc_forward[arcs], costs, cost)

    def closed(self, banned: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the ``banned`` edge indices over the edges and over the arcs, kept for the sets of bans
        met last (the bans of a cargo and time repeat from plan to plan)."""
        banned = np.zeros(0, dtype=np.int64) if banned is None else np.asarray(banned, dtype=np.int64)
        key = banned.tobytes()
        masks = self._closed.get(key)
        if masks is None:
            edges = np.zeros(len(self.edge_ids), dtype=np.bool_)
            edges[banned] = True
            arcs = edges[self.arc_edge]
            edges.flags.writeable = arcs.flags.writeable = False  # (shared by every search with these bans)
            if len(self._closed) >= 64:
                self._closed.clear()
            masks = self._closed[key] = (edges, arcs)
        return masks

    def landmarks(self) -> tuple[np.ndarray, np.ndarray]:
        """Travel times to and from a few landmarks (K x n arrays; inf where there is no path), made on
        first use: the lower bounds of the A* search (ALT: A*, landmarks, triangle inequality)."""
        if self._landmarks is None:
            lm = _pick_landmarks(self.node_xy, self.node_component, LANDMARKS)
            arcs, every = np.arange(len(self.arc_head)), np.ones(self.n, dtype=np.bool_)
            self._landmarks = (
                np.array([_times(self.rindptr, self.rarc, self.arc_tail, self.arc_cost, i, every) for i in lm]),
                np.array([_times(self.indptr, arcs, self.arc_head, self.arc_cost, i, every) for i in lm]))
        return self._landmarks

    def times_to(self, target: int, sources: np.ndarray) -> np.ndarray:
        """Fastest travel time from each node index of ``sources`` to node index ``target`` (inf: no path):
        one Dijkstra from ``target`` over the incoming arcs (the reversed graph), stopped once every source
        is settled."""
        wanted = np.zeros(self.n, dtype=np.bool_)
        wanted[np.asarray(sources, dtype=np.int64)] = True
        return _times(self.rindptr, self.rarc, self.arc_tail, self.arc_cost, target, wanted)[sources]

    # ------------------------------------------------------------------ geometry

    def edge_geoms(self) -> np.ndarray:
        """The edges' LineStrings (WGS84), made on first use."""
        if self._geoms is None:
            self._geoms = (shapely.linestrings(self.coords, indices=self._coord_edge) if len(self.edge_ids)
                           else np.array([], dtype=object))
        return self._geoms

    def edge_tree(self) -> shapely.STRtree:
        """STRtree of the edges (WGS84), made on first use."""
        if self._tree is None:
            self._tree = shapely.STRtree(self.edge_geoms())
        return self._tree

    def metric_coords(self, project) -> np.ndarray:
        """The edges' coordinates projected by ``project`` ((n, 2) lon/lat -> (n, 2) metres), made on first
        use (the caller gives the same projection every time)."""
        if self._metric is None:
            self._metric = project(self.coords) if len(self.coords) else np.zeros((0, 2))
        return self._metric

    def path_vertices(self, path: Path) -> np.ndarray:
        """Positions in :attr:`coords` (and :meth:`metric_coords`) of the path's vertices: its edges
        oriented in travel order, each shared node once."""
        if not len(path.edges):
            return np.zeros(0, dtype=np.int64)
        first, n = self.coord_start[path.edges], np.diff(self.coord_start)[path.edges]
        k = np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)  # each coordinate's place in its edge
        idx = np.repeat(first, n) + np.where(np.repeat(path.forward, n), k, np.repeat(n - 1, n) - k)
        keep = k > 0  # an edge's first coordinate is the previous one's last ...
        keep[0] = True  # ... but for the first edge
        return idx[keep]


def _pick_landmarks(xy: np.ndarray, component: np.ndarray, k: int) -> np.ndarray:
    """Node indices of up to ``k`` landmarks: in each of ``k`` sectors around the centre of the largest
    connected part, its node farthest from the centre (landmarks on the rim bound best)."""
    if not len(xy):
        return np.zeros(0, dtype=np.int64)
    main = np.flatnonzero(component == np.bincount(component - component.min()).argmax() + component.min())
    d = xy[main] - xy[main].mean(axis=0)
    sector = ((np.arctan2(d[:, 1], d[:, 0]) + np.pi) / (2 * np.pi) * k).astype(np.int64) % k
    far = np.hypot(d[:, 0], d[:, 1])
    out = [main[np.flatnonzero(sector == c)[far[sector == c].argmax()]] for c in range(k) if (sector == c).any()]
    return np.array(out, dtype=np.int64)


@njit(cache=True, nogil=True)
def _bound(to_lm, from_lm, v, t):
    """Lower bound of the time from v to t by the triangle inequality over the landmarks L:
    d(v,t) >= d(v,L) - d(t,L) and d(v,t) >= d(L,t) - d(L,v). inf when v cannot reach t."""
    h = 0.0
    for i in range(to_lm.shape[0]):
        a, b = to_lm[i, v], to_lm[i, t]
        if b < np.inf:
            if a == np.inf:  # t reaches L and v does not: v cannot reach t either
                return np.inf
            h = max(h, a - b)
        c, e = from_lm[i, t], from_lm[i, v]
        if c < np.inf and e < np.inf:
            h = max(h, c - e)
    return h


@njit(cache=True, nogil=True)
def _astar(indptr, head, cost, tail, closed, to_lm, from_lm, s, t):
    """A* from ``s`` to ``t`` with the landmark bounds (:func:`_bound`). A node is expanded again if a
    shorter way to it turns up later, so the result is exact even where rounding makes the bounds
    slightly inconsistent. Returns the arcs of a shortest path, or None."""
    n = len(indptr) - 1
    g, h = np.full(n, np.inf), np.full(n, -1.0)
    pred = np.full(n, -1, np.int64)
    g[s] = 0.0
    h[s] = _bound(to_lm, from_lm, s, t)
    if h[s] == np.inf:
        return None
    heap = [(h[s], s)]
    while heap:
        f, u = heapq.heappop(heap)
        if f > g[u] + h[u]:  # an outdated entry
            continue
        if u == t:
            break
        for k in range(indptr[u], indptr[u + 1]):
            v = head[k]
            if closed[k] or g[u] + cost[k] >= g[v]:
                continue
            if h[v] < 0:
                h[v] = _bound(to_lm, from_lm, v, t)
            if h[v] == np.inf:
                continue
            g[v], pred[v] = g[u] + cost[k], k
            heapq.heappush(heap, (g[v] + h[v], v))
    if g[t] == np.inf:
        return None
    count, v = 0, t
    while v != s:
        count += 1
        v = tail[pred[v]]
    arcs = np.empty(count, np.int64)
    v = t
    for i in range(count - 1, -1, -1):
        arcs[i] = pred[v]
        v = tail[pred[v]]
    return arcs


@njit(cache=True, nogil=True)
def _times(indptr, order, end, cost, s, wanted):
    """Dijkstra from ``s``: arcs of node u are ``order[indptr[u]:indptr[u + 1]]`` leading to ``end[arc]``
    (outgoing arcs and heads: times from s; incoming arcs and tails: times to s). Stops once the
    ``wanted`` nodes are settled; the times are final for the settled nodes, inf for the others."""
    n = len(indptr) - 1
    dist, done = np.full(n, np.inf), np.zeros(n, np.bool_)
    left = 0
    for i in range(n):
        left += wanted[i]
    dist[s] = 0.0
    heap = [(0.0, s)]
    while heap and left > 0:
        d, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        left -= wanted[u]
        for j in range(indptr[u], indptr[u + 1]):
            k = order[j]
            v = end[k]
            if d + cost[k] < dist[v]:
                dist[v] = d + cost[k]
                heapq.heappush(heap, (dist[v], v))
    for i in range(n):
        if not done[i]:
            dist[i] = np.inf
    return dist


# per database, the graphs of the last two versions seen: while a transaction rebuilds the graph it sees its
# own version and every other connection still the committed one
_CACHE: dict[str, list[RoadGraph]] = {}
_LOCK = threading.Lock()


def _key(conn: Connection) -> tuple | None:
    row = conn.execute(_VERSION_SQL).first()
    return (row.version, row.x) if row else None


def _load(conn: Connection, key) -> RoadGraph:
    def columns(sql):
        res = conn.execute(text(sql))
        rows = res.all()
        return {k: [r[i] for r in rows] for i, k in enumerate(res.keys())}

    nodes = columns("SELECT id, component, ST_X(geom) AS x, ST_Y(geom) AS y FROM road_nodes ORDER BY id")
    edges = columns("SELECT id, road_id, source, target, cost_s, reverse_cost_s, length_m, road_class, "
                    "ST_AsBinary(geom) AS wkb FROM road_edges ORDER BY id")
    links = columns("SELECT edge_id, layer, feature_id, coalesce(lo, 0) AS lo, coalesce(hi, 1) AS hi "
                    "FROM road_edge_links")
    inputs = {r.layer: (r.version, r.x) for r in conn.execute(text(
        "SELECT layer, version, x FROM road_graph_inputs WHERE version IS NOT NULL"))}
    return RoadGraph(key, nodes, edges, links, inputs)


def warm_up() -> None:
    """Run the compiled searches once on a three-node graph, so that numba compiles them (seconds on a
    fresh install) or loads them from its cache before the first request needs them."""
    wkb = [shapely.to_wkb(shapely.linestrings([[0.0, 0.0], [0.001, 0.0]]))] * 2
    g = RoadGraph(None, {"id": [1, 2, 3], "component": [1, 1, 1], "x": [0.0, 0.001, 0.002], "y": [0.0] * 3},
                  {"id": [1, 2], "road_id": [1, 1], "source": [1, 2], "target": [2, 3], "cost_s": [9.0, 9.0],
                   "reverse_cost_s": [9.0, -1.0], "length_m": [100.0, 100.0], "road_class": ["urban"] * 2,
                   "wkb": wkb},
                  {"edge_id": [], "layer": [], "feature_id": [], "lo": [], "hi": []})
    g.shortest_path(0, 2)
    g.times_to(2, np.array([0, 1]))


_UNSET = object()


def get(conn: Connection, version=_UNSET) -> RoadGraph:
    """The graph as of ``conn``'s transaction: the cached one, or loaded again if the tables changed.

    ``version``: the ``road_graph`` row of ``layer_versions`` as (version, xmin), or None when there is
    none, if the caller has just read it; else it is read here.
    """
    url = db_key(conn.engine)
    key = _key(conn) if version is _UNSET else version
    for graph in _CACHE.get(url, ()):
        if graph.key == key:
            return graph
    with _LOCK:
        for graph in _CACHE.get(url, ()):
            if graph.key == key:
                return graph
        while True:  # the tables and the version read in separate statements: load again if a rebuild came between
            graph = _load(conn, key)
            again = _key(conn)
            if again == key:
                break
            key = again
        _CACHE[url] = [graph, *_CACHE.get(url, ())][:2]
        return graph


def held(engine, version) -> RoadGraph | None:
    """The graph of this version (``road_graph`` row of ``layer_versions``) if this process holds it."""
    return next((g for g in _CACHE.get(db_key(engine), ()) if g.key == version), None)


def nearest_node(conn: Connection, lon: float, lat: float) -> tuple[int, float]:
    """The graph node nearest to (lon, lat) and its distance in metres.

    Raises
    ------
    AnalysisError
        If the graph is empty (run ``riskmap analyze roads``).
    """
    g = get(conn)
    idx, dist = g.nearest(lon, lat)
    return int(g.node_ids[idx[0]]), float(dist[0])
