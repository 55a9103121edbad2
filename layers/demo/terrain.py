"""The demo rasters: a ~90 m DEM refined from the real 5' DEM, and a 100 m dasymetric population grid.

Both are GeoTIFFs in EPSG:4543 under ``<data_dir>/generated/``, built deterministically from the
seed on first use and reused afterwards (the file name carries the seed and generator version).
"""

from __future__ import annotations

import heapq
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from layers.crs import METRIC_EPSG
from layers.demo.sources import Grid, Inputs

VERSION = 2
DEM_RES = 90.0
POP_RES = 100.0
LAKE_LEVEL = 1886.5  # Dianchi normal water level, m (approximate)

DEM_SOURCE = ("synthetic: pvlib 5' DEM (Mapzen/SRTM lineage, BSD-3) resampled to 90 m (cubic) plus seeded "
              "fractal relief and valleys whose 9 km means are kept; Dianchi flattened to 1886.5 m")
POP_SOURCE = ("synthetic dasymetric grid: 2023 district populations (昆明市统计局 via reposts) split into urban "
              "(urbanisation rate, kernels at GeoNames towns, DataV seats and OSM stations) and rural "
              "(habitable terrain) people; zero in Dianchi; district sums equal the table")


@dataclass
class Surface:
    """A raster in memory with its grid and the GeoTIFF it is stored in."""

    array: np.ndarray
    grid: Grid
    path: Path

    def sample(self, x, y) -> np.ndarray:
        """Bilinear values at metric points."""
        return self.grid.sample(self.array, x, y)

    def sample_cells(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` metric points (n x 2) in cells drawn with probability proportional to the value."""
        w = self.array.ravel().astype("float64")
        idx = rng.choice(w.size, size=n, p=w / w.sum())
        r, c = np.divmod(idx, self.grid.width)
        x, y = self.grid.centre(r, c)
        half = self.grid.res / 2
        return np.column_stack([x + rng.uniform(-half, half, n), y + rng.uniform(-half, half, n)])


def _fbm(shape, rng: np.random.Generator, max_wavelength: float, beta: float = 3.4) -> np.ndarray:
    """Spectral fractal noise (power ~ k^-beta, unit std) without wavelengths above ``max_wavelength`` cells."""
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.hypot(kx, ky)
    k[0, 0] = 1.0
    amp = k ** (-beta / 2) * (1 - np.exp(-((k * max_wavelength) ** 4)))  # smooth cut above max_wavelength
    amp[0, 0] = 0.0
    spec = amp * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    field = np.fft.irfft2(spec, s=shape)
    return field / field.std()


def _block_mean(a: np.ndarray, factor: int) -> np.ndarray:
    h, w = a.shape
    hp, wp = -(-h // factor) * factor, -(-w // factor) * factor
    padded = np.pad(a, ((0, hp - h), (0, wp - w)), mode="edge")
    return padded.reshape(hp // factor, factor, wp // factor, factor).mean(axis=(1, 3))


def _lowpass(a: np.ndarray, factor: int, sigma: float) -> np.ndarray:
    """Cheap wide low-pass: block mean by ``factor``, Gaussian blur, bilinear back to full size."""
    blurred = ndimage.gaussian_filter(_block_mean(a, factor), sigma, mode="nearest")
    return ndimage.zoom(blurred, factor, order=1)[:a.shape[0], :a.shape[1]]


_D8 = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def drainage(z: np.ndarray, sinks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Priority-flood flow routing on ``z``.

    Returns the downstream cell of every cell (flat index, -1 at outlets), its upstream area in
    cells and the filled surface. Outlets are the grid edge and the ``sinks`` mask; pits drain over
    their lowest spill point.
    """
    h, w = z.shape
    down = np.full(h * w, -1, dtype=np.int64)
    done = np.zeros(h * w, dtype=bool)
    flat = z.ravel().tolist()
    edge = np.zeros((h, w), bool)
    edge[0, :] = edge[-1, :] = edge[:, 0] = edge[:, -1] = True
    seeds = np.flatnonzero((edge | sinks).ravel())
    heap = [(flat[i], int(i)) for i in seeds]
    heapq.heapify(heap)
    done[seeds] = True
    order = []
    filled = np.array(flat)
    while heap:
        level, i = heapq.heappop(heap)
        order.append(i)
        filled[i] = level
        r, c = divmod(i, w)
        for dr, dc in _D8:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w:
                j = rr * w + cc
                if not done[j]:
                    done[j] = True
                    down[j] = i
                    heapq.heappush(heap, (max(flat[j], level), j))
    area = np.ones(h * w)
    downs = down.tolist()
    for i in reversed(order):
        if downs[i] >= 0:
            area[downs[i]] += area[i]
    return down.reshape(h, w), area.reshape(h, w), filled.reshape(h, w)


def build_dem(inputs: Inputs, grid: Grid, seed: int) -> np.ndarray:
    """Refine the 5' DEM to ``grid``.

    Cubic resampling of the real DEM keeps its relief. Spectral fractal detail (wavelengths below
    12 km, stronger where the coarse relief is high and on upper slopes) is added, then valleys are
    carved along a drainage network routed on the result (priority flood at 450 m, channels from
    4 km² upstream, depth growing with the upstream area, V-shaped sides). The 9 km means of all
    the added detail are removed again, so block means stay those of the real DEM.
    """
    rng = np.random.default_rng([seed, 1])
    coarse, transform, crs = inputs.coarse_dem()

    def warp(a, method):
        out = np.zeros(grid.shape, "float32")
        reproject(a.astype("float32"), out, src_transform=transform, src_crs=crs, dst_transform=grid.transform,
                  dst_crs=f"EPSG:{METRIC_EPSG}", resampling=method)
        return out.astype("float64")

    base = warp(coarse, Resampling.cubic)
    lo, hi = ndimage.minimum_filter(coarse, 3), ndimage.maximum_filter(coarse, 3)
    span = np.maximum(warp(hi - lo, Resampling.bilinear), 1.0)
    relief = np.clip(span / 800.0, 0.08, 1.6)  # 1 ~ 800 m of relief around a 9 km cell
    position = np.clip((base - warp(lo, Resampling.bilinear)) / span, 0.0, 1.0)  # 0 basin floor .. 1 ridge
    cells = 1000.0 / grid.res  # cells per km
    rough = 150.0 * relief * (0.3 + 0.7 * position) * _fbm(grid.shape, rng, 12 * cells)
    lake = grid.rasterize([(inputs.lake, 1)], dtype="uint8", all_touched=True).astype(bool)

    factor = 5  # route the drainage at 450 m
    zc = _block_mean(base + rough, factor)
    down, area, filled = drainage(zc, _block_mean(lake.astype(float), factor) > 0.5)
    threshold = 4e6 / (grid.res * factor) ** 2
    # no channels across deep filled pits (they would run straight over the flat fill)
    rows, cols = np.nonzero((area >= threshold) & (down >= 0) & (filled - zc < 25.0))
    depth = np.minimum(60.0 * np.log2(area[rows, cols] / threshold + 1), 420.0)
    depth *= _block_mean(relief, factor)[rows, cols]
    drow, dcol = np.divmod(down[rows, cols], zc.shape[1])
    step = factor * grid.res
    start = np.column_stack([grid.x0 + (cols + 0.5) * step, grid.y1 - (rows + 0.5) * step])
    end = np.column_stack([grid.x0 + (dcol + 0.5) * step, grid.y1 - (drow + 0.5) * step])
    order = np.argsort(depth)  # deeper reaches burnt last, so they win where channels meet
    reaches = shapely.linestrings(np.stack([start, end], axis=1)[order])
    bed = grid.rasterize(zip(reaches, depth[order].astype(float)), fill=0.0, dtype="float32", all_touched=True)
    dist, (ir, ic) = ndimage.distance_transform_edt(bed <= 0, return_indices=True)
    valleys = ndimage.gaussian_filter(np.maximum(bed[ir, ic] - 0.45 * dist * grid.res, 0.0), 1.0)  # ~24° sides

    detail = rough - valleys
    detail -= _lowpass(detail, 20, 2.5)
    dem = base + detail
    shore = grid.rasterize([(inputs.lake.buffer(3000), 1)], dtype="uint8").astype(bool)
    dem = np.where(shore, np.maximum(dem, LAKE_LEVEL + 1 + 0.01 * np.abs(detail)), dem)
    dem[lake] = LAKE_LEVEL
    return dem.astype("float32")


def _add_gaussian(arr: np.ndarray, grid: Grid, x: float, y: float, sigma: float, mass: float) -> None:
    """Add a normalised Gaussian of total ``mass`` centred on metric (x, y), truncated at 3 sigma."""
    r, c = grid.rowcol(x, y)
    k = int(np.ceil(3 * sigma / grid.res))
    r0, r1 = max(r - k, 0), min(r + k + 1, grid.height)
    c0, c1 = max(c - k, 0), min(c + k + 1, grid.width)
    if r0 >= r1 or c0 >= c1:
        return
    cx, cy = grid.centre(np.arange(r0, r1)[:, None], np.arange(c0, c1)[None, :])
    g = np.exp(-((cx - x) ** 2 + (cy - y) ** 2) / (2 * sigma ** 2))
    arr[r0:r1, c0:c1] += mass * g / (2 * np.pi * (sigma / grid.res) ** 2)


# (kind -> mass, sigma in m) of the urban kernels.
URBAN_KERNELS = {"city": (40.0, 4000.0), "core_seat": (8.0, 2500.0), "seat": (6.0, 1500.0), "town": (1.0, 700.0),
                 "subway": (1.5, 500.0), "train": (0.5, 500.0)}


def build_population(inputs: Inputs, grid: Grid, dem: Surface) -> np.ndarray:
    """People per 100 m cell: each district's 2023 population, urban share on settlement kernels and
    rural share on habitable land (gentle, below 2600 m), nothing in Dianchi; sums equal the table."""
    districts = inputs.districts
    did = grid.rasterize([(g, i + 1) for i, g in enumerate(districts.geometry)], dtype="int16")
    lake = grid.rasterize([(inputs.lake, 1)], dtype="uint8", all_touched=True).astype(bool)
    rows, cols = np.indices(grid.shape)
    cx, cy = grid.centre(rows.ravel(), cols.ravel())
    elev = dem.sample(cx, cy).reshape(grid.shape)
    gy, gx = np.gradient(dem.array.astype("float64"), dem.grid.res)
    slope = np.degrees(np.arctan(np.hypot(gx, gy)))
    slope = dem.grid.sample(slope, cx, cy).reshape(grid.shape)
    del rows, cols, cx, cy

    urban = np.zeros(grid.shape)
    hinter = np.zeros(grid.shape)
    city = inputs.settlements[inputs.settlements.kind == "city"].geometry.iloc[0]
    for place in inputs.settlements.itertuples():
        kind = place.kind
        if kind == "seat" and place.geometry.distance(city) < 6000:
            kind = "core_seat"
        mass, sigma = URBAN_KERNELS[kind]
        _add_gaussian(urban, grid, place.geometry.x, place.geometry.y, sigma, mass)
        _add_gaussian(hinter, grid, place.geometry.x, place.geometry.y, 6000.0, 1.0)
    for st in inputs.stations.itertuples():
        mass, sigma = URBAN_KERNELS["subway" if st.station == "subway" else "train"]
        _add_gaussian(urban, grid, st.geometry.x, st.geometry.y, sigma, mass)
    habitable = (elev < 2600) * np.exp(-slope / 8.0)
    rural = habitable * (0.2 + hinter / max(hinter.max(), 1e-12))
    urban[urban < urban.max() * 1e-7] = 0.0

    pop = np.zeros(grid.shape)
    for i, d in enumerate(districts.itertuples()):
        inside = (did == i + 1) & ~lake
        total = float(d.population)
        for weight, share in ((urban, d.urban_share), (rural, 1 - d.urban_share)):
            w = np.where(inside, weight, 0.0)
            s = w.sum()
            if s <= 0:  # no kernel reaches this district: spread evenly over its land
                w, s = inside.astype(float), inside.sum()
            pop += total * share * w / s
    return pop.astype("float32")


def write_raster(path: Path, array: np.ndarray, grid: Grid, units: str, description: str) -> None:
    """Write a float32 GeoTIFF (deflate, tiled) atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    profile = dict(driver="GTiff", width=grid.width, height=grid.height, count=1, dtype="float32",
                   crs=f"EPSG:{METRIC_EPSG}", transform=grid.transform, nodata=-9999.0, compress="deflate",
                   predictor=3, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(tmp, "w", **profile) as dst:
        dst.write(array.astype("float32"), 1)
        dst.update_tags(units=units, synthetic="true", description=description)
    os.replace(tmp, path)


def read_raster(path: Path) -> tuple[np.ndarray, Grid]:
    with rasterio.open(path) as src:
        t = src.transform
        return src.read(1), Grid(t.c, t.f, t.a, src.width, src.height)


def surfaces(inputs: Inputs, out_dir: Path, seed: int, log=print) -> tuple[Surface, Surface]:
    """(dem, population): read from ``out_dir`` if built before with this seed, else built and written."""
    bounds = shapely.bounds(inputs.outline)
    result = []
    for name, res in (("dem", DEM_RES), ("population", POP_RES)):
        path = Path(out_dir) / f"kunming_{name}_{int(res)}m_seed{seed}_v{VERSION}.tif"
        if path.exists():
            array, grid = read_raster(path)
            log(f"demo: reusing {path}")
        else:
            grid = Grid.around(bounds, res)
            log(f"demo: building {name} raster {grid.width}x{grid.height} at {int(res)} m")
            if name == "dem":
                array = build_dem(inputs, grid, seed)
                write_raster(path, array, grid, "m", DEM_SOURCE)
            else:
                array = build_population(inputs, grid, result[0])
                write_raster(path, array, grid, "people per cell", POP_SOURCE)
        result.append(Surface(array, grid, path))
    return result[0], result[1]
