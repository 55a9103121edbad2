"""Hazchem analyses on the demo at x1, x10 and x100 (the demo generator's ``scale``), in one run on
the same data per scale:

* safety-distance violations: our PostGIS statement (``gis.hazchem.find_violations``) against a
  GeoPandas baseline (read the layers, reproject, ``sjoin(predicate="dwithin")`` with each
  installation's reach, exact distances, rule filter); both must find the same pairs;
* ring sums: ours (``gis.raster.zonal_sum``, exactextract underneath) against the ``exactextract``
  and ``rasterstats`` packages' zonal sums on the same ring polygons;
* the whole ``riskmap analyze hazchem`` run, per installation, to see how cost grows.

    .venv/bin/python -m bench.hazchem [--scales 1,10,100] [--parts violations,rings,run]

Starts its own throwaway cluster, loads the layers the analysis reads from ``layers.demo.build_demo``
(parks, enterprises, installations, receptors, accidents, the population grid), runs the analysis
once (every part needs its results) and writes bench/results/hazchem.md; with only some ``--parts``
(e.g. ``--parts violations``, a few minutes at x100 instead of half an hour) it writes
bench/results/hazchem-<parts>.md instead, so the full table stays the last full run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from exactextract import exact_extract
from rasterstats import zonal_stats
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert as pg_insert

from bench.common import markdown_table, throwaway_cluster, write_result
from gis import hazchem
from layers import models, registry
from layers.crs import METRIC_EPSG
from layers.db import make_engine, migrate
from layers.demo import build_demo
from layers.io import validate, write
from layers.settings import StoreSettings

LAYERS = ("chemical_parks", "enterprises", "hazard_installations", "receptors", "accidents")
REPEAT = 3
PARTS = ("violations", "rings", "run")
TITLES = {"violations": "violations", "rings": "ring sums", "run": "whole run"}


def load(engine, store: StoreSettings, scale: int) -> dict:
    """The hazchem inputs of the demo at ``scale``, validated and written like an import."""
    demo = build_demo(store, scale)
    counts = {}
    with engine.begin() as conn:
        for layer in LAYERS:
            spec = registry.get(layer)
            records, rejections, _ = validate(spec, demo.layers[layer], store.area_bbox)
            counts[layer] = write(conn, spec, records)
            counts[f"{layer}_rejected"] = len(rejections)
        table = models.Raster.__table__
        for row in demo.rasters:
            stmt = pg_insert(table).values(**row)
            conn.execute(stmt.on_conflict_do_update(index_elements=[table.c.name],
                                                    set_={k: stmt.excluded[k] for k in row if k != "name"}))
        conn.execute(text("ANALYZE"))
    return counts


def best(fn, repeat: int = REPEAT) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def postgis_violations(engine, config) -> tuple[float, float, set]:
    """Median times of our statement as a SELECT of the pairs (what the baseline computes) and as
    the analysis runs it (INSERT of the layer rows with their shortest lines, rolled back)."""
    select_s, insert_s = [], []
    pairs_sql = f"SELECT installation_id, receptor_id FROM ({hazchem.conflicts_sql()}) c"
    for _ in range(REPEAT):
        with engine.connect() as conn, conn.begin() as tx:
            hazchem.no_jit(conn)
            t0 = time.perf_counter()
            pairs = set(conn.execute(text(pairs_sql), config.class_params()).all())
            select_s.append(time.perf_counter() - t0)
            run_id = conn.execute(text("SELECT max(id) FROM analysis_runs")).scalar_one()
            conn.execute(text("DELETE FROM safety_violations"))
            t0 = time.perf_counter()
            hazchem.find_violations(conn, run_id, config)
            insert_s.append(time.perf_counter() - t0)
            tx.rollback()
    return statistics.median(select_s), statistics.median(insert_s), pairs


def steps(engine, raster, config) -> dict:
    """Seconds of each step of the run (one transaction, rolled back)."""
    out = {}
    with engine.connect() as conn, conn.begin() as tx:
        hazchem.no_jit(conn)
        run_id = conn.execute(text("SELECT max(id) FROM analysis_runs")).scalar_one()
        for table in hazchem.DERIVED:
            conn.execute(text(f"DELETE FROM {table}"))
        for name, fn in (("grading", lambda: hazchem.grade_installations(conn, run_id, raster, config)),
                         ("violations", lambda: hazchem.find_violations(conn, run_id, config)),
                         ("rings", lambda: hazchem.exposure_rings(conn, run_id, raster, config)),
                         ("risk grades", lambda: hazchem.risk_grades(conn, run_id, config))):
            t0 = time.perf_counter()
            fn()
            out[name] = time.perf_counter() - t0
        reach = config.rings_m[-1]
        out["pairs_5km"] = conn.execute(text(
            f"SELECT count(*) FROM ({hazchem._SUBJECTS_SQL}) s CROSS JOIN LATERAL (SELECT 1 FROM receptors r "
            f"WHERE ST_DWithin(r.geom_m, s.g, {reach}) OFFSET 0) p")).scalar_one()
        tx.rollback()
    return out


def gpd_read(engine):
    """Baseline step 1: the layers (their EPSG:4326 geometry) from PostGIS into GeoDataFrames."""
    with engine.connect() as conn:
        inst = gpd.read_postgis(
            "SELECT h.id, h.level, coalesce(g.kinds, '{}') AS kinds, h.geom FROM hazard_installations h "
            "LEFT JOIN installation_gradings g ON g.installation_id = h.id", conn, geom_col="geom", crs=4326)
        rec = gpd.read_postgis("SELECT id, kind, people, protection_class, geom FROM receptors", conn,
                               geom_col="geom", crs=4326)
        rules = pd.read_sql("SELECT installation_kind, level, receptor_class, distance_m FROM safety_rules", conn)
    return inst, rec, rules


def gpd_to_metric(inst, rec):
    """Baseline step 2: both layers to the metric CRS."""
    return inst.to_crs(METRIC_EPSG), rec.to_crs(METRIC_EPSG)


def gpd_violations(inst, rec, rules, config) -> set:
    """Baseline step 3: required distance per (installation, class), sjoin dwithin, exact filter."""
    cls = rec["protection_class"].copy()
    missing = cls.isna()
    if missing.any():  # the same class rule as CLASS_SQL
        k, p = rec.loc[missing, "kind"], rec.loc[missing, "people"].fillna(0)
        cls[missing] = np.select([k.isin(config.high_sensitive_kinds), k.isin(config.important_kinds),
                                  p >= config.general_1_min_people, p >= config.general_2_min_people],
                                 ["high_sensitive", "important", "general_1", "general_2"], "general_3")
    rec = rec.assign(pclass=cls)
    kinds = inst[["id", "level", "kinds"]].assign(kind=inst["kinds"].map(lambda k: ["any", *k])).explode("kind")
    m = kinds.merge(rules, left_on="kind", right_on="installation_kind")
    m = m[m["level_y"].isna() | (m["level_y"] == m["level_x"])]
    req = m.groupby(["id", "receptor_class"], as_index=False)["distance_m"].max()
    reach = req.groupby("id")["distance_m"].max()
    left = inst[inst["id"].isin(reach.index)].set_index("id")
    left = left.assign(reach=reach.reindex(left.index).to_numpy()).reset_index()
    pairs = gpd.sjoin(left[["id", "reach", "geom"]], rec[["id", "pclass", "geom"]], predicate="dwithin",
                      distance=left["reach"].to_numpy(), lsuffix="i", rsuffix="r")
    pairs = pairs.merge(req, left_on=["id_i", "pclass"], right_on=["id", "receptor_class"])
    dist = shapely.distance(left.set_index("id").geometry.loc[pairs["id_i"]].to_numpy(),
                            rec.set_index("id").geometry.loc[pairs["id_r"]].to_numpy())
    hit = pairs[dist < pairs["distance_m"].to_numpy()]
    return set(zip(hit["id_i"].astype(int), hit["id_r"].astype(int)))


def ring_sums(engine, raster) -> dict:
    with engine.connect() as conn:
        rows = conn.execute(text(f"SELECT ST_AsBinary(ST_Transform(geom, {METRIC_EPSG})) FROM exposure_rings "
                                 "ORDER BY subject_layer, subject_id, outer_m")).scalars().all()
    rings = shapely.from_wkb(rows)
    frame = gpd.GeoDataFrame(geometry=rings, crs=METRIC_EPSG)
    t_ours, t_ee = [], []
    for _ in range(2):  # alternate, keep the best of each: the first pass also warms the file cache
        t_e, ee = best(lambda: exact_extract(str(raster), frame, "sum", output="pandas")["sum"].to_numpy(), 1)
        t_o, ours = best(lambda: hazchem.people_in(raster, rings), 1)
        t_ee.append(t_e)
        t_ours.append(t_o)
    t_ours, t_ee = min(t_ours), min(t_ee)
    n_rs = min(len(rings), 8000)  # rasterstats is slow: a prefix of the rings, timed and scaled
    t_rs, rs = best(lambda: np.array([s["sum"] or 0.0 for s in zonal_stats(list(rings[:n_rs]), str(raster),
                                                                            stats=["sum"])]), 1)
    big = ee > 50  # relative differences on rings with people
    return {
        "rings": len(rings), "ours_s": t_ours, "ee_s": t_ee, "rs_s": t_rs * len(rings) / n_rs, "rs_sampled": n_rs,
        "ours_vs_ee": float(np.max(np.abs(ours[big] - ee[big]) / ee[big])) if big.any() else 0.0,
        "rs_vs_ee": float(np.median(np.abs(rs[big[:n_rs]] - ee[:n_rs][big[:n_rs]]) / ee[:n_rs][big[:n_rs]]))
        if big[:n_rs].any() else 0.0,
    }


def bench_scale(scale: int, parts: tuple[str, ...] = PARTS) -> dict:
    cluster = throwaway_cluster()
    try:
        url = cluster.url()
        migrate(url)
        engine = make_engine(url, pool_size=2)
        store = StoreSettings(database_url=None)
        t0 = time.perf_counter()
        counts = load(engine, store, scale)
        out = {"scale": scale, "counts": counts, "load_s": time.perf_counter() - t0}
        # every part reads the run's results (gradings, rings); it is timed only for the "run" part
        out["run_s"], out["stats"] = best(lambda: hazchem.run(engine, store), 2 if "run" in parts else 1)
        config = hazchem.load_config()
        with engine.connect() as conn:
            raster = hazchem.population_raster(conn)
        if "violations" in parts:
            t_pg, t_pg_insert, pg_pairs = postgis_violations(engine, config)
            t_read, (inst, rec, rules) = best(lambda: gpd_read(engine))
            t_crs, (inst, rec) = best(lambda: gpd_to_metric(inst, rec))
            t_gpd, gpd_pairs = best(lambda: gpd_violations(inst, rec, rules, config))
            out.update(pg_s=t_pg, pg_insert_s=t_pg_insert, gpd_read_s=t_read, gpd_crs_s=t_crs,
                       gpd_load_s=t_read + t_crs, gpd_s=t_gpd, violations=len(pg_pairs),
                       same_pairs=pg_pairs == gpd_pairs)
        if "rings" in parts:
            out.update(ring_sums(engine, raster))
        if "run" in parts:
            out["steps"] = steps(engine, raster, config)
        engine.dispose()
        return out
    finally:
        cluster.destroy()


def report(results: list[dict], parts: tuple[str, ...] = PARTS) -> str:
    ms = lambda s: round(s * 1000, 1)  # noqa: E731
    last, first = results[-1], results[0]
    sections, goals = [], []
    if "violations" in parts:
        viol = markdown_table(
            ["data", "installations", "receptors", "violations", "PostGIS pairs ms", "PostGIS layer rows ms",
             "GeoPandas sjoin ms", "GeoPandas incl. loading ms", "of which to_crs ms", "speed-up vs sjoin",
             "speed-up vs loading+sjoin", "same pairs"],
            [[f"x{r['scale']}", r["counts"]["hazard_installations"], r["counts"]["receptors"], r["violations"],
              ms(r["pg_s"]), ms(r["pg_insert_s"]), ms(r["gpd_s"]), ms(r["gpd_s"] + r["gpd_load_s"]), ms(r["gpd_crs_s"]),
              f"{r['gpd_s'] / r['pg_s']:.2f}x", f"{(r['gpd_s'] + r['gpd_load_s']) / r['pg_s']:.2f}x",
              "yes" if r["same_pairs"] else "NO"] for r in results])
        sections.append(
            "## Safety-distance violations: PostGIS vs GeoPandas\n\n"
            "Columns. *PostGIS pairs*: the statement of `gis.hazchem.find_violations` as a SELECT of the "
            "(installation, receptor) pairs, fetched by the client (rule matching per (kinds, level), a probe of "
            "the SP-GiST index on the receptors' stored metric points `geom_m` per installation, exact "
            "polygon-to-point distances). *PostGIS layer rows*: the statement as the analysis runs it, an INSERT "
            "of every violation with names, distances, rule, basis and its shortest line (back in EPSG:4326) into "
            "`safety_violations`, whose four indexes (GiST on the line) and run foreign key are maintained row by "
            "row; rolled back. *GeoPandas sjoin*: the same rules in pandas, `sjoin(predicate='dwithin', "
            "distance=reach per installation)`, `shapely.distance`, filter, on frames already in memory and in the "
            "metric CRS. *incl. loading*: adds `read_postgis` of the two layers' EPSG:4326 geometry and "
            "`to_crs(METRIC_EPSG)`, which a GeoPandas workflow pays because the layers live in PostGIS; *of which "
            "to_crs* is the reprojection alone (a workflow reading the stored `geom_m` instead would save it). "
            f"Speed-ups are GeoPandas time / PostGIS pairs time. Each time is the median of {REPEAT} runs.\n\n"
            + viol)
        ratio = (last["gpd_s"] + last["gpd_load_s"]) / last["pg_s"]
        goals.append(
            f"- Violations, x{last['scale']}: PostGIS {last['gpd_s'] / last['pg_s']:.2f}x the in-memory GeoPandas "
            f"sjoin, {ratio:.2f}x the GeoPandas workflow with its loading (goal >= 5x): "
            f"{'met' if ratio >= 5 else 'NOT met'}.")
    if "rings" in parts:
        rings = markdown_table(
            ["data", "rings", "ours ms", "exactextract ms", "rasterstats ms", "ours / exactextract",
             "max rel. diff ours vs exactextract", "median rel. diff rasterstats vs exactextract"],
            [[f"x{r['scale']}", r["rings"], ms(r["ours_s"]), ms(r["ee_s"]),
              f"{ms(r['rs_s'])}" + ("" if r["rs_sampled"] == r["rings"] else f" (from {r['rs_sampled']} rings)"),
              f"{r['ours_s'] / r['ee_s']:.2f}", f"{r['ours_vs_ee']:.2e}", f"{r['rs_vs_ee']:.2%}"] for r in results])
        sections.append(
            "## Ring sums: ours vs exactextract vs rasterstats (same rings)\n\n"
            "Ours is `gis.raster.zonal_sum` (exactextract on the ring GeoDataFrame, reprojection check included). "
            "rasterstats counts whole cells whose centre is in the ring (no area weighting), hence its difference. "
            "Best of two alternated runs (one for rasterstats).\n\n" + rings)
        goals.append(
            f"- Ring sums: ours / exactextract = {max(r['ours_s'] / r['ee_s'] for r in results):.2f} at worst (ours "
            "is exactextract, so differences are timing noise), max relative difference "
            f"{max(r['ours_vs_ee'] for r in results):.1e} (goal: within 0.5 %).")
    if "run" in parts:
        run = markdown_table(
            ["data", "installations", "parks", "enterprises", "receptors within 5 km of a subject", "whole run s",
             "grading s", "violations s", "rings s", "risk grades s", "ms per installation",
             "µs per subject-receptor pair", "load s"],
            [[f"x{r['scale']}", r["counts"]["hazard_installations"], r["counts"]["chemical_parks"],
              r["counts"]["enterprises"], r["steps"]["pairs_5km"], round(r["run_s"], 2),
              *(round(r["steps"][k], 2) for k in ("grading", "violations", "rings", "risk grades")),
              round(r["run_s"] * 1000 / r["counts"]["hazard_installations"], 2),
              round(r["run_s"] * 1e6 / max(r["steps"]["pairs_5km"], 1), 2), round(r["load_s"], 1)] for r in results])
        sections.append("## Whole `riskmap analyze hazchem` run and its steps\n\n"
                        "Median of two whole runs, one for its steps.\n\n" + run)
        per_inst = [r["run_s"] / r["counts"]["hazard_installations"] for r in results]
        growth = ((last["steps"]["pairs_5km"] / last["counts"]["hazard_installations"])
                  / max(first["steps"]["pairs_5km"] / first["counts"]["hazard_installations"], 1e-9))
        goals.append(
            f"- Whole run per installation: {' -> '.join(f'{1000 * v:.1f} ms' for v in per_inst)} from "
            f"x{first['scale']} to x{last['scale']} while subject-receptor pairs per installation grew {growth:.0f}x "
            "(goal: cost no faster than linear in installations).")
    return (
        "Same data per scale (demo generator, `layers.demo.build_demo(scale)`: installations, receptors and "
        "accidents all grow with the scale).\n\n" + "\n\n".join(sections)
        + "\n\n## Goals\n\n" + "\n".join(goals) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,10,100")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    args = parser.parse_args()
    parts = tuple(p for p in PARTS if p in args.parts.split(","))
    if not parts:
        parser.error(f"--parts: choose among {', '.join(PARTS)}")
    results = []
    for scale in (int(s) for s in args.scales.split(",")):
        r = bench_scale(scale, parts)
        line = [f"x{scale}: run {r['run_s']:.2f} s"]
        if "violations" in parts:
            line.append(f"{r['violations']} violations, PostGIS {r['pg_s']*1000:.0f} ms (layer rows "
                        f"{r['pg_insert_s']*1000:.0f} ms), GeoPandas {r['gpd_s']*1000:.0f} ms "
                        f"(+{r['gpd_load_s']*1000:.0f} ms loading), same pairs: {r['same_pairs']}")
        if "rings" in parts:
            line.append(f"rings {r['rings']}: ours {r['ours_s']:.2f} s, exactextract {r['ee_s']:.2f} s, "
                        f"rasterstats {r['rs_s']:.2f} s")
        print("; ".join(line), flush=True)
        results.append(r)
    body = report(results, parts)
    print(body)
    name = "hazchem" if parts == PARTS else "hazchem-" + "-".join(parts)
    path = write_result(name, "Hazchem analyses: " + ", ".join(TITLES[p] for p in parts) + " (issue #5)", body)
    print(f"written {path}")


if __name__ == "__main__":
    main()
