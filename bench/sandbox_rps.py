"""Requests per second each provider emulator serves on this machine.

Each emulator runs in its own process; the load comes from this process over `concurrency`
keep-alive connections, so the two do not share a GIL. The default client is a lean
HTTP/1.1 writer/reader on asyncio streams, because a pooled httpx.AsyncClient saturates a
core at a few hundred requests/s and would measure itself; `--client httpx` shows that.
Goal: at least 1,000 requests/s for each emulator.

    python -m bench.sandbox_rps [--seconds 3] [--concurrency 32] [--only hubspot] [--client httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import multiprocessing
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection

import httpx

from sandbox.emulator import Emulator
from sandbox.hubspot import HubSpotSandbox
from sandbox.salesforce import SalesforceSandbox
from sandbox.sendgrid import SendGridSandbox
from sandbox.twilio import TwilioSandbox

#: Requests/s below which an emulator could bound one of the project's benchmarks.
GOAL_RPS = 1000

Request = tuple[str, str, dict[str, str], bytes]


@dataclass
class Target:
    base_url: str
    headers: dict[str, str]
    ca_file: str | None
    extra: dict[str, str]


def _start(name: str) -> tuple[Emulator, dict[str, str], str | None, dict[str, str]]:
    """Start one emulator without its rate limits: (emulator, headers, CA file, extra)."""
    if name == "hubspot":
        hubspot = HubSpotSandbox(ten_secondly_limit=None, search_per_second=None, daily_limit=10**9)
        return hubspot.start(), {"Authorization": f"Bearer {hubspot.access_token}"}, None, {}
    if name == "salesforce":
        salesforce = SalesforceSandbox(daily_api_limit=10**9).start()
        headers = {"Authorization": f"Bearer {salesforce.access_token}"}
        return salesforce, headers, str(salesforce.ca_file), {}
    if name == "sendgrid":
        sendgrid = SendGridSandbox().start()
        return sendgrid, {"Authorization": f"Bearer {sendgrid.api_key}"}, None, {}
    twilio = TwilioSandbox(segments_per_second=1e6, delivery_delay_s=0.0).start()
    token = base64.b64encode(f"{twilio.account_sid}:{twilio.auth_token}".encode()).decode()
    return twilio, {"Authorization": f"Basic {token}"}, None, {"account_sid": twilio.account_sid}


def _serve(name: str, conn: Connection) -> None:
    """Child process: run one emulator until the parent says stop."""
    emulator, headers, ca_file, extra = _start(name)
    info = {"base_url": emulator.base_url, "headers": headers, "ca_file": ca_file, "extra": extra}
    conn.send(json.dumps(info))
    conn.recv()
    emulator.stop()


def _requests(name: str, target: Target) -> Callable[[int], Request]:
    """A typical write for each provider, varied by a counter."""
    if name == "hubspot":
        return lambda i: (
            "POST",
            "/crm/v3/objects/contacts/batch/upsert",
            {"Content-Type": "application/json"},
            json.dumps(
                {
                    "inputs": [
                        {
                            "id": f"m{i % 5000}@example.com",
                            "idProperty": "email",
                            "properties": {"firstname": f"F{i}"},
                        }
                    ]
                }
            ).encode(),
        )
    if name == "salesforce":
        return lambda i: (
            "PATCH",
            f"/services/data/v59.0/sobjects/Contact/Loyalty_Member_Id__c/m-{i % 5000}",
            {"Content-Type": "application/json"},
            json.dumps({"LastName": "Nowak", "Loyalty_Points__c": i}).encode(),
        )
    if name == "sendgrid":
        return lambda i: (
            "POST",
            "/v3/mail/send",
            {"Content-Type": "application/json"},
            json.dumps(
                {
                    "personalizations": [{"to": [{"email": f"m{i}@example.com"}]}],
                    "from": {"email": "club@example.com"},
                    "subject": "Points",
                    "content": [{"type": "text/plain", "value": f"{i} points"}],
                }
            ).encode(),
        )
    sid = target.extra["account_sid"]
    return lambda i: (
        "POST",
        f"/2010-04-01/Accounts/{sid}/Messages.json",
        {"Content-Type": "application/x-www-form-urlencoded"},
        (
            f"To=%2B4850010{i % 10000:04d}&From=%2B1500555{i % 50:04d}&Body=You+have+{i}+points"
        ).encode(),
    )


async def _load_httpx(
    name: str, target: Target, seconds: float, concurrency: int
) -> tuple[int, int]:
    make = _requests(name, target)
    verify: ssl.SSLContext | bool = (
        ssl.create_default_context(cafile=target.ca_file) if target.ca_file else False
    )
    counter = itertools.count()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=target.base_url, headers=target.headers, verify=verify, limits=limits
    ) as client:

        async def one() -> int:
            method, path, headers, body = make(next(counter))
            response = await client.request(method, path, headers=headers, content=body)
            return response.status_code

        return await _drive(one, seconds, concurrency)


async def _load_raw(name: str, target: Target, seconds: float, concurrency: int) -> tuple[int, int]:
    make = _requests(name, target)
    counter = itertools.count()
    host, port = target.base_url.split("://", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context(cafile=target.ca_file) if target.ca_file else None
    connections = [
        await asyncio.open_connection(host, int(port), ssl=context) for _ in range(concurrency)
    ]
    idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for connection in connections:
        idle.put_nowait(connection)

    async def one() -> int:
        reader, writer = await idle.get()
        method, path, headers, body = make(next(counter))
        lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
        lines += [f"{k}: {v}" for k, v in {**target.headers, **headers}.items()]
        lines.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)
        idle.put_nowait((reader, writer))
        return int(head.split(b" ", 2)[1])

    try:
        return await _drive(one, seconds, concurrency)
    finally:
        for _, writer in connections:
            writer.close()


async def _drive(
    one: Callable[[], Awaitable[int]], seconds: float, concurrency: int
) -> tuple[int, int]:
    """Run `concurrency` loops of `one` for a warm-up, then for `seconds`; (rps, failures)."""
    counts = [0, 0]

    async def worker(deadline: float) -> None:
        while time.monotonic() < deadline:
            counts[await one() >= 300] += 1

    await asyncio.gather(*(worker(time.monotonic() + 0.5) for _ in range(concurrency)))
    counts[:] = [0, 0]
    started = time.monotonic()
    await asyncio.gather(*(worker(started + seconds) for _ in range(concurrency)))
    return round(counts[0] / (time.monotonic() - started)), counts[1]


def measure(
    name: str, seconds: float = 3.0, concurrency: int = 32, client: str = "raw"
) -> tuple[int, int]:
    """(successful requests per second, failures) against one emulator in a child process."""
    parent, child = multiprocessing.get_context("spawn").Pipe()
    process = multiprocessing.get_context("spawn").Process(target=_serve, args=(name, child))
    process.start()
    try:
        info = json.loads(parent.recv())
        target = Target(info["base_url"], info["headers"], info["ca_file"], info["extra"])
        load = _load_httpx if client == "httpx" else _load_raw
        return asyncio.run(load(name, target, seconds, concurrency))
    finally:
        parent.send("stop")
        process.join(timeout=15)
        if process.is_alive():
            process.terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--only", choices=["hubspot", "salesforce", "sendgrid", "twilio"], action="append"
    )
    parser.add_argument("--client", choices=["raw", "httpx"], default="raw")
    args = parser.parse_args(argv)
    names = args.only or ["hubspot", "salesforce", "sendgrid", "twilio"]
    print(
        f"{'emulator':<12}{'requests/s':>12}{'failed':>8}  goal {GOAL_RPS}/s, client {args.client}"
    )
    below = 0
    for name in names:
        rps, failed = measure(name, args.seconds, args.concurrency, args.client)
        mark = "ok" if rps >= GOAL_RPS else "BELOW GOAL"
        below += rps < GOAL_RPS
        print(f"{name:<12}{rps:>12}{failed:>8}  {mark}", flush=True)
    return 1 if below else 0


if __name__ == "__main__":
    raise SystemExit(main())
