"""What one process counts as it works: provider and CRM requests, scheduler ticks.

These live in the process that does the work (a worker, the scheduler, a CLI
command). Figures that the database already holds (messages by state,
enrollments, conversions, events, dead letters) are not counted here: the web
process reads them at scrape time, so they are right however many processes
there are (`web/metrics.py`).

Several processes on one host share their counts through prometheus-client's
multiprocess mode: set `PROMETHEUS_MULTIPROC_DIR` to an empty folder for every
`loyalty` process of the host before it starts (the client chooses its storage
at import), and `loyalty serve` adds the folder's figures to `/metrics`.

Labels stay few and closed: a provider, a CRM, an outcome, a status class or a
tick name — never a member, an address or a message id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

__all__ = [
    "CRM_RECORDS",
    "CRM_REQUESTS",
    "CRM_THROTTLED",
    "PROVIDER_REQUESTS",
    "PROVIDER_REQUEST_SECONDS",
    "TICK_FAILURES",
    "TICK_LAST_RUN",
    "TICK_SECONDS",
    "record_provider_request",
    "status_class",
]

# A `_created` series per counter and histogram doubles what is scraped and tells a
# dashboard nothing that a restart's reset does not (multiprocess mode has none).
disable_created_metrics()  # type: ignore[no-untyped-call]

#: Buckets of provider and CRM request durations, in seconds (timeouts reach 15 s).
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0)

PROVIDER_REQUESTS = Counter(
    "loyalty_provider_requests",
    "Send requests to SendGrid, Twilio and journeys' http endpoints, by outcome and status.",
    ["provider", "outcome", "status"],
)
PROVIDER_REQUEST_SECONDS = Histogram(
    "loyalty_provider_request_duration_seconds",
    "How long one send request to a provider took.",
    ["provider"],
    buckets=REQUEST_BUCKETS,
)
CRM_REQUESTS = Counter(
    "loyalty_crm_requests",
    "Calls to a CRM API, by outcome (ok, retried, failed).",
    ["crm", "outcome"],
)
CRM_THROTTLED = Counter(
    "loyalty_crm_throttled",
    "CRM calls refused for rate (HTTP 429, or Salesforce's request limit).",
    ["crm"],
)
CRM_RECORDS = Counter(
    "loyalty_crm_records",
    "Member records pushed to or pulled from a CRM, by result.",
    ["crm", "direction", "result"],
)
TICK_LAST_RUN = Gauge(
    "loyalty_scheduler_tick_last_run_timestamp_seconds",
    "When the scheduler last finished each tick (Unix time).",
    ["tick"],
    multiprocess_mode="max",
)
TICK_SECONDS = Histogram(
    "loyalty_scheduler_tick_duration_seconds",
    "How long one scheduler tick took.",
    ["tick"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0),
)
TICK_FAILURES = Counter(
    "loyalty_scheduler_tick_failures",
    "Scheduler ticks that raised.",
    ["tick"],
)


def status_class(status: int | None) -> str:
    """A provider's HTTP status as a label: `429` kept apart, else `2xx`…`5xx`; `none` without."""
    if status is None:
        return "none"
    if status == 429:
        return "429"
    return f"{status // 100}xx"


def record_provider_request(
    provider: str, outcome: str, status: int | None, seconds: float
) -> None:
    """Count one send request and its duration."""
    PROVIDER_REQUESTS.labels(provider, outcome, status_class(status)).inc()
    PROVIDER_REQUEST_SECONDS.labels(provider).observe(seconds)
