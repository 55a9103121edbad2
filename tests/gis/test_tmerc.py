"""The compiled Gauss-Krüger projection (gis.tmerc) against PROJ (pyproj) on the same CRS."""

import doctest

import numpy as np
import pytest
from pyproj import Transformer

from gis import tmerc
from layers.crs import METRIC_EPSG

PROJ = Transformer.from_crs(4326, METRIC_EPSG, always_xy=True)


@pytest.mark.parametrize("lon, lat", [
    ((101.5, 104.0), (24.0, 27.0)),    # Kunming and around
    ((73.0, 135.0), (3.0, 54.0)),      # China, up to 33° from the central meridian
    ((101.0, 103.0), (-85.0, 85.0)),   # near the meridian, pole to pole
])
def test_agrees_with_proj(lon, lat):
    rng = np.random.default_rng(7)
    ll = np.column_stack([rng.uniform(*lon, 20000), rng.uniform(*lat, 20000)])
    expected = np.column_stack(PROJ.transform(ll[:, 0], ll[:, 1]))
    assert np.abs(tmerc.project(ll) - expected).max() < 1e-6  # metres


def test_poles_and_far_meridians():
    # (no division by zero at the poles, or 90° from the central meridian on the equator)
    ll = np.array([[102.0, 90.0], [102.0, -90.0], [100.0, 89.9999999], [12.0, 0.0], [-150.0, 10.0]])
    expected = np.column_stack(PROJ.transform(ll[:, 0], ll[:, 1]))
    got = tmerc.project(ll)
    assert np.abs(got[:3] - expected[:3]).max() < 1e-6
    assert np.isfinite(got).all()


def test_origin_and_doctest():
    # the natural origin (102°E on the equator) is the false easting, 0 northing; the scale there is 1,
    # so a short step east along the equator is its length on the ellipsoid (a·Δλ)
    xy = tmerc.project(np.array([[102.0, 0.0], [102.0001, 0.0]]))
    assert xy[0].tolist() == pytest.approx([500000.0, 0.0], abs=1e-9)
    assert xy[1, 0] - xy[0, 0] == pytest.approx(6378137.0 * np.radians(0.0001), rel=1e-9)
    assert doctest.testmod(tmerc).failed == 0


def test_refuses_other_projections():
    with pytest.raises(ValueError, match="not a Transverse Mercator"):
        tmerc._parameters(3857)
