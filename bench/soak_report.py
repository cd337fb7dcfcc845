"""What a soak prints: notes as it goes, on stderr, and its report at the end, one line a
figure on stdout (what failed, by id, on stderr)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bench.soak_audit import Findings
from bench.soak_progress import ProviderLog

if TYPE_CHECKING:
    from bench.soak import Plan
    from bench.soak_feed import Feeder

__all__ = ["Outcome", "report", "say"]


def say(message: str) -> None:
    """A note on the soak's progress, on stderr."""
    print(f"# {message}", file=sys.stderr, flush=True)


@dataclass
class Outcome:
    findings: Findings
    providers: dict[str, ProviderLog]
    quiet_after: float | None
    last_progress: str
    kills: int
    redis_restarts: int
    restarted: list[str]
    feeder: Feeder
    files_not_ingested: int
    seconds: float


def report(outcome: Outcome, plan: Plan) -> bool:
    """Print one line per figure; True when the soak passed."""
    f, providers = outcome.findings, outcome.providers
    email, sms = providers["email"], providers["sms"]
    states = " ".join(f"{s}={n}" for s, n in sorted(f.messages_by_state.items()))
    lost_email = sum(1 for _, c, _ in f.never_received if c == "email")
    lost_sms = len(f.never_received) - lost_email
    ledger = "; ".join(f"{name} {len(items)}" for name, items in f.ledger.items())
    duplicated_copies = sum(n - 1 for ids in f.duplicated.values() for n in ids.values())
    unprocessed = f.events - f.events_processed
    left = sum(1 for _, _, request_left, _ in f.stuck_claimed if request_left)
    left_accepted = sum(1 for _, _, request_left, n in f.stuck_claimed if request_left and n)
    lines = [
        f"members: {f.members} ({f.referred} referred by another member)",
        f"events: {f.events} stored, {f.events_processed} processed ({f.events_with_error} "
        f"with an error recorded), {unprocessed} unprocessed; {outcome.feeder.lines} sent by "
        f"the soak, {outcome.files_not_ingested} batch files never ingested",
        f"messages: {sum(f.messages_by_channel.values())} (email "
        f"{f.messages_by_channel['email']}, sms {f.messages_by_channel['sms']})",
        f"messages by state: {states or 'none'}",
        f"emails accepted by SendGrid: {len(email.accepted)} in {email.requests} requests "
        f"({email.injected_errors} injected errors, {email.dropped_answers} dropped answers)",
        f"sms accepted by Twilio: {len(sms.accepted)} in {sms.requests} requests "
        f"({sms.injected_errors} injected errors, {sms.dropped_answers} dropped answers)",
        f"lost: {f.lost} (left per the database but never received: {lost_email} email, "
        f"{lost_sms} sms; journey steps without their message or points: "
        f"{len(f.steps_without_effect)} of {f.steps_checked}; journeys never entered: "
        f"{len(f.journeys_not_entered)}, of {f.entries_checked} triggering events and the "
        "date scan)",
        f"duplicated at the providers: {f.duplicated_count} (message ids accepted more than "
        f"once; {duplicated_copies} extra copies)",
        f"duplicate ledger effects: {f.ledger_count} ({ledger})",
        f"stuck claimed: {len(f.stuck_claimed)} (request left: {left}, of which a provider "
        f"accepted {left_accepted}; never left, which the product returns to pending after "
        f"its claim lease: {len(f.stuck_claimed) - left})",
        f"unknown: {len(f.unknown)} (backed by an answer the sandbox dropped: {f.unknown_dropped})",
        f"accepted by a provider but not recorded as sent: {len(f.accepted_not_recorded)}",
        f"worker kills: {outcome.kills} (processes that ended on their own and were "
        f"restarted: {len(outcome.restarted)})",
        f"redis restarts: {outcome.redis_restarts}",
        "time to quiescence: "
        + (
            f"{outcome.quiet_after:.1f} s"
            if outcome.quiet_after is not None
            else f"not reached in {plan.quiesce_timeout:.0f} s ({outcome.last_progress})"
        ),
    ]
    passed = (
        f.lost == 0
        and f.duplicated_count == 0
        and f.ledger_count == 0
        and not f.stuck_claimed
        and outcome.quiet_after is not None
    )
    lines.append(f"soak time: {outcome.seconds:.0f} s")
    lines.append(f"result: {'PASS' if passed else 'FAIL'}")
    for line in lines:
        print(line, flush=True)
    _details(f)
    return passed


def _details(f: Findings) -> None:
    """What failed, by id, on stderr: enough to start looking at the rows."""
    samples: list[tuple[str, list[Any]]] = [
        ("never received (id, channel, state)", list(f.never_received)),
        ("steps without their effect (enrollment, step)", list(f.steps_without_effect)),
        ("journeys never entered", list(f.journeys_not_entered)),
        (
            "stuck claimed (message id, channel, request left, times accepted)",
            list(f.stuck_claimed),
        ),
        ("accepted but not recorded as sent (id, state)", list(f.accepted_not_recorded)),
        *[(f"duplicated at {c} (id: times)", list(d.items())) for c, d in f.duplicated.items()],
        *[(f"ledger: {name}", items) for name, items in f.ledger.items()],
    ]
    for title, items in samples:
        if items:
            say(f"{title}: {items[:20]}{' …' if len(items) > 20 else ''}")
