"""One mistake per journey file, each reported at its line and column with a hint."""

from __future__ import annotations

from pathlib import Path

import pytest

from automations.definition.validate import validate_paths

from .factories import template, write

HEAD = """\
id: case
name: Case
trigger: {type: event, event: order.completed}
entry: {every_time: true}
"""

HELLO = """\
steps:
  - id: hello
    type: send_email
    template: hello
"""

CASES: dict[str, tuple[str, list[str]]] = {
    "unknown key with a suggestion": (
        HEAD + HELLO + "  - id: wait\n    type: wait\n    durration: 3d\n",
        ["11:5: unknown key `durration` (did you mean `duration`?)"],
    ),
    "missing key": (
        "id: case\nname: Case\ntrigger: {type: event, event: order.completed}\n" + HELLO,
        ["1:1: missing `entry` (add `entry: …`)"],
    ),
    "wrong status": (
        HEAD + "status: live\n" + HELLO,
        ["5:9: `status` cannot be 'live' (use 'draft', 'active' or 'paused')"],
    ),
    "bad duration": (
        HEAD + HELLO + "  - id: later\n    type: wait\n    duration: 3 days\n",
        [
            '11:15: "3 days" is not a duration (write a number and a unit (min, h, d, w, mo, y), '
            'e.g. "30min", "2h", "3d", "1w", "1d12h", or ISO 8601 "P3D")'
        ],
    ),
    "months are not durations": (
        HEAD + "goal: {event: order.completed, within: P1M}\n" + HELLO,
        [
            '5:40: "P1M" uses years or months, which have no fixed length '
            '(write "1mo" (30 days), "1y" (365 days) or days, e.g. "P30D")'
        ],
    ),
    "bad local time": (
        "id: case\nname: Case\ntrigger: {type: date, field: birthday, at: 9am}\n"
        "entry: {once_per: year}\n" + HELLO,
        ['3:44: \'9am\' is not a time of day (write 24-hour "HH:MM" in quotes, e.g. "09:00")'],
    ),
    "unknown date field": (
        "id: case\nname: Case\ntrigger: {type: date, field: anniversary}\n"
        "entry: {once_per: year}\n" + HELLO,
        [
            "3:30: `field` cannot be 'anniversary' (use 'birthday', 'enrolled_at', "
            "'points_expiry' or 'last_order_at')"
        ],
    ),
    "trigger without type": (
        "id: case\nname: Case\ntrigger: {event: order.completed}\nentry: {once: true}\n" + HELLO,
        ["3:10: this trigger has no `type` (use one of: event, schedule, date)"],
    ),
    "split that does not add up": (
        HEAD
        + "steps:\n  - id: ab\n    type: split\n    variants:\n"
        + "      - {name: a, percent: 50, next: hello}\n"
        + "      - {name: b, percent: 30, next: hello}\n"
        + "  - id: hello\n    type: send_email\n    template: hello\n",
        [
            "6:5: variant percents plus holdout add up to 80, not 100 "
            "(adjust the percents so they add up to 100)"
        ],
    ),
    "wait of two kinds": (
        HEAD + HELLO + "  - id: w\n    type: wait\n    duration: 1d\n"
        "    until_event: {event: order.refunded, timeout: 1d}\n",
        [
            "9:5: a wait is either timed (duration, until) or for an event (until_event) "
            "(split it into two wait steps)"
        ],
    ),
    "duplicate step id": (
        HEAD + HELLO + "  - id: hello\n    type: exit\n",
        ["9:9: duplicate step id `hello` (also step 1) (give every step its own id)"],
    ),
    "reserved step id": (
        HEAD + HELLO + "  - id: end\n    type: exit\n",
        ["9:9: `end` is reserved for ending the journey (rename)"],
    ),
    "branch with next": (
        HEAD + "steps:\n  - id: b\n    type: branch\n    if: {consent: sms}\n    then: hello\n"
        "    next: hello\n  - id: hello\n    type: send_email\n    template: hello\n",
        [
            "10:5: a branch chooses where to go; `next` has no effect here "
            "(remove next and use else)"
        ],
    ),
    "exit with next": (
        HEAD + HELLO + "  - id: bye\n    type: exit\n    next: hello\n",
        ["11:5: an exit ends the journey; `next` has no effect here (remove next)"],
    ),
    "loop without a wait": (
        HEAD + "steps:\n  - id: hello\n    type: send_email\n    template: hello\n"
        "    next: hello\n",
        [
            "6:9: steps loop back to `hello` without a wait "
            "(add a wait step inside the loop, or end it with an exit)"
        ],
    ),
    "unreachable step is a warning": (
        HEAD + HELLO + "  - id: bye\n    type: exit\n  - id: never\n    type: exit\n",
        [
            "11:9: warning: step `never` is never reached "
            "(refer to it from another step, or remove it)"
        ],
    ),
    "event field without an event": (
        "id: case\nname: Case\ntrigger: {type: date, field: birthday}\n"
        "entry: {once_per: year}\naudience: {field: event.total, gt: 1}\n" + HELLO,
        [
            "5:19: `event.total` reads an event, but a date trigger has none "
            "(use event fields with an event trigger, a goal or wait until_event)"
        ],
    ),
    "unknown condition field": (
        HEAD + "audience:\n  any:\n    - {consent: sms}\n    - {field: points, gte: 1}\n" + HELLO,
        ["8:15: unknown field `points` (did you mean `points_balance`?)"],
    ),
    "condition without a kind": (
        HEAD + "audience: {tier: gold}\n" + HELLO,
        [
            "5:11: a condition needs one of the keys all, any, not, field, events, consent, "
            "engaged (e.g. {field: tier, in: [silver, gold]} or {all: [...]})"
        ],
    ),
    "engagement with an unknown journey": (
        HEAD + "audience: {engaged: {event: opened, journey: case_x, within: 30d}}\n" + HELLO,
        ["5:46: unknown journey `case_x` (did you mean `case`?)"],
    ),
    "engagement with an unknown step": (
        HEAD
        + "audience:\n  not: {engaged: {event: clicked, journey: case, step: helo, within: 7d}}\n"
        + HELLO,
        ["6:56: journey `case` has no step `helo` (did you mean `hello`?)"],
    ),
    "engagement with a step that sends no email": (
        HEAD
        + HELLO
        + "  - id: pause\n    type: wait\n    duration: 1d\n"
        + "  - id: opened\n    type: branch\n"
        + "    if: {engaged: {event: opened, journey: case, step: pause, within: 1d}}\n"
        + "    then: end\n",
        [
            "14:56: step `pause` of journey `case` sends no email (type: wait) "
            "(name an email step: hello)"
        ],
    ),
    "engagement step without its journey": (
        HEAD + "audience: {engaged: {event: opened, step: hello, within: 30d}}\n" + HELLO,
        [
            "5:43: `step: hello` needs `journey`: the journey the step belongs to "
            "(add `journey: case`, or the id of the journey whose step it is)"
        ],
    ),
    "engagement with an unknown event": (
        HEAD + "audience: {engaged: {event: read, within: 30d}}\n" + HELLO,
        ["5:29: `event` cannot be 'read' (use 'opened' or 'clicked')"],
    ),
    "tier amounts": (
        HEAD + HELLO + "  - id: pts\n    type: award_points\n    reason: x\n"
        "    amount: {bronze: 1, platinum: 3}\n",
        [
            "12:13: no amount for tier silver, gold (add those tiers, or a `default` amount)",
            "12:25: unknown tier `platinum` (use one of: bronze, silver, gold, default)",
        ],
    ),
    "amount that is not a number": (
        HEAD + HELLO + "  - id: pts\n    type: award_points\n    reason: x\n    amount: lots\n",
        [
            "12:13: `amount` must be a whole number of points, or tier names with points "
            "(e.g. amount: 100, or amount: {bronze: 100, silver: 150, gold: 200})"
        ],
    ),
    "id differs from file name": (
        HEAD.replace("id: case", "id: other") + HELLO,
        [
            "1:5: the id `other` differs from the file name `case.yaml` "
            "(rename the file to other.yaml or set id: case)"
        ],
    ),
    "crm property with an unknown variable": (
        HEAD + HELLO + "  - id: crm\n    type: update_crm\n    properties:\n"
        '      loyalty_tier: "{{ member.teir }}"\n',
        ["12:25: unknown variable `member.teir` (did you mean `tier`?)"],
    ),
    "sendgrid ids for some locales": (
        HEAD.replace("entry:", "locales: [en, pl]\nentry:")
        + "steps:\n  - id: hello\n    type: send_email\n    template_id: {en: d-1}\n",
        [
            "9:18: template_id has no id for locale pl "
            "(add a template id for every locale in locales)"
        ],
    ),
    "empty file": (
        "",
        [
            "1:1: the file is empty (start with `id: …`, `name: …`, `trigger: …`; "
            "see journeys/README.md)"
        ],
    ),
    "not a mapping": (
        "- a\n- b\n",
        [
            "1:1: the file is not a mapping (start with `id: …`, "
            "`name: …`, `trigger: …`; see journeys/README.md)"
        ],
    ),
}


@pytest.mark.parametrize("case", CASES)
def test_mistake_is_reported_where_it_is(tmp_path: Path, case: str) -> None:
    text, expected = CASES[case]
    template(tmp_path, "en", "hello", "email")
    path = write(tmp_path, "case.yaml", text)

    problems = validate_paths([path])

    assert [str(p).removeprefix(f"{path}:") for p in problems] == expected
