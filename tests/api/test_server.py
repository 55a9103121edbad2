"""The server started the way a user starts it: `riskmap serve` on the embedded cluster and on
DATABASE_URL; GDAL's OAPIF driver reads it; tokens made by the CLI while it runs; DB loss -> 503."""

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from conftest import RISKMAP, eventually, free_port, serve, stop, throwaway_cluster
from layers.db import migrate

def test_cli_help_lists_every_command():
    out = subprocess.run([RISKMAP, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("serve", "import", "export", "users", "analyze", "layers", "migrate", "db"):
        assert cmd in out


def test_cli_import_errors_exit_2_with_rows(db_url, clean, tmp_path):
    env = {**os.environ, "DATABASE_URL": db_url}
    bad = tmp_path / "bad.csv"
    bad.write_text("name,kind,lon,lat\nA,school,102.7,25.0\nB,spaceship,102.7,25.0\nC,school,0,0\n")
    r = subprocess.run([RISKMAP, "import", "receptors", str(bad)], env=env, capture_output=True, text=True)
    assert r.returncode == 2
    assert "row 2: kind: 'spaceship'" in r.stderr and "row 3: geometry outside" in r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    r = subprocess.run([RISKMAP, "import", "nolayer", str(bad)], env=env, capture_output=True, text=True)
    assert r.returncode == 2 and "unknown layer" in r.stderr


def test_embedded_cluster_lifecycle_tokens_and_gdal():
    """`riskmap serve` with no DATABASE_URL: own cluster, reused on restart, stopped on Ctrl-C and on SIGTERM."""
    data = Path(tempfile.mkdtemp(prefix="riskmap-embedded-"))
    os.chmod(data, 0o755)
    port, pg_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "RISKMAP_DATABASE_URL")}
    env |= {"RISKMAP_DATA_DIR": str(data), "RISKMAP_EMBEDDED_PORT": str(pg_port)}
    base = f"http://127.0.0.1:{port}"
    proc = serve(env, port, "--no-demo")
    try:
        assert httpx.get(base + "/collections/hazard_installations/items").status_code == 401
        # a token made by the CLI while the server runs on the embedded cluster
        out = subprocess.run([RISKMAP, "users", "add", "alice", "--role", "planner"], env=env,
                             capture_output=True, text=True, check=True).stdout
        token = out.strip().splitlines()[-1]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(base + "/collections/hazard_installations/items", headers=headers).status_code == 200
        # GDAL's OGC API Features driver reads the service
        info = subprocess.run(["ogrinfo", "-ro", "-so", f"OAPIF:{base}"], capture_output=True, text=True)
        assert info.returncode == 0, info.stderr
        assert "admin_areas" in info.stdout and "hazard_installations" not in info.stdout
    finally:
        out = stop(proc)
    assert "stopping the embedded cluster" in out
    status = subprocess.run([RISKMAP, "db", "status"], env=env, capture_output=True, text=True).stdout
    assert "stopped" in status
    proc = serve(env, port, "--no-demo")  # reuses the cluster and its data
    try:
        assert httpx.get(base + "/collections/hazard_installations/items", headers=headers).status_code == 200
    finally:
        out = stop(proc, signal.SIGTERM)  # (as a service manager stops it: the cluster stops too)
    try:
        assert "stopping the embedded cluster" in out and proc.returncode == 128 + signal.SIGTERM
        status = subprocess.run([RISKMAP, "db", "status"], env=env, capture_output=True, text=True).stdout
        assert "stopped" in status
    finally:
        shutil.rmtree(data, ignore_errors=True)


def test_gdal_reads_features_from_database_url_server(db_url, engine, clean):
    from layers import registry
    from layers.demo import districts_frame
    from layers.io import validate, write
    from layers.settings import StoreSettings

    spec = registry.get("admin_areas")
    with engine.begin() as conn:
        write(conn, spec, validate(spec, districts_frame(), StoreSettings().area_bbox, make_valid=True)[0])
    port = free_port()
    proc = serve({**os.environ, "DATABASE_URL": db_url}, port, "--no-demo")
    try:
        info = subprocess.run(["ogrinfo", "-ro", "-al", "-q", f"OAPIF:http://127.0.0.1:{port}", "admin_areas"],
                              capture_output=True, text=True, timeout=60)
        assert info.returncode == 0, info.stderr
        assert info.stdout.count("OGRFeature(admin_areas)") == 14
        assert "name (String) = 五华区" in info.stdout
    finally:
        stop(proc)


def test_database_loss_gives_503_and_recovers():
    cluster = throwaway_cluster()
    try:
        migrate(cluster.url())
        with TestClient(create_app(cluster.url())) as client:
            assert client.get("/collections/receptors/items").status_code == 200
            cluster.stop()
            for path in ("/collections/receptors/items", "/readyz", "/api/layers"):
                r = client.get(path)
                assert r.status_code == 503, (path, r.text)
                assert "unavailable" in r.json()["description"] and r.headers["retry-after"] == "5"
            assert eventually(lambda: "riskmap_database_up 0.0" in client.get("/metrics").text)
            assert client.get("/healthz").status_code == 200
            cluster.start()
            assert client.get("/collections/receptors/items").status_code == 200
            assert client.get("/readyz").status_code == 200
            assert eventually(lambda: "riskmap_database_up 1.0" in client.get("/metrics").text)
    finally:
        cluster.destroy()


def test_an_unread_log_does_not_stop_the_server(db_url):
    """Every request is logged; with the output in a pipe nobody reads (64 KiB), the server must go on
    answering: its log lines are written by their own thread, not by the event loop."""
    port = free_port()
    proc = subprocess.Popen([RISKMAP, "serve", "--port", str(port), "--no-demo"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "DATABASE_URL": db_url})
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(trust_env=False, timeout=20) as client:
            for _ in range(600):  # (until the server is up)
                try:
                    if client.get(base + "/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            # ~140 bytes a line: 1 500 requests write ~200 KiB, three times what the pipe holds
            assert all(client.get(base + "/healthz").status_code == 200 for _ in range(1500))
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0].decode()
    # each line: time, level and logger name once, then the JSON object (README, RISKMAP_LOG_LEVEL)
    line = next(x for x in out.splitlines() if " riskmap.access " in x and '"/healthz"' in x)
    head, body = line.split(" riskmap.access ", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO", head), line
    assert json.loads(body)["path"] == "/healthz" and json.loads(body)["status"] == 200


# GET /auth/me: one request per capability of `can`, to an endpoint it stands for. A role that may not use it
# gets 401 (anonymous) or 403; one that may gets past the role check (an empty body then fails validation:
# 400, or an unknown id 404), so nothing is written. Every `can` key must have a probe here.
AUTH_PROBES = {
    "emergency_incident": ("POST", "/emergency/incident", {}),
    "emergency_read": ("GET", "/emergency/chemicals?q=1005", None),
    "route_check": ("POST", "/routes/check", {}),
    "route_data": ("GET", "/routes/cargo", None),
    "route_rules_edit": ("PUT", "/routes/rules/999999", {}),
    "monitoring_read": ("GET", "/monitoring/alarms", None),
    "monitoring_ack": ("POST", "/monitoring/alarms/999999/ack", {}),
    "monitoring_ingest": ("POST", "/monitoring/readings", {"readings": []}),
    "monitoring_thresholds": ("PUT", "/monitoring/thresholds", {}),
    "analysis_read": ("POST", "/analysis/siting-check", {}),
    "analysis_edit": ("POST", "/analysis/safety-rules", {}),
    "features_edit": ("DELETE", "/collections/receptors/items/999999", None),
}


def test_auth_me_can_is_what_the_endpoints_enforce(client, clean, token):
    from api.routers.meta import ROLE_TITLES
    from layers.spec import ROLES

    assert set(ROLE_TITLES) == set(ROLES)
    seen = {}
    for role in ROLES:
        headers = {} if role == "anonymous" else {"Authorization": f"Bearer {token(role, f'me-{role}')}"}
        r = client.get("/auth/me", headers=headers)
        assert r.status_code == 200, r.text
        assert "no-store" in r.headers["cache-control"]
        me = r.json()
        assert me["role"] == role and me["name"] == ("anonymous" if role == "anonymous" else f"me-{role}")
        assert (me["role_zh"], me["role_en"]) == ROLE_TITLES[role]
        assert set(me["can"]) == set(AUTH_PROBES), "a capability without a probe (or a probe without one)"
        for key, (method, path, body) in AUTH_PROBES.items():
            got = client.request(method, path, headers=headers, json=body).status_code
            refused = 401 if role == "anonymous" else 403
            if me["can"][key]:
                assert got not in (401, 403), (role, key, path, got)
            else:
                assert got == refused, (role, key, path, got)
        seen[role] = me["can"]
    # anonymous may do none of it, admin all of it; the panels of the map each have a role that may use them
    assert not any(seen["anonymous"].values()) and all(seen["admin"].values())
    assert seen["route_controller"]["route_check"] and not seen["route_controller"]["monitoring_ack"]
    assert seen["emergency"]["monitoring_ack"] and seen["emergency"]["emergency_incident"]
    assert seen["planner"]["emergency_read"] and not seen["planner"]["emergency_incident"]
    assert seen["editor"]["route_data"] and not seen["editor"]["route_check"]
    # a data gateway's token sends readings and may do nothing else
    assert [k for k, v in seen["gateway"].items() if v] == ["monitoring_ingest"]


def test_auth_me_refuses_a_bad_token(client, clean):
    for value in ("Bearer not-a-token", "Basic abc"):
        r = client.get("/auth/me", headers={"Authorization": value})
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert set(r.json()) == {"code", "description", "description_zh"} and r.json()["code"] == "Unauthorized"


def test_openapi_documents_the_400_error_shape_the_api_answers(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["Error"]["required"] == ["code", "description"]
    assert "HTTPValidationError" not in str(schema)  # (FastAPI's 422, which this API never answers)
    search = schema["paths"]["/api/search"]["get"]["responses"]
    assert "422" not in search and search["400"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    r = client.get("/api/search")  # what it documents is what it answers
    assert r.status_code == 400 and set(r.json()) <= set(schema["components"]["schemas"]["Error"]["properties"])


def test_the_access_log_names_the_user_and_client(client, clean, token, caplog):
    """(QA: nothing recorded who changed what.) Each request's line names the token's user and the client."""
    tok = token("editor", "li.editor")
    with caplog.at_level(logging.INFO, logger="riskmap.access"):
        client.get("/auth/me", headers={"Authorization": f"Bearer {tok}"})
        client.get("/auth/me")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "riskmap.access"]
    assert [(x["path"], x["user"], x["client"]) for x in lines] == [
        ("/auth/me", "li.editor", "testclient"), ("/auth/me", None, "testclient")]
