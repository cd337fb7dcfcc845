"""Import benchmark: rows per second and peak memory, at growing file sizes.

Memory must stay flat as the file grows (the import streams). Run with
`make bench` or `python -m bench.import_members [ROWS ...]`.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

from loyalty.member_rows import KNOWN_COLUMNS

HEADER = [*KNOWN_COLUMNS, "segment"]
ZONES = ["Europe/Warsaw", "America/New_York", "Australia/Sydney", "Asia/Kolkata", "UTC"]


def generate(path: Path, rows: int) -> None:
    rng = random.Random(rows)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(HEADER)
        for n in range(rows):
            writer.writerow(
                [
                    f"m-{n}",
                    f"member{n}@example.com",
                    f"+4860{n % 10_000_000:07d}",
                    "Anna",
                    f"Nowak{n}",
                    rng.choice(["pl", "en"]),
                    rng.choice(ZONES),
                    f"{rng.randint(1950, 2005)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                    rng.choice(["yes", "no", ""]),
                    rng.choice(["yes", "no", ""]),
                    "",
                    rng.choice(["vip", "new", "regular"]),
                ]
            )


def run_one(rows: int, folder: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    # Imported here so the measurement starts from a fresh process.
    from loyalty.clock import SystemClock
    from loyalty.db import Database, upgrade
    from loyalty.importer import import_members
    from loyalty.settings import load_settings

    base = Path(folder)
    csv_path = base / f"members-{rows}.csv"
    generate(csv_path, rows)
    database = Database(f"sqlite:///{base / f'bench-{rows}.db'}")
    upgrade(database)
    settings = load_settings(database_url=database.url, default_phone_region="PL")
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    report = import_members(database, csv_path, settings, SystemClock())
    elapsed = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put(
        {
            "rows": rows,
            "created": report.created,
            "rejected": report.rejected_rows,
            "seconds": round(elapsed, 2),
            "rows_per_second": round(rows / elapsed),
            "peak_rss_mib": round(peak / 1024, 1),
            "import_growth_mib": round((peak - baseline) / 1024, 1),
            "file_mib": round(csv_path.stat().st_size / 2**20, 1),
        }
    )


def main(sizes: list[int]) -> None:
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for rows in sizes:
            queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
            process = multiprocessing.Process(target=run_one, args=(rows, folder, queue))
            process.start()
            results.append(queue.get())
            process.join()
    print(
        f"{'rows':>8} {'file MiB':>9} {'seconds':>8} {'rows/s':>8} {'peak RSS MiB':>13} "
        f"{'growth MiB':>11}"
    )
    for r in results:
        print(
            f"{r['rows']:>8} {r['file_mib']:>9} {r['seconds']:>8} {r['rows_per_second']:>8} "
            f"{r['peak_rss_mib']:>13} {r['import_growth_mib']:>11}"
        )
    small, large = results[0], results[-1]
    print(
        f"memory ratio, {large['rows']} vs {small['rows']} rows: "
        f"{large['peak_rss_mib'] / small['peak_rss_mib']:.2f} (flat is about 1.0; "
        f"file grew {large['rows'] / small['rows']:.0f}x)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [10_000, 100_000, 200_000])
