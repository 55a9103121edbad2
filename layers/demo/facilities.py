"""Demo facilities: chemical parks, enterprises, major hazard installations with inventories, tailings
ponds, protection targets (receptors), emergency resources and water-source protection zones.

All generated, all flagged synthetic and named as demo records. Real inputs only anchor them: the
seed park list (names, kept in ``source`` and marked （演示）/(demo) in the park names, and town
centroids), GeoNames towns and DataV seats, the population grid (people live where receptors go),
the DEM (ponds sit in valleys) and approximate locations of real reservoirs. What the analyses
decide is left empty: installation levels (``riskmap analyze hazchem``), receptor protection classes
(derived by that analysis from its settings), pond grades and head-top flags (``riskmap analyze
tailings``).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely import affinity, ops

from layers.crs import METRIC_EPSG, to_metric
from layers.demo.sources import Inputs
from layers.demo.terrain import Surface

GEN = "synthetic (layers.demo, seed {seed})"

# GB 18218-2018 Table 1 rows used by the demo: name, CAS, UN, Q (t), β (Table 3, else Table 4 of the
# class), hazard class given where the table has none (汽油: flammable liquid cat. 1 -> W5.1), and a
# plausible upper bound of q (t) per unit. tests/layers/test_demo_facilities.py checks Q and β
# against gis/data/gb18218_table1.csv. 柴油 is not in Table 1: Table 2 class W5.4 (Q 5000 t).
SUBSTANCES = {
    "氯": ("7782-50-5", "1017", 5, 4, None, 300),
    "氨": ("7664-41-7", "1005", 10, 2, None, 3000),
    "硫化氢": ("7783-06-4", "1053", 5, 5, None, 30),
    "二氧化硫": ("7446-09-5", "1079", 20, 2, None, 500),
    "氟化氢": ("7664-39-3", "1052", 1, 5, None, 40),
    "液化石油气": ("68476-85-7", "1075", 50, 1.5, "W2", 5000),
    "天然气": ("74-82-8", "1971", 50, 1.5, "W2", 500),
    "氢": ("1333-74-0", "1049", 5, 1.5, "W2", 50),
    "煤气": ("630-08-0", "1016", 20, 2, None, 200),
    "氧": ("7782-44-7", "1072", 200, 1, "W4", 3000),
    "甲醇": ("67-56-1", "1230", 500, 1, "W5.3", 60000),
    "苯": ("71-43-2", "1114", 50, 1, "W5.3", 5000),
    "甲苯": ("108-88-3", "1294", 500, 1, "W5.3", 20000),
    "汽油": ("86290-81-5", "1203", 200, 1.5, "W5.1", 80000),
    "柴油": ("68334-30-5", "1202", 5000, 1, "W5.4", 100000),
    "白磷": ("12185-10-3", "1381", 50, 1, "W8", 3000),
    "碳化钙": ("75-20-7", "1402", 100, 1, "W11", 10000),
    "硝酸铵(含可燃物≤0.2%)": ("6484-52-2", "1942", 50, 1, "W9.2", 3000),
}
# Substance mixes by industry (what a unit of such a plant may hold).
MIXES = {
    "petrochemical": ("汽油", "柴油", "液化石油气", "苯", "甲苯", "硫化氢", "氢"),
    "phosphate": ("氨", "白磷", "二氧化硫", "氟化氢", "硝酸铵(含可燃物≤0.2%)", "液化石油气"),
    "copper": ("二氧化硫", "氧", "天然气", "硫化氢"),
    "chlor_alkali": ("氯", "氢", "碳化钙", "甲醇", "苯"),
    "coal_chemical": ("煤气", "甲醇", "氨", "天然气", "苯"),
    "fine_chemical": ("甲醇", "甲苯", "苯", "氯", "液化石油气"),
    "fuel_depot": ("汽油", "柴油", "液化石油气", "天然气"),
    "water_works": ("氯",),
}
INDUSTRY_ZH = {"petrochemical": "石油炼化", "phosphate": "磷化工", "copper": "铜冶炼", "chlor_alkali": "氯碱化工",
               "coal_chemical": "煤化工", "fine_chemical": "精细化工", "fuel_depot": "成品油及燃气储存经营",
               "water_works": "供水（液氯消毒）"}
# Synthetic parks at real towns (name as in Inputs.settlements, industry); more are added per scale.
SYNTHETIC_PARKS = (("七甸", "fine_chemical"), ("嵩明县驻地", "chlor_alkali"), ("宜良县驻地", "coal_chemical"),
                   ("禄脿", "phosphate"), ("富民县驻地", "fine_chemical"), ("石林彝族自治县驻地", "coal_chemical"))
# Mining counties and their share of the tailings ponds (东川 copper, the others phosphate/iron/lead-zinc).
PONDS = {"530113": (0.45, "铜"), "530128": (0.15, "铁"), "530129": (0.15, "磷"), "530115": (0.10, "磷"),
         "530181": (0.10, "磷"), "530124": (0.05, "铅锌")}
# Real reservoirs (drinking-water sources), approximate centres from general knowledge (+-2 km) and
# rough size: (name, lon, lat, length m along north-south, width m). Outlines are synthetic ellipses.
RESERVOIRS = (("松华坝水库", 102.800, 25.160, 5000, 1300), ("云龙水库", 102.460, 25.850, 7000, 1800),
              ("清水海", 103.140, 25.560, 5000, 1600), ("宝象河水库", 102.905, 25.030, 2500, 700),
              ("柴河水库", 102.680, 24.620, 3000, 800))


def _district_of(inputs: Inputs, points) -> np.ndarray:
    """adcode of the district holding each metric point (None outside)."""
    d = inputs.districts
    frame = gpd.GeoDataFrame(geometry=list(points), crs=METRIC_EPSG)
    hit = gpd.sjoin(frame, d[["adcode", "geometry"]], predicate="within", how="left")
    return hit[~hit.index.duplicated()]["adcode"].to_numpy()


def _blob(centre, radius: float, rng: np.random.Generator, n: int = 16) -> shapely.Polygon:
    """A smooth irregular polygon around ``centre`` (radius varies by +-25 %)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    harm = sum(rng.normal(0, 0.12) * np.cos(k * t + rng.uniform(0, 2 * np.pi)) for k in (1, 2, 3))
    r = radius * np.clip(1 + harm, 0.75, 1.25)
    return shapely.Polygon(np.column_stack([centre[0] + r * np.cos(t), centre[1] + r * np.sin(t)]))


def build_parks(inputs: Inputs, pop: Surface, rng: np.random.Generator, seed: int, scale: int) -> gpd.GeoDataFrame:
    """The 5 seed parks (named after the seed list, marked （演示）/(demo), the real name and its
    evidence in ``source``; no park level, the list gives none; synthetic outlines 2.5-4 km from the
    given town centroid) and
    6·ceil(sqrt(scale)) synthetic ones near real towns, each inside its district, clear of Dianchi
    and of each other, on the least populated of a few candidate sites (parks grow slower than
    ``scale``: the enterprises fill them more densely instead)."""
    d = inputs.districts.set_index("adcode")
    places = inputs.settlements.set_index("name")
    plans = []
    for row in inputs.parks_seed.itertuples():
        if pd.notna(row.approx_lon_wgs84):
            anchor = to_metric(shapely.Point(row.approx_lon_wgs84, row.approx_lat_wgs84))
            basis = f"town centroid {row.location_basis.split(' - ')[0]}"
        else:
            anchor = d.loc[row.adcode, "seat"]
            basis = "no coordinates in the seed list: placed near the district seat"
        industry = "petrochemical" if "石化" in row.main_industry else "copper" if "铜" in row.main_industry \
            else "phosphate"
        plans.append(dict(name=f"{row.name}（演示） / {row.name} (demo)", adcode=row.adcode, anchor=anchor,
                          industry=industry, main_industry=row.main_industry, park_level=None,
                          area=rng.uniform(5e6, 9e6),
                          source=f"named after the seed list entry {row.name} (evidence {row.evidence_level}: "
                                 f"{row.evidence}); a demo record: outline ({basis}) and enterprises synthetic, no "
                                 f"level given; {GEN.format(seed=seed)}"))
    towns = [(n, ind) for n, ind in SYNTHETIC_PARKS if n in places.index]
    others = [n for n, k in zip(inputs.settlements.name, inputs.settlements.kind)
              if k == "town" and n not in dict(towns)]
    kinds = [k for _, k in SYNTHETIC_PARKS]
    for i in range(len(towns), 6 * int(np.ceil(np.sqrt(scale)))):
        towns.append((others[rng.integers(len(others))], kinds[i % len(kinds)]))
    for k, (town, industry) in enumerate(towns, 1):
        place = places.loc[town]
        place = place.iloc[0] if isinstance(place, pd.DataFrame) else place
        short = d.loc[place.adcode, "short"]
        plans.append(dict(name=f"演示化工园区-{short}-{k:02d} / Demo chemical park {k:02d}", adcode=place.adcode,
                          anchor=place.geometry, industry=industry, main_industry=INDUSTRY_ZH[industry],
                          park_level=None, area=rng.uniform(3e6, 6e6),
                          source=f"near real town {town} (GeoNames/DataV); name and outline {GEN.format(seed=seed)}"))
    placed, rows = [], []
    water = inputs.lake.buffer(500)
    for plan in plans:
        district = d.loc[plan["adcode"], "geometry"].buffer(-300)
        radius = np.sqrt(plan["area"] / np.pi)
        best = None
        for attempt in range(60):
            dist = rng.uniform(2500, 4000) + 150 * attempt
            theta = rng.uniform(0, 2 * np.pi)
            centre = (plan["anchor"].x + dist * np.cos(theta), plan["anchor"].y + dist * np.sin(theta))
            poly = _blob(centre, radius, rng)
            if not district.contains(poly) or poly.intersects(water) or \
                    any(poly.distance(p) < 1500 for p in placed):
                continue
            xs, ys = _grid_points(poly, 250)
            people = float(pop.sample(xs, ys).sum())
            if best is None or people < best[0]:
                best = (people, poly)
            if attempt >= 8 and best is not None:
                break
        if best is None:
            raise RuntimeError(f"demo: no site found for park {plan['name']}")
        placed.append(best[1])
        rows.append({k: plan[k] for k in ("name", "adcode", "industry", "main_industry", "park_level", "source")}
                    | {"geometry": best[1]})
    parks = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    parks["id"] = np.arange(1, len(parks) + 1)
    parks["status"] = "operating"
    parks["synthetic"] = True
    return parks


def park_gates(inputs: Inputs, parks: gpd.GeoDataFrame) -> list[tuple[str, tuple[float, float]]]:
    """One entrance per park: the point of its outline nearest to the nearest real place."""
    places = shapely.MultiPoint(list(inputs.settlements.geometry.values))
    gates = []
    for park in parks.itertuples():
        near = ops.nearest_points(park.geometry.exterior, places)[0]
        gates.append((park.name.split(" / ")[0], (near.x, near.y)))
    return gates


def _grid_points(poly, step: float):
    minx, miny, maxx, maxy = poly.bounds
    xs, ys = np.meshgrid(np.arange(minx, maxx, step), np.arange(miny, maxy, step))
    inside = shapely.contains_xy(poly, xs, ys)
    return xs[inside], ys[inside]


def _rect(x0, y0, x1, y1) -> shapely.Polygon:
    return shapely.box(x0, y0, x1, y1)


def build_enterprises(inputs: Inputs, parks: gpd.GeoDataFrame, rng: np.random.Generator, seed: int,
                      n: int) -> gpd.GeoDataFrame:
    """``n`` enterprise sites: 75 % on lots inside the parks (rectangles clear of the park edge),
    the rest (fuel depots, traders, water works) 0.5-4 km from real towns, outside parks."""
    rows = []
    n_in = int(round(n * 0.75))
    lots = []
    cell = float(min(300.0, np.sqrt(0.5 * parks.area.sum() / max(n_in, 1))))  # lots shrink as ``n`` grows
    for park in parks.itertuples():
        inner = park.geometry.buffer(-40)
        minx, miny, maxx, maxy = inner.bounds
        for x in np.arange(minx, maxx - cell, cell):
            for y in np.arange(miny, maxy - cell, cell):
                m = rng.uniform(0.07, 0.27, 4) * cell
                r = _rect(x + m[0], y + m[1], x + cell - m[2], y + cell - m[3])
                if inner.contains(r):
                    lots.append((park.id, park.adcode, park.industry, r))
    if len(lots) < n_in:
        raise RuntimeError(f"demo: parks hold {len(lots)} lots, {n_in} enterprises asked")
    pick = rng.choice(len(lots), size=n_in, replace=False)
    for i in sorted(pick):
        park_id, adcode, industry, r = lots[i]
        kind = rng.choice(["production", "storage", "use"], p=[0.7, 0.2, 0.1])
        rows.append(dict(park_id=park_id, adcode=adcode, industry=industry, kind=kind, geometry=r))
    parks_zone = shapely.union_all(parks.geometry.values).buffer(300)
    water = inputs.lake.buffer(200)
    districts = inputs.districts.set_index("adcode")["geometry"]
    places = inputs.settlements
    while len(rows) < n:
        place = places.iloc[rng.integers(len(places))]
        dist, theta = rng.uniform(500, 4000), rng.uniform(0, 2 * np.pi)
        x, y = place.geometry.x + dist * np.cos(theta), place.geometry.y + dist * np.sin(theta)
        w, h = rng.uniform(60, 200, 2)
        r = _rect(x - w / 2, y - h / 2, x + w / 2, y + h / 2)
        if r.intersects(parks_zone) or r.intersects(water) or not districts[place.adcode].contains(r):
            continue
        industry = rng.choice(["fuel_depot", "fuel_depot", "water_works", "fine_chemical"])
        kind = {"fuel_depot": rng.choice(["storage", "operation"]), "water_works": "use"}.get(industry, "operation")
        rows.append(dict(park_id=None, adcode=place.adcode, industry=industry, kind=kind, geometry=r))
    ent = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    short = inputs.districts.set_index("adcode")["short"]
    ent["id"] = np.arange(1, len(ent) + 1)
    counter: dict[str, int] = {}
    names = []
    for e in ent.itertuples():
        counter[e.adcode] = counter.get(e.adcode, 0) + 1
        names.append(f"演示企业-{short[e.adcode]}-{counter[e.adcode]:03d} / Demo enterprise {e.id:04d}")
    ent["name"] = names
    ent["industry_code"] = ent["industry"]
    ent["industry"] = ent["industry_code"].map(INDUSTRY_ZH)
    ent["address"] = [f"演示地址（合成）{short[a]} / synthetic address" for a in ent.adcode]
    ent["park_id"] = ent["park_id"].astype("Int64")
    ent["synthetic"] = True
    ent["source"] = GEN.format(seed=seed)
    return ent


def inventory(industry: str, rng: np.random.Generator) -> list[dict]:
    """A unit's inventory: 1-3 substances of the industry's mix. The identification index
    S = Σq/Q is below 1 for 15 % of the units and log-uniform in [1.1, 60] otherwise (capped by
    plausible quantities), so grading gives all four levels and some units below threshold."""
    mix = MIXES[industry]
    k = int(min(len(mix), rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2])))
    names = list(rng.choice(mix, size=k, replace=False))
    below = rng.random() < 0.15
    target = rng.uniform(0.2, 0.9) if below else float(np.exp(rng.uniform(np.log(1.1), np.log(60))))
    shares = rng.dirichlet(np.ones(k))
    out = []
    for name, share in zip(names, shares):
        cas, un, Q, _, cls, qmax = SUBSTANCES[name]
        q = min(target * share * Q, qmax)
        q = np.floor(q * 10) / 10 if below else np.ceil(q * 10) / 10
        out.append({"name": name, "cas": cas, "un_number": un, "hazard_class": cls, "quantity_t": max(q, 0.1)})
    return out


def build_installations(enterprises: gpd.GeoDataFrame, rng: np.random.Generator, seed: int,
                        n: int) -> gpd.GeoDataFrame:
    """``n`` production/storage units inside the enterprise sites (80 % in park enterprises; a
    fifth of the sites hold two units side by side), each with an inventory."""
    eligible = enterprises[enterprises["kind"].isin(["production", "storage", "use"])
                           | (enterprises["industry_code"] == "fuel_depot")]
    in_park = eligible[eligible["park_id"].notna()].index.to_numpy()
    outside = eligible[eligible["park_id"].isna()].index.to_numpy()
    n_sites = int(np.ceil(n / 1.2))
    n_out = min(len(outside), n_sites // 5)
    sites = list(rng.choice(in_park, size=min(len(in_park), n_sites - n_out), replace=False))
    sites += list(rng.choice(outside, size=n_out, replace=False))
    units = [(s, 2 if i < n - len(sites) else 1) for i, s in enumerate(sites)]
    rows = []
    for site, count in units:
        e = enterprises.loc[site]
        x0, y0, x1, y1 = e.geometry.bounds
        horizontal = (x1 - x0) >= (y1 - y0)
        for j in range(count):
            if count == 2:  # halves along the longer side, 10 m apart
                if horizontal:
                    mid = (x0 + x1) / 2
                    box = (x0, y0, mid - 5, y1) if j == 0 else (mid + 5, y0, x1, y1)
                else:
                    mid = (y0 + y1) / 2
                    box = (x0, y0, x1, mid - 5) if j == 0 else (x0, mid + 5, x1, y1)
            else:
                box = (x0, y0, x1, y1)
            bx0, by0, bx1, by1 = box
            fw, fh = rng.uniform(0.35, 0.7, 2)
            w, h = (bx1 - bx0) * fw, (by1 - by0) * fh
            gap = min(8.0, 0.1 * (bx1 - bx0), 0.1 * (by1 - by0))  # clear of the site boundary
            ox = bx0 + gap + rng.uniform(0, max(bx1 - bx0 - w - 2 * gap, 0))
            oy = by0 + gap + rng.uniform(0, max(by1 - by0 - h - 2 * gap, 0))
            storage = e["kind"] == "storage" or j == 1 or e["industry_code"] == "fuel_depot"
            unit = "storage" if storage else "production"
            label = ("储存单元", "storage unit") if storage else ("生产单元", "production unit")
            rows.append(dict(enterprise_id=int(e["id"]), unit_type=unit,
                             name=f"{e['name'].split(' / ')[0]} {label[0]}{j + 1} / Demo {label[1]} {j + 1}",
                             chemicals=inventory(e["industry_code"], rng),
                             geometry=_rect(ox, oy, min(ox + w, bx1 - gap), min(oy + h, by1 - gap))))
    inst = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    inst["id"] = np.arange(1, len(inst) + 1)
    inst["synthetic"] = True
    inst["source"] = GEN.format(seed=seed) + "; inventory: GB 18218-2018 Table 1 substances, quantities generated"
    return inst


def tree_near(points: list, p, distance: float) -> bool:
    """Whether any of ``points`` lies within ``distance`` of ``p`` (vectorised)."""
    xy = shapely.get_coordinates(points)
    return bool((np.hypot(xy[:, 0] - p.x, xy[:, 1] - p.y) < distance).any())


def build_tailings(inputs: Inputs, dem: Surface, parks: gpd.GeoDataFrame, rng: np.random.Generator, seed: int,
                   n: int, scale: int = 1) -> gpd.GeoDataFrame:
    """``n`` tailings ponds in the mining counties, in valleys (ground lower than 600 m around),
    reaching upstream from the dam; the dam toe is 2.5 x the dam height downstream of the crest."""
    d = inputs.districts.set_index("adcode")
    counts = {a: int(round(share * n)) for a, (share, _) in PONDS.items()}
    counts["530113"] += n - sum(counts.values())
    avoid = shapely.union_all([*parks.geometry.values, inputs.lake]).buffer(1000)
    towns = shapely.MultiPoint(list(inputs.settlements.geometry.values)).buffer(800)
    rows, placed = [], []
    ring = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    # dams at least ``spacing`` apart and ponds at most spacing/2 long: ponds never overlap
    spacing = max(2000.0 / np.sqrt(scale), 200.0)
    for adcode, count in counts.items():
        county = d.loc[adcode, "geometry"]
        inner = county.buffer(-100)
        minx, miny, maxx, maxy = county.bounds
        mineral = PONDS[adcode][1]
        k = 0
        tries = 0
        while k < count:
            tries += 1
            if tries > 200 * count:
                raise RuntimeError(f"demo: cannot place the tailings ponds of {adcode}")
            cand = rng.uniform([minx, miny], [maxx, maxy], size=(40, 2))
            ok = shapely.contains_xy(inner, cand[:, 0], cand[:, 1])
            cand = cand[ok]
            if not len(cand):
                continue
            z = dem.sample(cand[:, 0], cand[:, 1])
            around = np.mean([dem.sample(cand[:, 0] + 600 * np.cos(a), cand[:, 1] + 600 * np.sin(a)) for a in ring],
                             axis=0)
            score = around - z
            order = np.argsort(-score)[:5]
            x, y = cand[rng.choice(order)]
            if score[np.argsort(-score)[0]] < 10:
                continue
            p = shapely.Point(x, y)
            if avoid.contains(p) or towns.contains(p) or (placed and tree_near(placed, p, spacing)):
                continue
            gx = (dem.sample(x + 90, y) - dem.sample(x - 90, y))[()]
            gy = (dem.sample(x, y + 90) - dem.sample(x, y - 90))[()]
            norm = np.hypot(gx, gy)
            if norm < 1e-6:
                continue
            up = np.array([gx, gy]) / norm
            length = float(np.clip(rng.lognormal(np.log(650), 0.45), min(250.0, spacing / 4), spacing / 2))
            width = length * rng.uniform(0.35, 0.6)
            t = np.linspace(0, 2 * np.pi, 28, endpoint=False)
            along, across = length / 2 * (1 + np.cos(t)), width / 2 * np.sin(t)
            along = np.maximum(along, 0.08 * length)  # straight dam crest at the downstream end
            side = np.array([-up[1], up[0]])
            pts = np.array([x, y]) + np.outer(along, up) + np.outer(across, side)
            poly = shapely.Polygon(pts)
            if not poly.is_valid or not inner.contains(poly) or poly.intersects(avoid):
                continue
            dam = float(np.clip(8 + length / 12 * rng.uniform(0.6, 1.4), 8, 160))
            capacity = round(poly.area * dam * 0.4 / 1e4, 1)
            crest = np.array([x, y]) + up * 0.08 * length
            toe = crest - up * 2.5 * dam
            k += 1
            placed.append(p)
            rows.append(dict(name=f"演示尾矿库-{d.loc[adcode, 'short']}-{k:02d} / Demo tailings pond",
                             mine=f"演示矿山-{d.loc[adcode, 'short']}-{mineral}-{k:02d} / Demo mine",
                             dam_height_m=round(dam, 1), capacity_10k_m3=capacity,
                             status=rng.choice(["operating", "inactive", "closed", "reclaimed"],
                                               p=[0.55, 0.2, 0.2, 0.05]),
                             adcode=adcode, toe=shapely.Point(toe), geometry=poly))
    ponds = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    ponds["synthetic"] = True
    ponds["source"] = GEN.format(seed=seed) + "; capacity and dam height generated (grade: the tailings analysis)"
    return ponds


RECEPTOR_KINDS = {  # kind: (zh, en, share, people median, people spread)
    "residential": ("居住区", "residential area", 0.55, 600, 0.9), "school": ("学校", "school", 0.14, 900, 0.6),
    "kindergarten": ("幼儿园", "kindergarten", 0.10, 180, 0.5), "hospital": ("医院", "hospital", 0.05, 500, 0.8),
    "care_home": ("养老院", "care home", 0.04, 100, 0.6), "market": ("商场市场", "market", 0.07, 700, 0.8),
    "office": ("办公场所", "office", 0.045, 300, 0.8), "prison": ("监所", "prison", 0.005, 1200, 0.4),
}
def _keep(points: np.ndarray, blocked, area) -> np.ndarray:
    """The points inside ``area`` and outside ``blocked``."""
    x, y = points[:, 0], points[:, 1]
    return points[shapely.contains_xy(area, x, y) & ~shapely.contains_xy(blocked, x, y)]


def build_receptors(inputs: Inputs, pop: Surface, parks: gpd.GeoDataFrame, rng: np.random.Generator, seed: int,
                    n: int) -> gpd.GeoDataFrame:
    """``n`` protection targets: 90 % where people live (cells drawn by population), 10 % in
    villages 200-1500 m outside the parks; none inside a park (100 m margin) or in Dianchi."""
    blocked = shapely.union_all([*parks.geometry.buffer(100).values, inputs.lake])
    n_near = n // 10
    pts = _keep(pop.sample_cells(rng, int((n - n_near) * 1.3) + 50), blocked, inputs.outline)[: n - n_near]
    near = []
    geoms = parks.geometry.values
    while sum(len(a) for a in near) < n_near:
        i = rng.integers(len(geoms), size=200)
        theta, dist = rng.uniform(0, 2 * np.pi, 200), rng.uniform(200, 1500, 200)
        edge = shapely.get_coordinates(shapely.line_interpolate_point(shapely.get_exterior_ring(geoms[i]),
                                                                      rng.uniform(0, 1, 200), normalized=True))
        cand = edge + np.column_stack([dist * np.cos(theta), dist * np.sin(theta)])
        near.append(_keep(cand, blocked, inputs.outline))
    pts = np.vstack([pts, np.vstack(near)[:n_near]])
    kinds = list(RECEPTOR_KINDS)
    kind = np.r_[rng.choice(kinds, size=n - n_near, p=[RECEPTOR_KINDS[k][2] for k in kinds]),
                 rng.choice(["residential", "school", "kindergarten", "care_home"], size=n_near,
                            p=[0.8, 0.1, 0.05, 0.05])]
    people = np.array([int(np.clip(rng.lognormal(np.log(RECEPTOR_KINDS[k][3]), RECEPTOR_KINDS[k][4]), 20, 8000))
                       for k in kind])
    geom = shapely.points(pts)
    adcode = _district_of(inputs, geom)
    keep = pd.notna(adcode)
    short = inputs.districts.set_index("adcode")["short"]
    rec = gpd.GeoDataFrame({"kind": kind, "people": people, "adcode": adcode}, geometry=geom,
                           crs=METRIC_EPSG)[keep].reset_index(drop=True)
    rec["protection_class"] = None  # derived by the hazchem analysis from its settings (gis.hazchem.CLASS_SQL)
    rec["name"] = [f"演示{RECEPTOR_KINDS[k][0]}-{short[a]}-{i:05d} / Demo {RECEPTOR_KINDS[k][1]}"
                   for i, (k, a) in enumerate(zip(rec.kind, rec.adcode), 1)]
    rec["synthetic"] = True
    rec["source"] = GEN.format(seed=seed) + "; placed on the demo population grid"
    return rec


RESOURCE_KINDS = {  # kind: (zh, en, share, capacity range)
    "fire_station": ("消防站", "fire station", 0.25, (3, 12)), "hospital": ("医院", "hospital", 0.2, (50, 1500)),
    "shelter": ("避难场所", "shelter", 0.2, (500, 20000)), "rescue_team": ("救援队伍", "rescue team", 0.15, (20, 120)),
    "depot": ("物资库", "material depot", 0.2, (50, 2000)),
}


def build_resources(inputs: Inputs, pop: Surface, parks: gpd.GeoDataFrame, ponds: gpd.GeoDataFrame,
                    rng: np.random.Generator, seed: int, n: int) -> gpd.GeoDataFrame:
    """``n`` emergency resources: fire stations, hospitals and shelters where people live; rescue
    teams 1-3 km from parks and tailings ponds; depots half by the real waterlogging hot-spots
    (flood-control stores), half near the parks. Capacity: vehicles, beds, people or tonnes."""
    kinds = list(RESOURCE_KINDS)
    counts = {k: int(RESOURCE_KINDS[k][2] * n) for k in kinds}
    counts["fire_station"] += n - sum(counts.values())
    blocked = shapely.union_all([*parks.geometry.values, inputs.lake])
    anchors_hazard = np.vstack([shapely.get_coordinates(parks.geometry.centroid.values),
                                shapely.get_coordinates(ponds.geometry.centroid.values)])
    anchors_flood = shapely.get_coordinates(inputs.waterlogging_hist.geometry.values)

    def around(anchors, count, lo, hi):
        out = []
        while sum(len(a) for a in out) < count:
            a = anchors[rng.integers(len(anchors), size=100)]
            t, r = rng.uniform(0, 2 * np.pi, 100), rng.uniform(lo, hi, 100)
            out.append(_keep(a + np.column_stack([r * np.cos(t), r * np.sin(t)]), blocked, inputs.outline))
        return np.vstack(out)[:count]

    parts, kind = [], []
    for k in kinds:
        c = counts[k]
        if k == "rescue_team":
            pts = around(anchors_hazard, c, 1000, 3000)
        elif k == "depot":
            pts = np.vstack([around(anchors_flood, c // 2, 100, 500), around(anchors_hazard[:len(parks)],
                                                                           c - c // 2, 800, 2500)])
        else:
            pts = _keep(pop.sample_cells(rng, c * 2 + 20), blocked, inputs.outline)[:c]
        parts.append(pts)
        kind += [k] * len(pts)
    pts = np.vstack(parts)
    res = gpd.GeoDataFrame({"kind": kind}, geometry=shapely.points(pts), crs=METRIC_EPSG)
    res["adcode"] = _district_of(inputs, res.geometry.values)
    res = res[res.adcode.notna()].reset_index(drop=True)
    short = inputs.districts.set_index("adcode")["short"]
    res["capacity"] = [int(rng.integers(*RESOURCE_KINDS[k][3])) for k in res.kind]
    res["name"] = [f"演示{RESOURCE_KINDS[k][0]}-{short[a]}-{i:04d} / Demo {RESOURCE_KINDS[k][1]}"
                   for i, (k, a) in enumerate(zip(res.kind, res.adcode), 1)]
    res["contact_name"] = [f"演示联系人{i:04d}" for i in range(1, len(res) + 1)]
    res["contact_phone"] = [f"000-0000-{i:04d}" for i in range(1, len(res) + 1)]  # not a dialable number
    res["address"] = [f"演示地址（合成）{short[a]} / synthetic address" for a in res.adcode]
    res["synthetic"] = True
    res["source"] = GEN.format(seed=seed)
    return res.drop(columns="adcode")


def build_water_zones(seed: int) -> gpd.GeoDataFrame:
    """Grade-1 and grade-2 protection zones of 5 real drinking-water reservoirs: approximate centres,
    synthetic elliptic outlines (grade 1: water body + 200 m; grade 2: the ring out to 2 km)."""
    rows = []
    for name, lon, lat, length, width in RESERVOIRS:
        c = to_metric(shapely.Point(lon, lat))
        water = affinity.scale(c.buffer(1.0, quad_segs=16), width / 2, length / 2)
        grade1 = water.buffer(200)
        grade2 = water.buffer(2000).difference(grade1)
        src = (f"real reservoir, approximate location (general knowledge, +-2 km); outline synthetic; "
               f"{GEN.format(seed=seed)}")
        rows.append(dict(name=f"{name}饮用水水源一级保护区（示意） / {name} grade-1 zone (approximate)",
                         zone_level="grade1", water_body=name, source=src, geometry=grade1))
        rows.append(dict(name=f"{name}饮用水水源二级保护区（示意） / {name} grade-2 zone (approximate)",
                         zone_level="grade2", water_body=name, source=src, geometry=grade2))
    zones = gpd.GeoDataFrame(rows, geometry="geometry", crs=METRIC_EPSG)
    zones["synthetic"] = True
    return zones
