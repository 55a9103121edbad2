"""The ``riskmap`` command line: serve, database, import/export, users, rasters.

Whatever the command, a bad setting ends it with one line and exit code 2, and a database that cannot be
reached (or is lost mid-command) with one line and exit code 1 (:class:`RiskmapCLI`), not a traceback.
"""

from __future__ import annotations

import gc
import logging
import logging.handlers
import queue
import signal
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

import psycopg
import typer
from pydantic import ValidationError
from pydantic_settings import SettingsError
from sqlalchemy import exc as sa_exc, text
from sqlalchemy.engine import Engine

try:
    import layers.crs  # noqa: F401  (reads RISKMAP_METRIC_EPSG, refusing a CRS that is not Transverse Mercator)
except ValueError as exc:
    typer.echo(f"error: 设置有误 / bad setting: {exc}", err=True)
    sys.exit(2)
from layers import registry
from layers.db import make_engine, migrate, resolve_url
from layers.embedded import EmbeddedClusterError
from layers.errors import ConfigError, DataError, ImportRejected
from layers.settings import StoreSettings


def _unreachable(error: BaseException) -> bool:
    """Whether a database error means the server cannot be reached or the connection was lost (refused,
    closed, shut down: SQLSTATE class 08 or 57P0x, or none), not a statement that failed."""
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    orig = getattr(error, "orig", error)
    return isinstance(orig, psycopg.InterfaceError) or (isinstance(orig, psycopg.OperationalError) and (
        orig.sqlstate is None or orig.sqlstate.startswith("08") or orig.sqlstate in ("57P01", "57P02", "57P03")))


def _setting_errors(error: ValidationError) -> str:
    """A settings ValidationError as one line: ``RISKMAP_NAME: message; ...``."""
    return "; ".join((f"RISKMAP_{e['loc'][0]}".upper() + ": " if e["loc"] else "")
                     + e["msg"].removeprefix("Value error, ") for e in error.errors())


class RiskmapCLI(typer.Typer):
    """The ``riskmap`` entry point (pyproject ``api.cli:app``): turns a bad setting (exit 2) and an unreachable
    database (exit 1) into one line, for every command at once."""

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except SettingsError as error:
            typer.echo(f"error: 设置有误 / bad setting: {error}", err=True)
        except ValidationError as error:
            if not error.title.endswith(("Settings", "Setting")):
                raise
            typer.echo(f"error: 设置有误 / bad setting: {_setting_errors(error)}", err=True)
        except (sa_exc.DBAPIError, psycopg.Error) as error:
            if not _unreachable(error):
                raise
            detail = str(getattr(error, "orig", error)).strip().splitlines()[0]
            typer.echo("error: 数据库不可用（无法连接或连接中断），未完成的操作未写入任何内容 / database unavailable (cannot "
                       f"connect, or the connection was lost): nothing of the unfinished step was written ({detail})",
                       err=True)
            sys.exit(1)
        sys.exit(2)


# Plain help (rich_markup_mode None): flags without a `<bool>` type, copyable text.
app = RiskmapCLI(help="riskmap: 危险化学品安全风险一张图 / hazardous-chemicals safety risk one-map server.",
                 no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
users_app = typer.Typer(help="API users and their tokens.", no_args_is_help=True, rich_markup_mode=None)
db_app = typer.Typer(help="The embedded PostgreSQL/PostGIS cluster.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(users_app, name="users")
app.add_typer(db_app, name="db")


def said(error: Exception) -> str:
    """An error's message in Chinese and English when it has both (``layers.errors.Bilingual``)."""
    return f"{error.zh} / {error}" if getattr(error, "zh", None) else str(error)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def writable(out: Path) -> None:
    """Fail (before any work) when the folder of an output file does not exist."""
    if not out.parent.is_dir():
        fail(f"no folder {out.parent} to write {out.name} in")


@contextmanager
def database(store: StoreSettings | None = None) -> Iterator[tuple[str, Engine]]:
    """URL and engine for a CLI command: DATABASE_URL, or the embedded cluster (started for the
    command and stopped after it unless it was already running, e.g. under ``riskmap serve``)."""
    store = store or StoreSettings()
    try:
        url, cluster, started = resolve_url(store)
    except EmbeddedClusterError as exc:
        fail(str(exc))
    engine = make_engine(url, pool_size=2)
    try:
        try:
            migrate(url)
        except ConfigError as exc:
            fail(str(exc))
        yield url, engine
    finally:
        engine.dispose()
        if started:
            cluster.stop()


def _warm_up() -> None:
    """In the background while the server starts: the compiled searches and route checks made ready
    (numba compiles them in ~8 s on a fresh install, else reads its cache in ~0.2 s), then the objects
    made so far (modules, the app) left out of the garbage collector's full passes (``gc.freeze``: such
    a pass took ~0.12 s here, a pause in whichever request set it off)."""
    from gis import roadgraph, routing

    try:
        roadgraph.warm_up()
        routing.warm_up()
    except Exception:  # noqa: BLE001  (then the first plan or check compiles them)
        logging.getLogger("riskmap").exception("warm-up of the compiled routing failed")
    gc.collect()
    gc.freeze()


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, metavar="ADDRESS",
                                       help="bind address (default RISKMAP_HOST or 127.0.0.1)"),
    port: Optional[int] = typer.Option(None, metavar="PORT", help="port (default RISKMAP_PORT or 8000)"),
    demo: bool = typer.Option(True, help="load the Kunming demo into a database with no data at all, when the area "
                                         "box (RISKMAP_AREA_BBOX) contains Kunming; --no-demo: never"),
) -> None:
    """Run the server (starts the embedded cluster unless DATABASE_URL is set; Ctrl-C stops both)."""
    import uvicorn

    from api.app import create_app
    from api.httpserver import HttpProtocol
    from api.settings import ApiSettings

    store = StoreSettings()  # (before ApiSettings, which checks its centre against the store's area box)
    settings = ApiSettings()
    # Log lines are written by a thread of their own: the event loop only queues them, so a slow or full
    # stderr (a pipe nobody reads) never stops the server (it did: at 64 KiB of access log, blocked in a write).
    lines: queue.SimpleQueue = queue.SimpleQueue()
    stderr = logging.StreamHandler()
    stderr.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    writer = logging.handlers.QueueListener(lines, stderr)
    queued = logging.handlers.QueueHandler(lines)
    queued.setFormatter(logging.Formatter("%(message)s"))  # (the writer's format adds time, level and name once)
    logging.basicConfig(level=settings.log_level.upper(), handlers=[queued])
    writer.start()
    try:
        url, cluster, started = resolve_url(store)
    except EmbeddedClusterError as exc:
        fail(str(exc))
    # A service manager's SIGTERM: uvicorn shuts down gracefully, then raises the signal again under the
    # handler found before it. This one makes that an exit through the `finally` below, which stops the
    # embedded cluster (the default action would end the process there and leave the cluster running).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        try:
            migrate(url)
        except ConfigError as exc:
            fail(str(exc))
        if demo:
            from gis.analyses import ANALYSES
            from layers.demo import load_demo_if_empty

            engine = make_engine(url, pool_size=2)
            try:
                if load_demo_if_empty(engine, store):
                    run_analyses(engine, store, list(ANALYSES))  # the demo's derived layers
            finally:
                engine.dispose()
        where = "embedded cluster " + str(store.cluster_dir) if cluster else "DATABASE_URL"
        typer.echo(f"riskmap: database = {where}; serving http://{host or settings.host}:{port or settings.port}/")
        threading.Thread(target=_warm_up, name="riskmap-warm-up", daemon=True).start()
        uvicorn.run(create_app(url, settings, store), host=host or settings.host, port=port or settings.port,
                    log_level=settings.log_level.lower(), access_log=False, http=HttpProtocol)
    finally:
        writer.stop()  # (writes what is queued)
        if started:
            typer.echo("riskmap: stopping the embedded cluster")
            cluster.stop()


@app.command("migrate")
def migrate_cmd() -> None:
    """Create or upgrade the schema (Alembic migrations)."""
    with database():
        typer.echo("schema is up to date")


@app.command("import")
def import_cmd(
    layer: str = typer.Argument(..., help="layer id (see `riskmap layers`)"),
    file: Path = typer.Argument(..., help="GeoJSON, GeoPackage, zipped Shapefile or CSV (lon/lat or WKT)"),
    source_crs: Optional[str] = typer.Option(None, "--source-crs", help="EPSG code, GCJ-02 or BD-09"),
    replace: bool = typer.Option(False, help="replace the layer's contents instead of appending"),
    discard_history: bool = typer.Option(
        False, "--discard-history",
        help="with --replace: replace the layer even though other tables keep history of its rows (a sensor's "
             "readings and state go with it, its alarms then name no sensor); without it such a replace is refused "
             "with what would be lost"),
    make_valid: bool = typer.Option(
        False, help="repair invalid geometries (shapely make_valid, keeping the union of the parts) instead of "
                    "rejecting them; each repaired row is listed with how its area changed"),
    source_layer: Optional[str] = typer.Option(
        None, "--source-layer", metavar="NAME",
        help="the layer of FILE to import when it holds several (a GeoPackage); without it such a file is "
             "refused with the names of its layers (`ogrinfo FILE` lists them too)"),
    encoding: Optional[str] = typer.Option(
        None, "--encoding", metavar="NAME",
        help="text encoding of a Shapefile's .dbf or of a CSV file, e.g. GBK or GB18030 (GeoJSON and GeoPackage "
             "are UTF-8); without it a CSV must be UTF-8, and a Shapefile with Chinese text must say its "
             "encoding in a .cpg"),
) -> None:
    """Validate a file against the layer registry and load it in one transaction (all or nothing).
    Columns may be named by the field or its Chinese title, values of coded fields by the code or its
    label (`riskmap fields LAYER` lists them). "row N" is the N-th feature of the file (in a CSV, line N+1)."""
    from layers.io import ROW_NOTE, import_file

    spec = _spec(layer)
    store = StoreSettings()
    with database(store) as (_, engine):
        try:
            result = import_file(engine, spec, file, source_crs=source_crs, area=store.area_bbox,
                                 replace=replace, progress=sys.stderr.isatty(), make_valid=make_valid,
                                 source_layer=source_layer, encoding=encoding, discard_history=discard_history,
                                 say=lambda message: typer.echo(message, err=True))
        except ImportRejected as exc:
            fail(f"{exc.report()}\n({ROW_NOTE})")
        except DataError as exc:
            fail(f"{exc}\n{exc.zh}" if exc.zh else str(exc))
    if result.matched_columns:
        typer.echo("columns read as fields: " + ", ".join(f"{c} -> {f}" for c, f in result.matched_columns.items()))
    if result.ignored_columns:
        typer.echo(f"ignored columns not in the registry: {', '.join(result.ignored_columns)}")
    for line in result.repaired + result.notes:
        typer.echo(line)
    if result.repaired:
        typer.echo(f"({ROW_NOTE})")
    typer.echo(f"imported {result.written} features into {layer} (from {result.source_crs})")


@app.command("fields")
def fields_cmd(layer: str = typer.Argument(..., help="layer id (see `riskmap layers`)")) -> None:
    """List a layer's fields as an import file gives them: name, type, Chinese/English title, required,
    codes with their labels, bounds."""
    from layers.io import field_lines

    for line in field_lines(_spec(layer)):
        typer.echo(line)


@app.command("export")
def export_cmd(
    layer: str = typer.Argument(..., help="layer id"),
    fmt: str = typer.Option("geojson", "--format", help="geojson, gpkg or csv"),
    out: Optional[Path] = typer.Option(None, "--out", help="output file (default LAYER.FORMAT)"),
) -> None:
    """Write a layer to a file."""
    from layers.io import export_layer

    spec = _spec(layer)
    out = out or Path(f"{layer}.{fmt}")
    with database() as (_, engine):
        try:
            n = export_layer(engine, spec, out, fmt)
        except DataError as exc:
            fail(str(exc))
    typer.echo(f"exported {n} features to {out}")


@app.command("analyze")
def analyze_cmd(
    which: str = typer.Argument("all", help="an analysis name (roads, hazchem, tailings) or all"),
) -> None:
    """Recompute derived layers (one transaction per analysis, recorded with a run id)."""
    from gis.analyses import ANALYSES

    names = list(ANALYSES) if which == "all" else [which]
    if which != "all" and which not in ANALYSES:
        fail(f"unknown analysis {which!r}; choose from: all, {', '.join(ANALYSES)}")
    store = StoreSettings()
    with database(store) as (_, engine):
        run_analyses(engine, store, names)


def run_analyses(engine: Engine, store: StoreSettings, names: list[str]) -> None:
    from gis.analyses import resolve
    from gis.errors import AnalysisError

    for name in names:
        typer.echo(f"analysis {name}: running")
        try:
            stats = resolve(name)(engine, store)
        except (AnalysisError, DataError) as exc:
            fail(f"analysis {name}: {said(exc)}")
        typer.echo(f"analysis {name}: done " + ", ".join(f"{k}={v}" for k, v in stats.items()))
        if name == "hazchem" and stats["ungraded"]:
            _ungraded(engine, stats["run_id"], stats["ungraded"])


def _ungraded(engine: Engine, run_id: int, n: int, shown: int = 20) -> None:
    """Name the installations the hazchem run could not grade (the first ``shown``) and why."""
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT g.installation_id AS id, h.name, g.error FROM installation_gradings g "
            "JOIN hazard_installations h ON h.id = g.installation_id WHERE g.run_id = :run AND g.error IS NOT NULL "
            "ORDER BY g.installation_id LIMIT :n"), {"run": run_id, "n": shown}).all()
    typer.echo(f"未定级的重大危险源 {n} 个（保留原级别；补全危险性类别或名称后重新分析）/ {n} installations not graded "
               "(their stored level is kept; complete the substance's hazard_class or name and re-run):")
    for r in rows:
        typer.echo(f"  #{r.id} {r.name or '-'}: {r.error}")
    if n > len(rows):
        typer.echo(f"  … 另有 {n - len(rows)} 个 / {n - len(rows)} more")


@app.command("report")
def report_cmd(
    kind: str = typer.Argument(..., help="park, installation, district or incident"),
    ident: str = typer.Argument(..., help="park, installation or incident id, or district adcode"),
    out: Path = typer.Option(..., "--out", help="output HTML file (opens offline)"),
) -> None:
    """Render a static folium report map with a summary table (no external assets)."""
    from api.errors import NotFound
    from api.reports import REPORTS

    if kind not in REPORTS:
        fail(f"unknown report {kind!r}; choose from {', '.join(REPORTS)}")
    if kind != "district" and not ident.isdigit():
        fail(f"{kind} id must be a number")
    writable(out)
    with database() as (_, engine):
        with engine.connect() as conn:
            try:
                page = REPORTS[kind](conn, ident if kind == "district" else int(ident))
            except (DataError, NotFound) as exc:
                fail(str(exc))
    out.write_text(page, encoding="utf-8")
    typer.echo(f"wrote {out}")


@app.command("layers")
def layers_cmd() -> None:
    """List the layers in the registry."""
    for spec in registry.LAYERS:
        access = "public" if spec.public else "restricted: " + ",".join(sorted(spec.roles))
        typer.echo(f"{spec.id:24} {spec.geometry_type:13} {spec.title_zh} / {spec.title_en} ({access})")


def _spec(layer: str):
    try:
        return registry.get(layer)
    except KeyError:
        fail(f"unknown layer {layer!r}; layers: {', '.join(registry.REGISTRY)}")


@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., metavar="NAME", help="user name (1-100 characters)"),
    role: str = typer.Option(..., metavar="ROLE", help="planner, route_controller, emergency, editor or admin"),
) -> None:
    """Create a user, or give an existing one a new token (and ROLE, said when it changes; a revoked user
    is active again). The token is printed as the last line; only its hash is stored."""
    from layers.users import add_user, user_state

    with database() as (_, engine):
        try:
            with engine.begin() as conn:
                before = user_state(conn, name)
                token = add_user(conn, name, role)
        except DataError as exc:
            fail(said(exc))
    if before and before[0] != role:
        typer.echo(f"用户 {name} 的角色已更改 / role of {name} changed: {before[0]} → {role}")
    if before and not before[1]:
        typer.echo(f"已撤销的用户 {name} 重新启用 / revoked user {name} is active again")
    typer.echo(f"user {name} ({role}) ready; keep this token, it is shown only once:")
    typer.echo(token)


@users_app.command("list")
def users_list() -> None:
    """List users: name, role, state and when each was created (Beijing time)."""
    from layers.io import SHANGHAI
    from layers.users import list_users

    with database() as (_, engine):
        with engine.connect() as conn:
            users = list_users(conn)
    width = max([len("name")] + [len(u["name"]) for u in users])  # (columns line up under long names too)
    typer.echo(f"{'name':{width}}  {'role':16} {'state':8} created (UTC+8)")
    for u in users:
        made = u["created_at"].astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M") if u["created_at"] else "-"
        typer.echo(f"{u['name']:{width}}  {u['role']:16} {'active' if u['active'] else 'revoked':8} {made}")


@users_app.command("remove")
def users_remove(name: str = typer.Argument(..., metavar="NAME", help="user name")) -> None:
    """Revoke a user's token."""
    from layers.users import remove_user

    with database() as (_, engine):
        with engine.begin() as conn:
            if not remove_user(conn, name):
                fail(f"no user {name!r}")
    typer.echo(f"revoked {name}")


@db_app.command("start")
def db_start() -> None:
    """Start the embedded cluster (initialising it on first use) and leave it running."""
    from layers.db import embedded_cluster

    cluster = embedded_cluster(StoreSettings())
    try:
        cluster.ensure_started()
        migrate(cluster.url())
    except (EmbeddedClusterError, ConfigError) as exc:
        fail(str(exc))
    typer.echo(f"embedded cluster running on 127.0.0.1:{cluster.port} ({cluster.root})")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the embedded cluster."""
    from layers.db import embedded_cluster

    embedded_cluster(StoreSettings()).stop()
    typer.echo("embedded cluster stopped")


@db_app.command("status")
def db_status() -> None:
    """Say whether the embedded cluster is running."""
    from layers.db import embedded_cluster

    cluster = embedded_cluster(StoreSettings())
    state = "running" if cluster.is_running() else ("stopped" if cluster.initialized else "not initialised")
    typer.echo(f"embedded cluster {cluster.root}: {state}")


# --- rasters the analyses read (population grid, DEM) ------------------------------------------
rasters_app = typer.Typer(help="Registered rasters (population grid, DEM): `riskmap rasters` lists them, "
                               "`riskmap rasters add KIND FILE` registers one.",
                          invoke_without_command=True, rich_markup_mode=None)
app.add_typer(rasters_app, name="rasters")


@rasters_app.callback()
def rasters_list(ctx: typer.Context) -> None:
    """List the registered rasters: kind, CRS, size, synthetic or not, file."""
    if ctx.invoked_subcommand:
        return
    import rasterio

    from gis.raster import registered_path

    with database() as (_, engine), engine.connect() as conn:
        rows = conn.execute(text("SELECT name, path, crs, synthetic FROM rasters ORDER BY name")).all()
    if not rows:
        typer.echo("未登记栅格 / no raster registered: riskmap rasters add population|dem FILE")
    for r in rows:
        path = registered_path(r.path)
        try:
            with rasterio.open(path) as src:
                unit = "°" if src.crs and src.crs.is_geographic else " m"
                size = f"{src.width}x{src.height} cells of {src.res[0]:g}{unit}"
        except rasterio.errors.RasterioIOError:
            size = "文件缺失或不可读 / file missing or unreadable"
        typer.echo(f"{r.name:11} {r.crs or '-':11} {size:24} {'synthetic' if r.synthetic else 'real':9} {path}")


@rasters_app.command("add")
def rasters_add(
    kind: str = typer.Argument(..., metavar="KIND", help="population (people per cell) or dem (metres)"),
    file: Path = typer.Argument(..., metavar="FILE", help="a single-band GeoTIFF in any CRS, referenced where it is "
                                                          "(moving it later needs `rasters add` again)"),
    synthetic: bool = typer.Option(False, "--synthetic", help="a generated grid: results computed from it are "
                                                              "flagged synthetic"),
    source: Optional[str] = typer.Option(None, metavar="TEXT", help="where the grid comes from (rasters.source)"),
) -> None:
    """Check a GeoTIFF (opens, has a CRS, one band, overlaps the area box; population >= 0) and register it as
    KIND, replacing the raster of that kind (e.g. the demo's)."""
    from layers.rasters import raster_row, register_raster

    store = StoreSettings()
    try:
        row = raster_row(kind, file, store.area_bbox, synthetic, source)
    except DataError as exc:
        fail(said(exc))
    with database(store) as (_, engine), engine.begin() as conn:
        before = register_raster(conn, row)
    typer.echo(f"已登记栅格 / registered raster {kind}: {row['path']} ({row['crs']}"
               + (", synthetic)" if synthetic else ")") + (f"; 替换 / replaces {before}" if before else ""))
    typer.echo("请重新运行分析 / re-run the analyses: riskmap analyze all")


@app.command("incident")
def incident_cmd(
    lon: float = typer.Option(..., help="WGS84 longitude of the spill"),
    lat: float = typer.Option(..., help="WGS84 latitude of the spill"),
    chemical: str = typer.Option(..., help="UN number, CAS, name (中文/English) or guide:NNN"),
    spill: str = typer.Option("large", help="small (<208 L) or large"),
    time: str = typer.Option("day", help="day or night"),
    wind_from: Optional[float] = typer.Option(None, "--wind-from", help="direction the wind blows FROM (degrees)"),
    wind_speed: Optional[float] = typer.Option(None, "--wind-speed", help="m/s (ERG Table 3 wind class)"),
    container: Optional[str] = typer.Option(None, help="ERG Table 3 container, e.g. rail_tank_car"),
    by: str = typer.Option("cli", "--by", help="who records the incident (duty log)"),
    out: Optional[Path] = typer.Option(None, "--out", help="also write the offline HTML report here"),
) -> None:
    """Analyse a hazmat spill (ERG2024 zones, counts, ranked resources), keep it in the duty log and
    optionally write its offline report (later: `riskmap report incident ID --out FILE`)."""
    from api.reports import incident_report
    from gis.emergency import IncidentInput, analyse_incident, save_incident
    from gis.errors import AnalysisError

    if out:
        writable(out)
    store = StoreSettings()
    with database(store) as (_, engine):
        try:
            with engine.begin() as conn:
                result = analyse_incident(conn, IncidentInput(lon, lat, chemical, spill, time, wind_from, wind_speed,
                                                              container), show_contacts=True, area=store.area_bbox)
                iid = save_incident(conn, result, by)
        except AnalysisError as exc:
            fail(str(exc))
        erg = result["erg"]
        typer.echo(f"incident #{iid}: {result['chemical']['name_zh']} {result['chemical']['name_en']} — isolate "
                   f"{erg['isolation_m']:.0f} m, protect {erg['protective_m'] or 0:.0f} m downwind "
                   f"({erg['edition']} {erg['basis']}, {'verified' if erg['verified'] else 'UNVERIFIED'})")
        for w in result["warnings"]:
            typer.echo(f"  ! {w}")
        for name, z in result["zones"].items():
            typer.echo(f"  {name}: people {z['population']}, receptors {z['receptor_count']}, "
                       f"installations {len(z['hazard_installations'])}, tailings ponds {len(z['tailings_ponds'])}")
        if out:
            with engine.connect() as conn:
                out.write_text(incident_report(conn, iid, contacts=True), encoding="utf-8")
            typer.echo(f"wrote {out}")


# --- the Kunming demo dataset and OpenStreetMap roads (issue #3) ------------------------------
demo_app = typer.Typer(help="The Kunming demo dataset (real public data + labelled synthetic layers).",
                       no_args_is_help=True, rich_markup_mode=None)
app.add_typer(demo_app, name="demo")


@demo_app.command("build")
def demo_build(
    scale: int = typer.Option(1, min=1, help="multiply facility/receptor/accident counts (1, 10, 100)"),
    seed: Optional[int] = typer.Option(None, help="generator seed (default: the demo's fixed seed)"),
) -> None:
    """Build the demo rasters (data/generated/) and layers without touching the database."""
    from layers.demo import SEED, build_demo

    demo = build_demo(StoreSettings(), scale, seed if seed is not None else SEED)
    for layer_id, frame in demo.layers.items():
        typer.echo(f"{layer_id:24} {len(frame):>9} features")
    for r in demo.rasters:
        typer.echo(f"raster {r['name']:17} {r['path']}")
    typer.echo(f"built in {demo.seconds:.1f} s")


@demo_app.command("load")
def demo_load(
    scale: int = typer.Option(1, min=1, help="multiply facility/receptor/accident counts (1, 10, 100)"),
    replace: bool = typer.Option(False, help="replace the contents of the demo layers"),
    seed: Optional[int] = typer.Option(None, help="generator seed (default: the demo's fixed seed)"),
) -> None:
    """Build the demo and load it in one transaction (refused if layers hold data, unless --replace)."""
    from layers.demo import SEED, load_demo

    store = StoreSettings()
    with database(store) as (_, engine):
        try:
            written = load_demo(engine, store, scale, seed if seed is not None else SEED, replace=replace)
        except ImportRejected as exc:
            fail(exc.report())
        except DataError as exc:
            fail(str(exc))
    typer.echo("loaded " + ", ".join(f"{k}={v}" for k, v in written.items()))


@app.command("import-osm")
def import_osm_cmd(
    file: Path = typer.Argument(..., help="OpenStreetMap extract (.osm.pbf or .osm)"),
    replace: bool = typer.Option(False, help="replace the current roads (and restricted structures)"),
    include_minor: bool = typer.Option(False, help="also unclassified/residential/living_street/service ways"),
    structures: bool = typer.Option(True, help="derive restricted_structures from long bridges and tunnels"),
) -> None:
    """Load OSM roads (bridge/tunnel/layer/ref/name/oneway/maxspeed kept, split at shared nodes)."""
    from layers.osm import import_osm

    store = StoreSettings()
    with database(store) as (_, engine):
        try:
            result = import_osm(engine, file, store.area_bbox, replace=replace, include_minor=include_minor,
                                structures=structures)
        except ImportRejected as exc:
            fail(exc.report())
        except DataError as exc:
            fail(str(exc))
    typer.echo(f"imported {result.roads} road segments from {result.ways} ways and {result.structures} "
               f"restricted structures; skipped {result.skipped_outside} ways outside the area and "
               f"{result.skipped_broken} without node locations; {result.components} connected component(s)")


@app.command("blackspots")
def blackspots_cmd(
    window_m: float = typer.Option(1000.0, help="window length along the road (m)"),
    step_m: float = typer.Option(250.0, help="window step (m)"),
    years: int = typer.Option(3, help="period length (years)"),
    end: Optional[str] = typer.Option(None, help="period end, ISO date (to the end of that day, Beijing time) or time (default: the latest accident)"),
    tolerance_m: float = typer.Option(50.0, help="accidents farther than this from every road are reported"),
    min_major: int = typer.Option(2, help="flag: at least this many crashes with >= major-deaths deaths ..."),
    major_deaths: int = typer.Option(3, help="... deaths per crash for the criterion above"),
    min_fatal: int = typer.Option(3, help="flag: at least this many fatal crashes"),
    min_any: int = typer.Option(5, help="flag: at least this many crashes"),
) -> None:
    """Recompute accident black spots (事故多发点段) with these criteria (`analyze roads` uses the defaults)."""
    import re
    from datetime import timedelta

    from gis.blackspots import BlackspotCriteria, compute
    from gis.errors import AnalysisError
    from gis.routing import parse_departure
    from layers.derived import finish_run, start_run

    try:
        until = parse_departure(end)
        if until is not None and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", end):  # a day: up to its end
            until += timedelta(days=1) - timedelta(microseconds=1)
        criteria = BlackspotCriteria(window_m, step_m, years, until, tolerance_m, min_major,
                                     major_deaths, min_fatal, min_any)
    except AnalysisError as exc:
        fail(str(exc).replace("departure", "--end", 1))
    with database() as (_, engine):
        with engine.begin() as conn:
            run_id = start_run(conn, "blackspots", ["roads", "accidents"])
            stats = compute(conn, run_id, criteria)
            finish_run(conn, run_id, stats)
    typer.echo("black spots: " + ", ".join(f"{k}={v}" for k, v in stats.items()))


@app.command("simulate-sensors")
def simulate_sensors_cmd(
    hours: float = typer.Option(48.0, help="hours of readings to generate, ending now"),
    step_min: float = typer.Option(10.0, "--step-min", help="sampling interval (minutes)"),
    seed: int = typer.Option(8, help="random seed (same seed, same feed)"),
    limit: Optional[int] = typer.Option(None, help="monitor at most this many ponds and installations each"),
    live: float = typer.Option(0.0, help="seconds between steps for the last --live-hours (0: back-fill at once)"),
    live_hours: float = typer.Option(6.0, "--live-hours", help="hours fed step by step when --live is set"),
) -> None:
    """Feed synthetic monitoring readings (with an injected incident) for the demo, and report raw
    threshold crossings against alarms raised (在线监测预警演示; data are labelled synthetic)."""
    from datetime import datetime

    from gis.monitoring import simulate
    from layers.settings import LOCAL_TZ

    def progress(t, res):
        for e in res["alarms"]:
            at = datetime.fromisoformat(e["time"]).astimezone(LOCAL_TZ)  # (as the duty staff read it)
            typer.echo(f"  {at:%Y-%m-%d %H:%M} 北京时间 {e['event']:10} {e['level']:7} {e['asset_layer']}#{e['asset_id']} "
                       f"{e['item']} ({e['sensor'] or '-'})")

    with database() as (_, engine):
        try:
            out = simulate(engine, hours, step_min, seed, limit, live, live_hours, progress=progress)
        except DataError as exc:
            fail(str(exc))
    typer.echo(f"sensors {out['sensors']}, steps {out['steps']}: readings received {out['received']}, "
               f"stored {out['stored']}, duplicates {out['duplicates']}, rejected {len(out['rejected'])}")
    for r in out["rejected"]:
        typer.echo(f"  rejected #{r['index']} {r['sensor']}: {r['reason']}")
    reduction = "n/a" if out["reduction"] is None else f"{out['reduction']:.0%}"
    typer.echo(f"raw threshold crossings {out['crossings']} -> alarms opened {out['alarms_opened']} + escalations "
               f"{out['escalations']} (reduction {reduction})")
    typer.echo(f"red episodes {out['red_episodes']}, missed {len(out['red_missed'])}")
    if out["red_missed"]:
        fail(f"red episodes without a red alarm: {out['red_missed']}", code=1)
