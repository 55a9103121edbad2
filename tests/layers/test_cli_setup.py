"""Setting riskmap up for another city (曲靖 Qujing) from the CLI: settings checked with one-line errors, the
Kunming demo kept out of another city's database, a population grid registered with `riskmap rasters add`
and the hazchem analysis run on it (ungraded installations named), a lost database reported in one line."""

from __future__ import annotations

import logging
import os
import re
import subprocess

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from sqlalchemy import text

from conftest import RISKMAP, free_port, serve, stop
from hazchem_world import X0, Y0, add, box, pt
from layers.crs import METRIC_EPSG
from layers.demo import load_demo_if_empty, why_not_demo
from layers.settings import StoreSettings

QUJING_BOX = (103.1, 24.3, 104.9, 27.1)  # 曲靖: about 102.7-104.8°E, 24.3-27.05°N (west of it is Kunming's)
QUJING_ENV = {"RISKMAP_AREA_BBOX": "[103.1,24.3,104.9,27.1]", "RISKMAP_CENTER": "[103.8,25.5]"}


def riskmap(*args: str, env: dict | None = None, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([RISKMAP, *args], env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def one_line_error(r: subprocess.CompletedProcess, code: int) -> str:
    """The stderr of a command that failed with ``code`` in one line (no traceback)."""
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def write_tif(path, people: float = 100.0, crs=f"EPSG:{METRIC_EPSG}", transform=None, n: int = 60,
              negative_cell: bool = False) -> None:
    """A grid of n x n 100 m cells centred on (X0, Y0), each holding ``people``."""
    arr = np.full((n, n), people, dtype="float32")
    if negative_cell:
        arr[3, 4] = -5
    transform = transform or from_origin(X0 - n * 50, Y0 + n * 50, 100, 100)
    with rasterio.open(path, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs=crs,
                       transform=transform, nodata=-9999) as dst:
        dst.write(arr, 1)


@pytest.fixture
def no_rasters(engine):
    """An empty ``rasters`` table for the test; the registrations of the session are put back afterwards."""
    with engine.begin() as conn:
        saved = [dict(r) for r in conn.execute(text("SELECT * FROM rasters")).mappings()]
        conn.execute(text("DELETE FROM rasters"))
    yield engine
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM rasters"))
        for row in saved:
            columns = ", ".join(row)
            conn.execute(text(f"INSERT INTO rasters ({columns}) VALUES ({', '.join(':' + k for k in row)})"), row)


@pytest.mark.parametrize("env, args, says", [
    ({"RISKMAP_AREA_BBOX": "[103.7,24.35,102.1,26.6]"}, ["db", "status"], "RISKMAP_AREA_BBOX: 区域范围应为"),
    ({"RISKMAP_CENTER": "[25.04,102.71]"}, ["serve"], "not [lat,lon]"),
    ({"RISKMAP_LOG_LEVEL": "bogus"}, ["serve"], "RISKMAP_LOG_LEVEL: 日志级别应为 / must be one of"),
    ({"RISKMAP_METRIC_EPSG": "4549"}, ["db", "status"], "does not cover the area box"),  # CM 120°E for Kunming
    ({"RISKMAP_METRIC_EPSG": "4326"}, ["db", "status"], "not a Transverse Mercator CRS"),
])
def test_bad_settings_are_one_line_and_exit_2(tmp_path, env, args, says):
    r = riskmap(*args, env={"RISKMAP_DATA_DIR": str(tmp_path), **env}, cwd=tmp_path)
    assert says in one_line_error(r, 2) and "设置有误 / bad setting" in r.stderr


def test_a_comma_list_box_is_read_and_a_zone_covering_part_of_it_warns(tmp_path):
    # 曲靖 with Kunming's zone (EPSG:4543, 100.5-103.5°E): the box reaches 104.9 - 103.5 = 1.4° beyond it
    r = riskmap("db", "status", env={"RISKMAP_DATA_DIR": str(tmp_path), "RISKMAP_AREA_BBOX": "103.1,24.3,104.9,27.1"},
                cwd=tmp_path)
    assert r.returncode == 0 and "not initialised" in r.stdout
    assert "reaches 1.4° beyond the zone of RISKMAP_METRIC_EPSG=4543" in r.stderr and "EPSG:4544" in r.stderr


def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path):
    env = {"DATABASE_URL": f"postgresql://riskmap:x@127.0.0.1:{free_port()}/riskmap"}
    for args in (["users", "list"], ["analyze", "hazchem"]):
        assert "database unavailable" in one_line_error(riskmap(*args, env=env, cwd=tmp_path), 1)


def version(engine, layer: str):
    with engine.connect() as conn:
        return conn.execute(text("SELECT version FROM layer_versions WHERE layer = :l"), {"l": layer}).scalar()


def test_the_demo_loads_only_into_an_empty_database_whose_box_contains_kunming(clean, no_rasters, caplog):
    qujing = StoreSettings(database_url=None, area_bbox=QUJING_BOX)
    with clean.connect() as conn:
        level, line = why_not_demo(conn, qujing)
        assert level == logging.WARNING and "RISKMAP_AREA_BBOX=[103.1, 24.3, 104.9, 27.1]" in line
        assert "--no-demo" in line and "riskmap import" in line and "未载入昆明演示数据" in line
        assert why_not_demo(conn, StoreSettings(database_url=None)) is None  # empty, Kunming's box: load it
    with clean.begin() as conn:
        add(conn, "receptors", pt(0, 0), name="曲靖一中", kind="school", people=900)
    before = version(clean, "admin_areas")
    with clean.connect() as conn:  # the operator's data is never replaced, whatever the box
        level, line = why_not_demo(conn, StoreSettings(database_url=None))
    assert level == logging.INFO and "the database holds data (receptors)" in line
    with caplog.at_level(logging.INFO, logger="riskmap.demo"):
        assert load_demo_if_empty(clean, qujing) is False
    assert [r.getMessage() for r in caplog.records if r.name == "riskmap.demo"] == [line]
    with clean.connect() as conn:
        assert conn.execute(text("SELECT name FROM receptors")).scalars().all() == ["曲靖一中"]
    assert version(clean, "admin_areas") == before  # nothing written


def test_serve_on_another_citys_database_says_once_why_there_is_no_demo(db_url, clean):
    port = free_port()
    proc = serve({**os.environ, "DATABASE_URL": db_url, **QUJING_ENV}, port)
    out = stop(proc)
    assert out.count("Kunming demo not loaded") == 1 and "--no-demo" in out, out
    assert "Traceback" not in out


def test_a_population_grid_added_from_the_cli_is_what_hazchem_counts(db_url, clean, no_rasters, tmp_path):
    env = {"DATABASE_URL": db_url}
    assert "no raster registered" in riskmap("rasters", env=env).stdout
    with clean.begin() as conn:
        a = add(conn, "hazard_installations", box(0, 0, 100, 100), name="A 液氯库", unit_type="storage",
                chemicals=[{"name": "液氯", "quantity_t": 25}])
        for i in range(21):  # a substance neither in Table 1 nor given a class: not gradable
            add(conn, "hazard_installations", box(2000 + 200 * i, 2000, 2100 + 200 * i, 2100), name=f"U{i + 1}",
                chemicals=[{"name": "神秘化合物", "quantity_t": 10}])
    r = riskmap("analyze", "hazchem", env=env)
    assert "未登记人口栅格" in one_line_error(r, 2) and "no 'population' raster is registered" in r.stderr

    write_tif(tmp_path / "qujing_pop.tif")  # 100 people in each 100 m cell
    r = riskmap("rasters", "add", "population", str(tmp_path / "qujing_pop.tif"), "--source", "test grid", env=env)
    assert r.returncode == 0 and "registered raster population" in r.stdout, r.stderr
    listed = riskmap("rasters", env=env).stdout.split()
    assert listed[:7] == ["population", f"EPSG:{METRIC_EPSG}", "60x60", "cells", "of", "100", "m"]
    assert listed[7:] == ["real", str(tmp_path / "qujing_pop.tif")]

    r = riskmap("analyze", "hazchem", env=env)
    assert r.returncode == 0 and "ungraded=21" in r.stdout, r.stderr
    named = [line for line in r.stdout.splitlines() if line.startswith("  #")]
    assert len(named) == 20 and named[0].startswith(f"  #{a + 1} U1: ") and "神秘化合物" in named[0]
    assert "21 installations not graded" in r.stdout and "… 另有 1 个 / 1 more" in r.stdout
    with clean.connect() as conn:
        g = conn.execute(text("SELECT alpha, level, population FROM installation_gradings "
                              "WHERE installation_id = :a"), {"a": a}).one()
    # zone = the 100 m square grown by 500 m, minus the square: 4 x 100 x 500 + π 500² = 985 398 m²
    # (the buffer's 64-gon: 984 134 m²) at 100 people a hectare -> 9 841 people; α 2.0 (≥ 100),
    # R = 2.0 x β 4 x 25 t / 5 t = 40 -> 三级 (10 ≤ R < 50)
    assert g.population["grid_people"] == pytest.approx(9841.3, abs=1)
    assert (g.alpha, g.level) == (2.0, 3) and g.population["raster_synthetic"] is False


@pytest.mark.parametrize("case, says", [
    ("not a raster", "cannot open"),
    ("no CRS", "has no CRS"),
    ("far away", "outside the area box"),
    ("negative", "negative people in 1 cells"),
    ("landuse", "unknown raster kind 'landuse'"),
])
def test_rasters_add_refuses_what_the_analyses_cannot_use(db_url, no_rasters, tmp_path, case, says):
    path, kind = tmp_path / "grid.tif", "population"
    if case == "not a raster":
        path.write_text("lon,lat,people\n103.8,25.5,100\n")
    elif case == "no CRS":
        write_tif(path, crs=None)
    elif case == "far away":  # Beijing
        write_tif(path, crs="EPSG:4326", transform=from_origin(116.0, 40.0, 0.001, 0.001))
    else:
        write_tif(path, negative_cell=case == "negative")
        kind = case if case == "landuse" else kind
    r = riskmap("rasters", "add", kind, str(path), env={"DATABASE_URL": db_url})
    assert says in one_line_error(r, 2)
    with no_rasters.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM rasters")).scalar_one() == 0


def test_users_add_says_when_an_existing_users_role_changes(db_url, clean):
    env = {"DATABASE_URL": db_url}
    assert "changed" not in riskmap("users", "add", "li", "--role", "planner", env=env).stdout
    r = riskmap("users", "add", "li", "--role", "admin", env=env)
    assert "role of li changed: planner → admin" in r.stdout and "角色已更改" in r.stdout
    assert "changed" not in riskmap("users", "add", "li", "--role", "admin", env=env).stdout
    # the list lines up under a long name and says when each user was made
    riskmap("users", "add", "a.very.long.gateway.name", "--role", "gateway", env=env)
    riskmap("users", "remove", "li", env=env)
    lines = riskmap("users", "list", env=env).stdout.splitlines()
    assert lines[0].split() == ["name", "role", "state", "created", "(UTC+8)"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["li"].split()[1:3] == ["admin", "revoked"] and rows["a.very.long.gateway.name"].split()[1:3] == [
        "gateway", "active"]
    assert len({line.index(" admin ") if " admin " in line else line.index(" gateway ") for line in lines[1:]}) == 1
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d$", rows["li"])


def test_help_shows_no_bool_types_and_explains_users_add():
    assert "<bool>" not in riskmap("serve", "--help").stdout
    assert "NAME <str>  user name" in riskmap("users", "add", "--help").stdout
