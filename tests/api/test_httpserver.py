"""The server's HTTP protocol joins the writes of one event-loop turn (api/httpserver.py): one write
for a response sent in one go, the bytes unchanged and in order, streamed responses intact."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx
import uvicorn

from api.httpserver import HttpProtocol, _JoinedWrites
from conftest import free_port


class Recorder(asyncio.Transport):
    def __init__(self):
        super().__init__()
        self.writes, self.closed, self.aborted = [], False, False

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return self.closed or self.aborted

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True

    def get_extra_info(self, name, default=None):
        return ("127.0.0.1", 1) if name in ("peername", "sockname") else default


def test_writes_of_one_turn_are_joined():
    async def run():
        loop = asyncio.get_running_loop()
        t = Recorder()
        joined = _JoinedWrites(t, loop)
        joined.write(b"HTTP/1.1 200 OK\r\n\r\n")
        joined.writelines([b"a", b"b"])
        assert t.writes == []  # nothing before the turn ends
        await asyncio.sleep(0)
        joined.write(b"c")
        await asyncio.sleep(0)
        assert t.writes == [b"HTTP/1.1 200 OK\r\n\r\nab", b"c"]
        joined.write(b"last")
        joined.close()  # pending bytes go out before the close
        assert t.writes[-1] == b"last" and t.closed
        assert joined.get_extra_info("peername") == ("127.0.0.1", 1)  # the rest: the real transport's
        aborted = _JoinedWrites(Recorder(), loop)
        aborted.write(b"x")
        aborted.abort()
        await asyncio.sleep(0)
        assert aborted._transport.writes == [] and aborted._transport.aborted
    asyncio.run(run())


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":  # chunks over several turns of the loop
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(5):
            await send({"type": "http.response.body", "body": f"{i}".encode() * 1000, "more_body": True})
            await asyncio.sleep(0.001)
        await send({"type": "http.response.body", "body": b"end"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"hello"})


async def serving(check):
    """Run ``check(port)`` against a real uvicorn server with the protocol."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, http=HttpProtocol, log_level="error"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        await check(port)
    finally:
        server.should_exit = True
        await task


def test_a_real_server_answers_whole_and_streams():
    async def check(port):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(3):  # keep-alive: several answers on one connection
                r = await client.get("/")
                assert (r.status_code, r.text) == (200, "hello")
            r = await client.get("/stream")
            assert r.text == "".join(f"{i}" * 1000 for i in range(5)) + "end"
        # the whole small answer arrives in one segment: headers and body were one write
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = await reader.read(65536)
        assert first.startswith(b"HTTP/1.1 200") and first.endswith(b"\r\n\r\nhello")
        writer.close()
    asyncio.run(serving(check))


def test_a_request_the_parser_refuses_gets_the_json_error_shape():
    async def check(port):
        for bad in (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + b"9" * 400 + b"\r\n\r\n",
                    b"GET /\x01 HTTP/1.1\r\n\r\n"):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(bad)
            answer = await reader.read()  # (the server closes the connection)
            writer.close()
            head, body = answer.split(b"\r\n\r\n", 1)
            assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"content-type: application/json" in head
            assert int(head.split(b"content-length: ")[1].split(b"\r\n")[0]) == len(body)
            assert json.loads(body)["code"] == "BadRequest" and "Content-Length" in json.loads(body)["description"]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:  # and serves on
            assert (await client.get("/")).text == "hello"
    asyncio.run(serving(check))
