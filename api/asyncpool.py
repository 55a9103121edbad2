"""A minimal pool of autocommit psycopg async connections, for the tile fast path.

psycopg_pool's ``AsyncConnectionPool`` cost ~0.1 ms per checkout here (its locks, statistics and
return handling): as much as the statement of a z14 roads tile. This pool hands out idle connections
last-in first-out under a semaphore, opens one when none is idle (loading PostGIS first, ~10 ms
once per backend), and drops a connection that comes back after an error or not idle. There is no
background task: a connection broken by a database restart fails once, is dropped, and the next use
opens a new one.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager

import psycopg
from psycopg.pq import TransactionStatus

log = logging.getLogger("riskmap.pool")


class AsyncPool:
    def __init__(self, conninfo: str, size: int, timeout_s: float = 5.0):
        self._conninfo, self.size, self._timeout_s = conninfo, size, timeout_s
        self._idle: list[psycopg.AsyncConnection] = []
        self._slots: asyncio.Semaphore | None = None  # made in the event loop that uses it
        self.checkouts = 0

    async def _connect(self) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True, connect_timeout=5)
        await conn.execute("SELECT postgis_lib_version()")  # load PostGIS in the backend now
        return conn

    async def warm(self, n: int) -> None:
        """Open up to ``n`` connections ahead of the first requests (a database that is down is not
        an error here: connections open on first use)."""
        try:
            while len(self._idle) < min(n, self.size):
                self._idle.append(await self._connect())
        except psycopg.Error as exc:
            log.warning("tile connections not opened ahead: %s", str(exc).splitlines()[0] if str(exc) else exc)

    @asynccontextmanager
    async def connection(self):
        """An idle connection (or a new one); psycopg.OperationalError when none is free within the timeout."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.size)
        if self._slots.locked():
            try:
                await asyncio.wait_for(self._slots.acquire(), self._timeout_s)
            except TimeoutError:
                raise psycopg.OperationalError(f"no tile connection free within {self._timeout_s:.0f} s") from None
        else:
            await self._slots.acquire()
        try:
            self.checkouts += 1
            conn = self._idle.pop() if self._idle else await self._connect()
            ok = False
            try:
                yield conn
                ok = True
            finally:
                if ok and not conn.closed and conn.pgconn.transaction_status == TransactionStatus.IDLE:
                    self._idle.append(conn)
                else:
                    await conn.close()
        finally:
            self._slots.release()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()
