#!/usr/bin/env python3
"""A loopback TCP relay that adds latency to one direction.

    python3 bench/latency_proxy.py --listen 127.0.0.1:PORT \
        --target 127.0.0.1:19100 --delay-ms 25

Every chunk read from a client is written to the target DELAY ms after it
arrived (per connection, in order; the delay is not cumulative: chunks that
arrive together leave together). Bytes from the target go back to the client
at once. An HTTP request then costs one extra DELAY, as a round trip to a
store in another zone would. Connecting is not delayed.

Prints `ready` on stdout once listening; exits on SIGTERM or SIGINT. Both the
listening and the target address must be loopback: this relays between local
processes and nothing else.
"""

import argparse
import asyncio
import ipaddress
import signal
import socket
import sys
import time

CHUNK = 64 * 1024
# Chunks in flight per connection: a client that sends faster than the
# delayed writer drains waits for room (at most QUEUE * CHUNK bytes held).
QUEUE = 256


def loopback_addr(text, what):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise SystemExit(f"latency_proxy: {what}: expected HOST:PORT, got {text!r}")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise SystemExit(f"latency_proxy: {what}: {host!r} is not an IP address (use 127.0.0.1)")
    if not ip.is_loopback:
        raise SystemExit(f"latency_proxy: {what}: {host} is not a loopback address; refused")
    return str(ip), int(port)


def nodelay(writer):
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


async def together(*coros):
    """Runs the coroutines to the end; the first error cancels the others."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for t in done:
            t.result()
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def close(writer):
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, ConnectionError):
        pass


async def delayed(reader, writer, delay):
    """Client -> target: each chunk leaves `delay` seconds after it arrived."""
    queue = asyncio.Queue(QUEUE)

    async def receive():
        while True:
            data = await reader.read(CHUNK)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def send():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    await together(receive(), send())


async def straight(reader, writer):
    """Target -> client, as it comes."""
    while True:
        data = await reader.read(CHUNK)
        if not data:
            if writer.can_write_eof():
                writer.write_eof()
            return
        writer.write(data)
        await writer.drain()


class Proxy:
    def __init__(self, target, delay, max_connections):
        self.target = target
        self.delay = delay
        self.slots = asyncio.Semaphore(max_connections)
        self.tasks = set()

    async def handle(self, c_reader, c_writer):
        task = asyncio.current_task()
        self.tasks.add(task)
        s_writer = None
        try:
            if self.slots.locked():
                # Over the limit: refuse rather than queue without bound.
                return
            async with self.slots:
                try:
                    s_reader, s_writer = await asyncio.open_connection(*self.target)
                except OSError as e:
                    print(f"latency_proxy: connect {self.target}: {e}", file=sys.stderr)
                    return
                nodelay(c_writer)
                nodelay(s_writer)
                await together(
                    delayed(c_reader, s_writer, self.delay),
                    straight(s_reader, c_writer),
                )
        except (OSError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # Shutting down: end quietly (asyncio's stream callback reports
            # a handler that ends cancelled as an error).
            pass
        finally:
            if s_writer is not None:
                await close(s_writer)
            await close(c_writer)
            self.tasks.discard(task)


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", required=True, help="loopback HOST:PORT to listen on")
    ap.add_argument("--target", required=True, help="loopback HOST:PORT to relay to")
    ap.add_argument("--delay-ms", type=float, required=True,
                    help="delay added to every client-to-target chunk, in ms")
    ap.add_argument("--max-connections", type=int, default=512,
                    help="connections relayed at once; more are closed (default 512)")
    a = ap.parse_args()
    listen = loopback_addr(a.listen, "--listen")
    target = loopback_addr(a.target, "--target")
    if not 0 <= a.delay_ms <= 10_000:
        raise SystemExit("latency_proxy: --delay-ms must be within 0..10000")
    if a.max_connections < 1:
        raise SystemExit("latency_proxy: --max-connections must be at least 1")

    proxy = Proxy(target, a.delay_ms / 1000.0, a.max_connections)
    server = await asyncio.start_server(proxy.handle, *listen)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    server.close()
    for t in list(proxy.tasks):
        t.cancel()
    await asyncio.gather(*proxy.tasks, return_exceptions=True)
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
