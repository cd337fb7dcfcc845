"""Validation catches what would fail at run time: event types, event data, tiers, partials."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from automations.definition.validate import validate_paths
from cli.journeys import journeys

from .factories import template, write

BROKEN = """\
id: welcome_copy
name: Welcome copy
trigger: {type: event, event: member.enrolled}
audience:
  field: tier
  equals: gold
entry: {once: true}
goal: {event: order_placed, within: 14d}
steps:
  - id: hello
    type: send_email
    template: hello
  - id: first_order
    type: wait
    until_event: {event: order.complete, timeout: 3M}
  - id: vip
    type: branch
    if: {field: tier, gte: platinum}
    then: hello
"""

REUSED = """\
id: reused
name: Order thanks reused on enrolment
trigger: {type: event, event: member.enrolled}
entry: {once: true}
steps:
  - id: thanks
    type: send_email
    template: order_thanks
"""

THANKS = '---\nsubject: "Order {{ event.order_id }}"\n---\n<p>{{ event.total }}</p>\n'


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(journeys, ["validate", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_one_run_reports_every_problem_of_every_file_at_its_place(tmp_path: Path) -> None:
    # Given a folder of journeys broken in many ways at once
    write(tmp_path, "welcome_copy.yaml", BROKEN)
    write(tmp_path, "reused.yaml", REUSED)
    template(tmp_path, "en", "hello", "email", '---\nsubject: Hi\n---\n{% render "footer" %}\n')
    template(tmp_path, "en", "order_thanks", "email", THANKS + "{% render 'signature' %}\n")
    write(tmp_path, "templates/_partials/en/footer.liquid", "{{ member.frist_name }}\n")

    # When it is validated once
    code, out, err = run(str(tmp_path))

    # Then every problem is there, each at file:line:column
    lines = {line.removeprefix(f"{tmp_path}/") for line in out.splitlines()}
    assert lines == {
        "welcome_copy.yaml:6:3: unknown key `equals` (did you mean `eq`?)",
        "welcome_copy.yaml:8:15: unknown event type `order_placed` "
        "(did you mean `order.completed`?)",
        "welcome_copy.yaml:15:26: unknown event type `order.complete` "
        "(did you mean `order.completed`?)",
        'welcome_copy.yaml:15:51: "3M": `m` could mean minutes or months (write 3min or 3mo)',
        "welcome_copy.yaml:18:28: unknown tier `platinum`; the tiers are bronze, silver, gold "
        "(the tiers come from TIER_THRESHOLDS)",
        "templates/_partials/en/footer.liquid:1:4: unknown variable `member.frist_name` "
        "(did you mean `first_name`?)",
        "templates/en/order_thanks.email.liquid:2:20: unknown variable `event.order_id`: "
        "the data of `member.enrolled` has no `order_id` (`member.enrolled` carries no data)",
        "templates/en/order_thanks.email.liquid:4:7: unknown variable `event.total`: "
        "the data of `member.enrolled` has no `total` (`member.enrolled` carries no data)",
        "templates/en/order_thanks.email.liquid:5:4: partial `signature` does not exist: "
        f"no file {tmp_path}/templates/_partials/en/signature.liquid "
        "(create it, or correct the partial's name)",
    }
    assert code == 1
    assert err == "9 errors in 3 files; 0 of 2 journeys valid\n"


def test_a_step_after_an_awaited_event_sees_that_event_s_data(tmp_path: Path) -> None:
    # Given a birthday journey that waits for an order, then thanks for it
    text = """\
id: case
name: Case
trigger: {type: date, field: birthday}
entry: {once_per: year}
steps:
  - id: await_order
    type: wait
    until_event: {event: order.completed, timeout: 7d}
    on_event: thanks
    on_timeout: end
  - id: thanks
    type: send_sms
    template: thanks
  - id: crm
    type: update_crm
    properties: {last_order: "{{ event.totl }}"}
"""
    path = write(tmp_path, "case.yaml", text)
    template(tmp_path, "en", "thanks", "sms", "Thanks for {{ event.order_id }}, {{ event.cost }}")

    problems = [str(p).removeprefix(f"{tmp_path}/") for p in validate_paths([path])]

    assert problems == [
        "case.yaml:16:34: unknown variable `event.totl`: the data of `order.completed` has no "
        "`totl` (did you mean `total`?)",
        "templates/en/thanks.sms.liquid:1:37: unknown variable `event.cost`: the data of "
        "`order.completed` has no `cost` (use one of: browser_ip, currency, discount_codes, "
        "items, order_id, order_name, shipping_address_hash, total)",
    ]


def test_conditions_read_only_data_their_event_carries(tmp_path: Path) -> None:
    text = """\
id: case
name: Case
trigger: {type: event, event: order.completed, conditions: {field: event.totl, gt: 5}}
entry: {every_time: true}
goal: {event: survey.answered, conditions: {field: event.score, gte: 9}, within: 7d}
steps:
  - id: bye
    type: exit
"""
    path = write(tmp_path, "case.yaml", text)

    problems = [str(p).removeprefix(f"{path}:") for p in validate_paths([path])]

    assert problems == [
        "3:68: `event.totl`: the data of `order.completed` has no `totl` (did you mean `total`?)"
    ]


TIERED = """\
id: vip
name: VIP
trigger: {type: event, event: review.created}
audience: {field: tier, in: [gold, platinum]}
entry: {every_time: true}
steps:
  - id: bonus
    type: award_points
    amount: {silver: 10, gold: 20, platinum: 50}
    reason: Review
"""


@pytest.mark.parametrize("through", ["environment", ".env"])
def test_validate_judges_tiers_and_event_types_by_the_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, through: str
) -> None:
    # Given a silver/gold/platinum program with a custom event type
    folder = tmp_path / "journeys"
    write(folder, "vip.yaml", TIERED)
    settings = {
        "TIER_THRESHOLDS": "silver:0,gold:1000,platinum:5000",
        "EVENT_TYPES": "review.created",
    }
    monkeypatch.chdir(tmp_path)
    for name in settings:
        monkeypatch.delenv(name, raising=False)
    env: dict[str, str] = {}
    if through == "environment":
        env = settings
    else:
        (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    # Then the journey is valid for that program
    assert run(str(folder), env=env)[:2] == (0, "1 journey valid\n")


def test_the_default_tiers_refuse_a_platinum_journey(tmp_path: Path) -> None:
    path = write(tmp_path, "vip.yaml", TIERED.replace("review.created", "order.completed"))

    problems = [str(p).removeprefix(f"{path}:") for p in validate_paths([path])]

    assert problems == [
        "4:29: unknown tier `platinum`; the tiers are bronze, silver, gold "
        "(the tiers come from TIER_THRESHOLDS)"
    ]


def test_a_locale_without_its_own_partial_uses_the_default_locale_s(tmp_path: Path) -> None:
    text = """\
id: case
name: Case
trigger: {type: event, event: order.completed}
entry: {every_time: true}
locales: [en, pl]
steps:
  - id: hello
    type: send_email
    template: hello
"""
    path = write(tmp_path, "case.yaml", text)
    body = "---\nsubject: Hi\n---\n{% render 'footer', note: 'x' %}\n"
    template(tmp_path, "en", "hello", "email", body)
    template(tmp_path, "pl", "hello", "email", body)
    footer = "{{ note }} {{ event.total }} <a href='{{ unsubscribe_url }}'>x</a>\n"
    write(tmp_path, "templates/_partials/en/footer.liquid", footer)

    assert validate_paths([path]) == []
