"""Shopify `orders/paid` webhooks through `loyalty serve`: accepted/s, p99 to the 2xx, ledger time.

The production shape: a fresh PostgreSQL database, a redis-server of its own,
`loyalty serve` and `loyalty worker --processes 2`. Signed deliveries (as Shopify
signs them) come over `concurrency` keep-alive connections from this process, each
a new order of one of `customers` customers (the first order of each creates the
member). Measured: webhooks accepted per second and the time from sending a
delivery to its 2xx (p50, p99), beside a ceiling measured in the same run: the same
client and server answering `GET /healthz`, which touches nothing; then the time
until every order's points are in the ledger.

Goals: at least 500 accepted/s and a p99 under 50 ms.

    python -m bench.shop_webhooks [--orders 3000] [--concurrency 16] [--customers 300]
                                  [--worker-nice N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import func, select

from bench.production import load_average, process_environment, temporary_database
from bench.soak_processes import RedisServer, Supervisor, free_port, loyalty_command
from loyalty.db import Database
from loyalty.models import LedgerEntry
from loyalty.settings import Settings
from sandbox.shopify import sign_webhook
from sandbox.shopify_payloads import customer_payload, order_payload

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
SECRET = "bench-shopify-secret"
SHOP = "bench.myshopify.com"
GOAL_RPS = 500
GOAL_P99_MS = 50.0

Request = tuple[str, str, dict[str, str], bytes]


def _deliveries(orders: int, customers: int) -> list[Request]:
    """Signed orders/paid deliveries, built before the clock starts."""
    made = []
    for n in range(orders):
        customer_id = 10_000 + n % customers
        customer = customer_payload(customer_id, email=f"c{customer_id}@example.com")
        order = order_payload(100_000 + n, f"{20 + n % 180}.00", customer=customer)
        body = json.dumps(order).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Shopify-Topic": "orders/paid",
            "X-Shopify-Hmac-Sha256": sign_webhook(body, SECRET),
            "X-Shopify-Shop-Domain": SHOP,
            "X-Shopify-API-Version": "2025-01",
            "X-Shopify-Webhook-Id": f"bench-{n}",
        }
        made.append(("POST", "/webhooks/shopify", headers, body))
    return made


async def _load(
    port: int, requests: list[Request], concurrency: int
) -> tuple[float, list[float], int]:
    """Send every request over `concurrency` connections: (seconds, latencies in s, failures)."""
    connections = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    queue = iter(requests)
    latencies: list[float] = []
    failures = 0

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal failures
        for method, path, headers, body in queue:
            lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
            lines += [f"{k}: {v}" for k, v in headers.items()]
            lines.append(f"Content-Length: {len(body)}")
            started = time.perf_counter()
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            failures += not 200 <= int(head.split(b" ", 2)[1]) < 300

    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(r, w) for r, w in connections))
    finally:
        for _, writer in connections:
            writer.close()
    return time.perf_counter() - started, latencies, failures


def _p(latencies: list[float], q: int) -> float:
    return statistics.quantiles(latencies, n=100)[q - 1] * 1000 if len(latencies) > 1 else 0.0


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def run(orders: int, concurrency: int, customers: int, worker_nice: int | None = None) -> bool:
    requests = _deliveries(orders, customers)
    ceiling_requests: list[Request] = [("GET", "/healthz", {}, b"")] * orders
    with (
        temporary_database(POSTGRES) as database_url,
        tempfile.TemporaryDirectory(prefix="loyalty-bench-") as folder_name,
    ):
        folder = Path(folder_name)
        redis_server = RedisServer(free_port(), folder)
        redis_server.start()
        env = process_environment(
            DATABASE_URL=database_url,
            REDIS_URL=redis_server.url,
            SHOPIFY_WEBHOOK_SECRET=SECRET,
            SHOPIFY_SHOP_DOMAIN=SHOP,
            POINTS_PER_CURRENCY_UNIT="1",
            JOURNEYS_DIR=str(ROOT / "journeys"),
            OUTBOX_DIR=str(folder / "outbox"),
            LOG_LEVEL="WARNING",
            **({} if worker_nice is None else {"WORKER_NICE": str(worker_nice)}),
        )
        loyalty = loyalty_command()
        supervisor = Supervisor(env, folder, folder)
        database = Database(database_url)
        try:
            for command in (["db", "upgrade"], ["journeys", "publish"]):
                supervisor.start("setup", [*loyalty, *command]).process.wait(timeout=120)
            port = free_port()
            supervisor.start("serve", [*loyalty, "serve", "--port", str(port)])
            supervisor.start("worker", [*loyalty, "worker", "--processes", "2"])
            if not _wait(lambda: _healthy(port), 60):
                print("loyalty serve did not come up", file=sys.stderr)
                return False
            ceiling_s, ceiling_lat, _ = asyncio.run(_load(port, ceiling_requests, concurrency))
            sent_at = time.perf_counter()
            seconds, latencies, failures = asyncio.run(_load(port, requests, concurrency))

            def landed() -> bool:
                with database.sessions() as session:
                    count = session.scalar(select(func.count(LedgerEntry.id)))
                return int(count or 0) >= orders

            in_ledger = _wait(landed, 600)
            ledger_s = time.perf_counter() - sent_at
        finally:
            supervisor.stop_all()
            database.dispose()
            redis_server.kill()
    rps = orders / seconds
    ceiling_rps = orders / ceiling_s
    p50, p99 = _p(latencies, 50), _p(latencies, 99)
    nice = Settings.model_fields["worker_nice"].default if worker_nice is None else worker_nice
    print(
        f"orders/paid webhooks: {orders}, {concurrency} connections, {customers} customers, "
        f"workers at nice {nice}; load average {load_average()}"
    )
    print(
        f"accepted/s {rps:,.0f} (ceiling GET /healthz {ceiling_rps:,.0f}/s, "
        f"ratio {rps / ceiling_rps:.2f}); goal {GOAL_RPS}/s: "
        f"{'ok' if rps >= GOAL_RPS else 'BELOW GOAL'}"
    )
    print(
        f"time to 2xx: p50 {p50:.1f} ms, p99 {p99:.1f} ms (ceiling p99 {_p(ceiling_lat, 99):.1f} "
        f"ms); goal p99 < {GOAL_P99_MS:.0f} ms: {'ok' if p99 < GOAL_P99_MS else 'ABOVE GOAL'}"
    )
    print(f"failed deliveries: {failures}")
    print(
        f"points in the ledger: {'all' if in_ledger else 'NOT ALL'} {ledger_s:.1f} s after the "
        f"first delivery ({orders / ledger_s:,.0f} orders/s)"
    )
    return failures == 0 and in_ledger


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument(
        "--worker-nice", type=int, help="WORKER_NICE of the workers (default: the setting's)"
    )
    args = parser.parse_args(argv)
    return 0 if run(args.orders, args.concurrency, args.customers, args.worker_nice) else 1


if __name__ == "__main__":
    raise SystemExit(main())
