"""Import benchmark: rows/s on SQLite and PostgreSQL, as a ratio to the ceiling of the same run.

For each backend and file size, in a fresh process: a first import of generated
members, then a re-import of the same members with 10 % of the rows changed. The
ceiling is the plain write of the same rows, as the import left them, into a table
of the same shape (same columns and indexes): one `executemany` on SQLite, one
`COPY` from Python on PostgreSQL. Peak memory (this process and the largest parsing
process) must stay flat as the file grows, and the machine's load average is
printed beside the figures, since other work on the machine moves them.

Run with `make bench` or `python -m bench.import_members [--rows N ...]
[--postgres-url URL] [--backend sqlite|postgresql]`.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import multiprocessing
import os
import random
import resource
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from sqlalchemy import create_engine, text

from loyalty.import_writer import WRITTEN_COLUMNS
from loyalty.member_rows import KNOWN_COLUMNS

HEADER = [*KNOWN_COLUMNS, "segment"]
ZONES = ["Europe/Warsaw", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432")
#: Every tenth row differs in the re-import.
CHANGED_EVERY = 10
#: The columns the ceiling writes: what the import writes for a new member.
CEILING_COLUMNS = WRITTEN_COLUMNS


def generate(path: Path, rows: int, *, changed: bool = False) -> None:
    """`rows` members; with `changed`, every tenth one has a new last name and segment."""
    rng = random.Random(rows)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        for n in range(rows):
            moved = changed and n % CHANGED_EVERY == 0
            # The same draws in both files: only the moved rows differ.
            zone, segment = rng.choice(ZONES), rng.choice(["vip", "new", "regular"])
            writer.writerow(
                [
                    f"m-{n}",
                    f"member{n}@example.com",
                    f"+4860{n % 10_000_000:07d}",
                    "Anna",
                    f"Nowak{n}{'-Kowalska' if moved else ''}",
                    rng.choice(["pl", "en"]),
                    zone,
                    f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    rng.choice(["yes", "no", ""]),
                    rng.choice(["yes", "no", ""]),
                    "",
                    "moved" if moved else segment,
                ]
            )


@contextlib.contextmanager
def database_url(backend: str, folder: Path, server: str) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"loyalty_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{server}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _ceiling_sqlite(path: str) -> tuple[int, float]:
    """Rows/s of one executemany of the members' rows into a table of the same shape."""
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    schema = connection.execute(
        "SELECT sql FROM sqlite_master WHERE tbl_name = 'members' AND sql IS NOT NULL"
    ).fetchall()
    for (statement,) in schema:
        connection.execute(statement.replace("members", "ceiling"))
    columns = ", ".join(CEILING_COLUMNS)
    rows = connection.execute(f"SELECT {columns} FROM members ORDER BY id").fetchall()
    marks = ", ".join("?" * len(CEILING_COLUMNS))
    started = time.perf_counter()
    connection.execute("BEGIN IMMEDIATE")
    connection.executemany(f"INSERT INTO ceiling ({columns}) VALUES ({marks})", rows)
    connection.execute("COMMIT")
    elapsed = time.perf_counter() - started
    connection.close()
    return len(rows), elapsed


def _ceiling_postgres(url: str) -> tuple[int, float]:
    """Rows/s of one COPY of the members' rows into a table of the same shape."""
    names = sql.SQL(", ").join(map(sql.Identifier, CEILING_COLUMNS))
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as connection:
        connection.execute("CREATE TABLE ceiling (LIKE members INCLUDING ALL)")
        rows = connection.execute(
            sql.SQL("SELECT {names} FROM members ORDER BY id").format(names=names)
        ).fetchall()
        rows = [tuple(Jsonb(v) if isinstance(v, dict) else v for v in row) for row in rows]
        connection.commit()
        started = time.perf_counter()
        with (
            connection.cursor() as cursor,
            cursor.copy(sql.SQL("COPY ceiling ({names}) FROM STDIN").format(names=names)) as copy,
        ):
            for row in rows:
                copy.write_row(row)
        connection.commit()
        return len(rows), time.perf_counter() - started


def run_one(
    backend: str,
    rows: int,
    folder: str,
    server: str,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
) -> None:
    # Imported here so the measurement starts from a fresh process.
    from loyalty.clock import SystemClock
    from loyalty.db import Database, upgrade
    from loyalty.importer import import_members
    from loyalty.settings import load_settings

    base = Path(folder)
    first, second = base / f"members-{rows}.csv", base / f"members-{rows}-changed.csv"
    if not first.exists():
        generate(first, rows)
        generate(second, rows, changed=True)
    with database_url(backend, base, server) as url:
        database = Database(url)
        upgrade(database)
        settings = load_settings(database_url=url, default_phone_region="PL", redis_url=None)
        figures: dict[str, Any] = {"backend": backend, "rows": rows}
        for label, path in (("first", first), ("changed", second)):
            load = os.getloadavg()[0]
            started = time.perf_counter()
            report = import_members(database, path, settings, SystemClock())
            elapsed = time.perf_counter() - started
            figures[label] = {
                "rows_per_second": round(rows / elapsed),
                "seconds": round(elapsed, 2),
                "created": report.created,
                "updated": report.updated,
                "unchanged": report.unchanged,
                "rejected": report.rejected_rows,
                "load": round(load, 2),
            }
        figures["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        figures["parser_rss_mib"] = round(
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        )
        database.dispose()
        load = os.getloadavg()[0]
        written, elapsed = (
            _ceiling_sqlite(url.removeprefix("sqlite:///"))
            if backend == "sqlite"
            else _ceiling_postgres(url)
        )
        figures["ceiling"] = {"rows_per_second": round(written / elapsed), "load": round(load, 2)}
        queue.put(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], action="append")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="server, without a database")
    args = parser.parse_args()
    backends = args.backend or ["sqlite", "postgresql"]
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for backend in backends:
            for rows in args.rows:
                queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
                process = multiprocessing.Process(
                    target=run_one,
                    args=(backend, rows, folder, args.postgres_url.rstrip("/"), queue),
                )
                process.start()
                results.append(queue.get())
                process.join()
    print(
        f"{'backend':<11}{'rows':>8} {'import':<8}{'rows/s':>8} {'ceiling/s':>10} {'ratio':>6} "
        f"{'load':>5}  {'RSS MiB':>8} {'parser MiB':>11}"
    )
    for r in results:
        ceiling = r["ceiling"]["rows_per_second"]
        for label in ("first", "changed"):
            run = r[label]
            print(
                f"{r['backend']:<11}{r['rows']:>8} {label:<8}{run['rows_per_second']:>8} "
                f"{ceiling:>10} {run['rows_per_second'] / ceiling:>6.2f} {run['load']:>5}  "
                f"{r['peak_rss_mib']:>8} {r['parser_rss_mib']:>11}"
            )
    for backend in backends:
        runs = [r for r in results if r["backend"] == backend]
        if len(runs) > 1:
            small, large = runs[0], runs[-1]
            print(
                f"{backend} memory, {large['rows']} vs {small['rows']} rows: "
                f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (flat is about 1.0)"
            )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
