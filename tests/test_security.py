"""The API key never leaks; TLS is verified; no ambient credentials are picked up."""

from __future__ import annotations

import logging
import ssl
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

import kernel_async as ka
from kernel_async import AsyncKernel, RetryEvent, RetryPolicy
from tests.scripted import ScriptedServer, json_error, reset, respond

pytestmark = pytest.mark.anyio

KEY = "sk-live-DO-NOT-LEAK-0123456789"


async def test_key_absent_from_repr_errors_logs_and_events(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[RetryEvent] = []
    async with ScriptedServer([json_error(503), reset(), json_error(401)]) as srv:
        c = AsyncKernel(
            api_key=KEY, base_url=srv.base_url, retry=RetryPolicy(on_retry=events.append)
        )
        async with c:
            with pytest.raises(ka.AuthenticationError) as info:
                await c.browsers.replays.stop("r", id="b")
        assert srv.received[0].headers["authorization"] == f"Bearer {KEY}"
    texts = [repr(c), str(c), repr(c.with_options(timeout=1)), str(info.value), repr(info.value)]
    texts += [repr(e) for e in events] + [caplog.text]
    texts += [str(vars(info.value))]
    assert len(events) == 2
    for text in texts:
        assert KEY not in text


def test_key_not_printed_by_kernel_log_debug(tmp_path: Path) -> None:
    script = f"""
import asyncio, kernel_async
async def main():
    async with kernel_async.AsyncKernel(api_key={KEY!r}, base_url="http://127.0.0.1:9",
                                        max_retries=1) as c:
        try:
            await c.browsers.replays.stop("r", id="b")
        except kernel_async.APIConnectionError as e:
            print(e)
kernel_async.set_testing(True)
asyncio.run(main())
"""
    env = {"KERNEL_LOG": "debug", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "retrying POST" in out.stderr  # logging really was on
    assert KEY not in out.stdout + out.stderr


async def test_trust_env_netrc_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine 127.0.0.1 login user password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")  # proxies are honoured; this host bypasses
    async with ScriptedServer([respond(200)]) as srv:
        async with AsyncKernel(api_key=KEY, base_url=srv.base_url) as c:
            await c.browsers.replays.stop("r", id="b")
    assert srv.received[0].headers["authorization"] == f"Bearer {KEY}"
    assert "netrc-secret" not in str(srv.received[0].headers)


@pytest.fixture(scope="module")
def tls_server_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    d = tmp_path_factory.mktemp("tls")
    ca_path, key_path, cert_path = d / "ca.pem", d / "key.pem", d / "cert.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    return ca_path, key_path, cert_path


async def test_tls_verified_by_default(tls_server_files: tuple[Path, Path, Path]) -> None:
    ca_path, key_path, cert_path = tls_server_files
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(str(cert_path), str(key_path))
    hits: list[str] = []

    async def stop(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response()

    app = web.Application()
    app.router.add_post("/browsers/{id}/replays/{rid}/stop", stop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"https://127.0.0.1:{port}"
    try:
        async with AsyncKernel(api_key=KEY, base_url=url) as c:
            with pytest.raises(ka.APIConnectionError, match="TLS") as info:
                await c.browsers.replays.stop("r", id="b")
        assert info.value.attempts == 1  # a certificate error is not retried
        assert hits == []
        client_ctx = ssl.create_default_context(cafile=str(ca_path))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ctx)) as s:
            async with AsyncKernel(api_key=KEY, base_url=url, session=s) as c:
                await c.browsers.replays.stop("r", id="b")
        assert hits == ["/browsers/b/replays/r/stop"]
    finally:
        await runner.cleanup()
