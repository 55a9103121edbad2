"""The embedded PostgreSQL + PostGIS + pgRouting cluster (initdb/pg_ctl of the system PostgreSQL).

The cluster lives in one folder (``pgdata/`` plus its socket folder, log and password file) and
listens on loopback only. When we run as root, every PostgreSQL binary runs as an unprivileged OS
user (``postgres`` by default), because the server refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg

DB_NAME = "riskmap"
DB_USER = "riskmap"


class EmbeddedClusterError(RuntimeError):
    """The embedded cluster could not be set up or started."""


def pg_bindir() -> Path:
    """The newest ``/usr/lib/postgresql/<v>/bin`` (Debian layout), or ``RISKMAP_PG_BINDIR``."""
    if env := os.environ.get("RISKMAP_PG_BINDIR"):
        return Path(env)
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise EmbeddedClusterError(
            "PostgreSQL server binaries not found: install postgresql-15-postgis-3 and "
            "postgresql-15-pgrouting (`make setup` does) or set DATABASE_URL."
        )
    return found[-1].parent


@dataclass
class EmbeddedCluster:
    root: Path
    port: int
    os_user: str = "postgres"

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def password_file(self) -> Path:
        return self.root / "password"

    def _demote(self):
        """preexec_fn dropping to the unprivileged user when we are root (None otherwise)."""
        if os.geteuid() != 0:
            return None
        try:
            user = pwd.getpwnam(self.os_user)
        except KeyError as exc:
            raise EmbeddedClusterError(
                f"running as root needs the OS user {self.os_user!r} (set RISKMAP_PG_OS_USER)"
            ) from exc

        def demote() -> None:
            os.setgid(user.pw_gid)
            os.setuid(user.pw_uid)

        return demote

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            user = pwd.getpwnam(self.os_user)
            os.chown(path, user.pw_uid, user.pw_gid)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(pg_bindir() / args[0]), *args[1:]]
        proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=self._demote())
        if check and proc.returncode != 0:
            raise EmbeddedClusterError(f"{' '.join(cmd)} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    @property
    def initialized(self) -> bool:
        return (self.pgdata / "PG_VERSION").exists()

    def _check_reachable(self) -> None:
        """As root, the unprivileged user must be able to enter every parent folder of the cluster."""
        if os.geteuid() != 0:
            return
        probe = subprocess.run(["test", "-x", str(self.root)], preexec_fn=self._demote())
        if probe.returncode != 0:
            raise EmbeddedClusterError(
                f"the OS user {self.os_user!r} cannot reach {self.root}: give its parent folders o+x "
                "(chmod o+x) or set RISKMAP_DATA_DIR to a folder it can reach"
            )

    def initialize(self) -> None:
        """initdb with a random password for the ``riskmap`` superuser (kept in the cluster folder)."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        for path in (self.root, self.socket_dir):
            self._chown(path)
        self._check_reachable()
        password = secrets.token_urlsafe(24)
        self.password_file.write_text(password)
        self.password_file.chmod(0o600)
        pwfile = self.root / ".initdb-pw"
        pwfile.write_text(password)
        self._chown(pwfile)
        try:
            self._run(
                "initdb", "-D", str(self.pgdata), "-U", DB_USER, "--pwfile", str(pwfile),
                "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        return self._run("pg_ctl", "status", "-D", str(self.pgdata), check=False).returncode == 0

    def start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 "
            "-c shared_buffers=256MB -c max_connections=100 -c fsync=on"
        )
        self._run(
            "pg_ctl", "start", "-w", "-t", "60", "-D", str(self.pgdata),
            "-l", str(self.root / "postgres.log"), "-o", opts,
        )

    def stop(self) -> None:
        if self.is_running():
            self._run("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.pgdata))

    def password(self) -> str:
        return self.password_file.read_text().strip()

    def url(self, database: str = DB_NAME) -> str:
        return f"postgresql+psycopg://{DB_USER}:{self.password()}@127.0.0.1:{self.port}/{database}"

    def ensure_database(self) -> None:
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=DB_USER, password=self.password(),
            dbname="postgres", autocommit=True,
        ) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def ensure_started(self) -> bool:
        """Initialise if needed, start if not running, create the database. True if we started it."""
        if not self.initialized:
            if self.pgdata.exists() and any(self.pgdata.iterdir()):
                raise EmbeddedClusterError(f"{self.pgdata} exists but is not a cluster; move it away")
            self.initialize()
        started = False
        if not self.is_running():
            self.start()
            started = True
        self.ensure_database()
        return started

    def destroy(self) -> None:
        """Stop and delete the cluster folder (throwaway test clusters)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
