"""Soak server (own process): answers `stop` with 200, and ~5% of requests with a fault
drawn from a seeded RNG: 503, 429 + Retry-After: 0, reset, close, slow headers.

Usage: ``python tests/soak/server.py PORT_FILE SEED FAULT_RATE``.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import sys
from pathlib import Path

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
E503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Content-Length: 47\r\n\r\n"
    b'{"code":"service_unavailable","message":"soak"}'
)
E429 = b"HTTP/1.1 429 Too Many\r\nRetry-After: 0\r\nContent-Length: 0\r\n\r\n"


class Soak(asyncio.Protocol):
    rng: random.Random
    rate: float

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            self.buffer = self.buffer[end + 4 :]  # stop requests carry no body
            if self.rng.random() >= self.rate:
                self.transport.write(OK)
                continue
            fault = self.rng.choice(["503", "429", "reset", "close", "slow"])
            if fault == "503":
                self.transport.write(E503)
            elif fault == "429":
                self.transport.write(E429)
            elif fault == "slow":
                loop = asyncio.get_running_loop()
                loop.call_later(3.0, self._late)
                return
            else:
                sock = self.transport.get_extra_info("socket")
                if fault == "reset" and sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.transport.abort() if fault == "reset" else self.transport.close()
                return

    def _late(self) -> None:
        if not self.transport.is_closing():
            self.transport.write(OK)


async def main(port_file: str, seed: int, rate: float) -> None:
    Soak.rng = random.Random(seed)
    Soak.rate = rate
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Soak, "127.0.0.1", 0, backlog=4096)
    Path(port_file).write_text(str(server.sockets[0].getsockname()[1]))
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])))
