"""`make bench`: every benchmark in turn, each in its own process, figures printed.

Each one can also run alone: `python -m bench.<name> --help`.
"""

from __future__ import annotations

import subprocess
import sys

BENCHES = [
    ("member import (rows/s, ratio to the ceiling, memory)", ["bench.import_members"]),
    ("birthday scan on PostgreSQL (1M and 2M members)", ["bench.date_scan"]),
    ("provider emulators (requests/s)", ["bench.sandbox_rps"]),
    ("sending (emails/s, requests per 1,000 emails, SMS/s)", ["bench.sending"]),
    (
        "CRM push (HubSpot calls and time vs the rate-limit floor on a busy machine, the "
        "unchanged compare; Salesforce Bulk 2.0)",
        ["bench.crm_push"],
    ),
    (
        "console pages on PostgreSQL (1M members, 10M messages; goal < 300 ms)",
        ["bench.console"],
    ),
    (
        "Shopify orders/paid webhooks through loyalty serve (accepted/s, p99 to the 2xx)",
        ["bench.shop_webhooks"],
    ),
    (
        "wake-up tick (enrollments woken together until all ran, batched and one message each)",
        ["bench.wake_tick"],
    ),
    ("journey simulator (a year for 1,000 and 10,000 members, and the ratio)", ["bench.simulate"]),
]


def main() -> int:
    failed = 0
    for title, module in BENCHES:
        print(f"\n== {title}", flush=True)
        result = subprocess.run([sys.executable, "-m", *module], check=False)
        failed += result.returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
