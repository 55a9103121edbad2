"""Real public inputs of the Kunming demo (``data/kunming/``, provenance in its README) and the
metric grid the generators share.

Everything generated is built in the metric CRS ``layers.crs.METRIC_EPSG`` (EPSG:4543, CGCS2000 /
3-degree Gauss-Kruger CM 102E) and converted to EPSG:4326 only when the layers are written
(``layers.crs.to_metric`` / ``from_metric``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
import shapely
from affine import Affine
from rasterio import features

from layers.crs import METRIC_EPSG, gcj02_to_wgs84, to_metric
from layers.io import read_source
from layers.settings import REPO_ROOT

KUNMING = REPO_ROOT / "data" / "kunming"
SOURCE_DISTRICTS = "DataV GeoAtlas 530100_full (GCJ-02, via anzhou99/GeoJsons); population: 昆明市统计局 2023 via reposts"
DISTRICTS_GCJ02 = KUNMING / "kunming_districts_530100_full_datav_gcj02.geojson"
DISTRICTS_WGS84 = KUNMING / "kunming_districts_530100_datav_wgs84_derived.geojson"

# Dianchi (滇池): real lake, outline hand-digitised from general knowledge of its shape (草海 and 外海),
# roughly +-500 m; it only keeps people, parks and roads out of the water.
DIANCHI_WGS84 = shapely.MultiPolygon([
    shapely.Polygon([(102.640, 24.968), (102.668, 24.968), (102.690, 25.000), (102.690, 25.018),
                     (102.668, 25.026), (102.650, 25.010), (102.637, 24.985)]),
    shapely.Polygon([(102.650, 24.960), (102.675, 24.952), (102.705, 24.947), (102.733, 24.932),
                     (102.752, 24.908), (102.762, 24.880), (102.757, 24.840), (102.742, 24.800),
                     (102.720, 24.768), (102.703, 24.738), (102.680, 24.707), (102.652, 24.688),
                     (102.627, 24.686), (102.611, 24.702), (102.608, 24.740), (102.614, 24.780),
                     (102.626, 24.830), (102.633, 24.880), (102.639, 24.930)]),
])


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid in the metric CRS (cell centres at x0 + (j + 0.5)·res)."""

    x0: float
    y1: float
    res: float
    width: int
    height: int

    @classmethod
    def around(cls, bounds, res: float, pad: float = 1000.0) -> "Grid":
        minx, miny, maxx, maxy = bounds
        x0 = np.floor((minx - pad) / 1000.0) * 1000.0
        y1 = np.ceil((maxy + pad) / 1000.0) * 1000.0
        width = int(np.ceil((maxx + pad - x0) / res))
        height = int(np.ceil((y1 - miny + pad) / res))
        return cls(float(x0), float(y1), float(res), width, height)

    @property
    def transform(self) -> Affine:
        return Affine(self.res, 0.0, self.x0, 0.0, -self.res, self.y1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def rowcol(self, x, y):
        """Integer (row, col) of the cells holding metric points (may fall outside the grid)."""
        col = np.floor((np.asarray(x) - self.x0) / self.res).astype(int)
        row = np.floor((self.y1 - np.asarray(y)) / self.res).astype(int)
        return row, col

    def centre(self, row, col):
        return self.x0 + (np.asarray(col) + 0.5) * self.res, self.y1 - (np.asarray(row) + 0.5) * self.res

    def sample(self, array: np.ndarray, x, y) -> np.ndarray:
        """Bilinear interpolation of ``array`` at metric points (edge values outside the grid)."""
        fc = (np.asarray(x, float) - self.x0) / self.res - 0.5
        fr = (self.y1 - np.asarray(y, float)) / self.res - 0.5
        c0 = np.clip(np.floor(fc).astype(int), 0, self.width - 2)
        r0 = np.clip(np.floor(fr).astype(int), 0, self.height - 2)
        tc, tr = np.clip(fc - c0, 0, 1), np.clip(fr - r0, 0, 1)
        a = array
        top = a[r0, c0] * (1 - tc) + a[r0, c0 + 1] * tc
        bottom = a[r0 + 1, c0] * (1 - tc) + a[r0 + 1, c0 + 1] * tc
        return top * (1 - tr) + bottom * tr

    def rasterize(self, shapes, fill=0, dtype="int32", all_touched=False) -> np.ndarray:
        """Burn (geometry, value) pairs (metric CRS) into an array of this grid (cell-centre rule)."""
        shapes = list(shapes)
        if not shapes:
            return np.full(self.shape, fill, dtype=dtype)
        return features.rasterize(shapes, out_shape=self.shape, transform=self.transform, fill=fill,
                                  dtype=dtype, all_touched=all_touched)


def district_names_en() -> pd.DataFrame:
    """adcode, name_en of the 14 districts (Hanyu Pinyin, data/kunming/kunming_district_names_en.csv)."""
    return pd.read_csv(KUNMING / "kunming_district_names_en.csv", dtype={"adcode": str})[["adcode", "name_en"]]


def districts_frame() -> gpd.GeoDataFrame:
    """The 14 real district polygons (converted from GCJ-02) with their 2023 populations."""
    frame, _ = read_source(DISTRICTS_GCJ02, "gcj02")
    pop = pd.read_csv(KUNMING / "kunming_district_population_2023.csv", dtype={"adcode": str})
    frame["adcode"] = frame["adcode"].astype(str)
    frame = frame.merge(pop[["adcode", "pop_2023_10k"]], on="adcode", how="left")
    frame["population"] = (frame["pop_2023_10k"] * 10000).round().astype("Int64")
    frame["population_year"] = 2023
    frame["level"] = frame["name"].map(lambda n: "county_city" if n.endswith("市")
                                       else ("county" if n.endswith("县") else "district"))
    frame = frame.merge(district_names_en(), on="adcode", how="left")
    frame["synthetic"] = False
    frame["source"] = SOURCE_DISTRICTS
    return frame[["adcode", "name", "name_en", "level", "population", "population_year", "synthetic", "source",
                  "geometry"]]


class Inputs:
    """The real inputs, loaded once, in the metric CRS unless named ``*_wgs84``."""

    @cached_property
    def districts(self) -> gpd.GeoDataFrame:
        """Districts (metric, made valid) with population, urbanisation rate, short name and seat."""
        frame = districts_frame()
        frame["geometry"] = shapely.make_valid(to_metric(frame.geometry.values))
        pop = pd.read_csv(KUNMING / "kunming_district_population_2023.csv", dtype={"adcode": str})
        frame = frame.merge(pop[["adcode", "urbanization_rate_2023_pct"]], on="adcode")
        raw = gpd.read_file(DISTRICTS_GCJ02)  # DataV `center` = seat of the district government (GCJ-02)
        seat = {str(a): c for a, c in zip(raw["adcode"], raw["center"])}
        lon, lat = gcj02_to_wgs84([seat[a][0] for a in frame.adcode], [seat[a][1] for a in frame.adcode])
        frame["seat"] = to_metric(shapely.points(lon, lat))
        frame["short"] = frame["name"].str.replace(r"(彝族苗族自治县|回族彝族自治县|彝族自治县|区|县|市)$", "",
                                                   regex=True)
        frame["urban_share"] = frame["urbanization_rate_2023_pct"] / 100.0
        return gpd.GeoDataFrame(frame.sort_values("adcode").reset_index(drop=True), geometry="geometry",
                                crs=METRIC_EPSG)

    @cached_property
    def outline(self):
        return shapely.union_all(self.districts.geometry.values)

    @cached_property
    def lake(self):
        return to_metric(DIANCHI_WGS84)

    @cached_property
    def settlements(self) -> gpd.GeoDataFrame:
        """GeoNames places inside the city plus the 14 district seats (DataV ``center``).

        Columns: name, kind (``city`` for Kunming, ``seat``, ``town``), adcode, geometry (metric).
        """
        geo = gpd.read_file(KUNMING / "kunming_bbox_settlements_geonames_wgs84.geojson")
        towns = gpd.GeoDataFrame({"name": geo["name_zh"], "name_en": geo["name"],
                                  "population": geo["population"].fillna(0).astype(int)},
                                 geometry=to_metric(geo.geometry.values), crs=METRIC_EPSG)
        towns["kind"] = np.where(towns["name_en"] == "Kunming", "city", "town")
        seats = gpd.GeoDataFrame({"name": self.districts["name"] + "驻地", "name_en": "seat", "population": 0,
                                  "kind": "seat"}, geometry=self.districts["seat"].values, crs=METRIC_EPSG)
        places = pd.concat([towns, seats], ignore_index=True)
        places = places[shapely.contains_xy(self.outline, places.geometry.x, places.geometry.y)]
        places = places[~shapely.contains_xy(self.lake, places.geometry.x, places.geometry.y)]
        joined = gpd.sjoin(places, self.districts[["adcode", "geometry"]], predicate="within", how="inner")
        return gpd.GeoDataFrame(joined.drop(columns="index_right").reset_index(drop=True), crs=METRIC_EPSG)

    @cached_property
    def parks_seed(self) -> pd.DataFrame:
        return pd.read_csv(KUNMING / "kunming_industrial_chemical_parks_seed.csv", dtype={"adcode": str})

    @cached_property
    def stations(self) -> gpd.GeoDataFrame:
        """OSM railway (``train``) and metro (``subway``) stations, metric."""
        st = gpd.read_file(KUNMING / "kunming_osm_railway_stations_wgs84.geojson")
        st = st.set_geometry(to_metric(st.geometry.values)).set_crs(METRIC_EPSG, allow_override=True)
        return st[shapely.contains_xy(self.outline, st.geometry.x, st.geometry.y)].reset_index(drop=True)

    @cached_property
    def airport(self):
        """Centre of the runways of 长水国际机场 (OSM aeroways), metric."""
        aero = gpd.read_file(KUNMING / "kunming_osm_aeroways_wgs84.geojson")
        runways = aero[aero["aeroway"] == "runway"]
        return to_metric(shapely.union_all(runways.geometry.values).centroid)

    @cached_property
    def waterlogging_hist(self) -> gpd.GeoDataFrame:
        """The recurring urban waterlogging hot-spots (``layer=hist``; GCJ-02 original converted), metric."""
        with warnings.catch_warnings():  # its free-text column ``n`` is not JSON; pyogrio says so
            warnings.simplefilter("ignore", UserWarning)
            wl, _ = read_source(KUNMING / "kunming_waterlogging_points_2026_gcj02.geojson", "gcj02")
        wl = wl.loc[wl["layer"] == "hist", ["name", "cat", "district", "geometry"]]
        return wl.set_geometry(to_metric(wl.geometry.values)).set_crs(METRIC_EPSG, allow_override=True)

    def coarse_dem(self) -> tuple[np.ndarray, Affine, object]:
        """The 5-arcminute pvlib DEM (metres, EPSG:4326)."""
        with rasterio.open(KUNMING / "kunming_dem_5arcmin_pvlib_wgs84.tif") as src:
            return src.read(1).astype("float32"), src.transform, src.crs
