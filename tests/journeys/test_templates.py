"""Templates: layout, front matter, Liquid syntax and the variable contract per trigger."""

from __future__ import annotations

from pathlib import Path

import pytest

from automations.definition.validate import validate_paths

from .factories import template, write

EVENT = """\
id: case
name: Case
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - id: msg
    type: send_sms
    template: msg
"""

BIRTHDAY = EVENT.replace("{type: event, event: order.completed}", "{type: date, field: birthday}")
EXPIRY = EVENT.replace(
    "{type: event, event: order.completed}", "{type: date, field: points_expiry}"
)
SCHEDULE = EVENT.replace(
    "{type: event, event: order.completed}", '{type: schedule, cron: "0 9 * * *"}'
)
AWARD = EVENT + "  - id: pts\n    type: award_points\n    amount: 5\n    reason: x\n"


def problems_for(tmp_path: Path, journey: str, body: str, channel: str = "sms") -> list[str]:
    text = journey.replace("send_sms", f"send_{channel}")
    template(tmp_path, "en", "msg", channel, body)
    path = write(tmp_path, "case.yaml", text)
    return [str(p).removeprefix(f"{tmp_path}/") for p in validate_paths([path])]


@pytest.mark.parametrize(
    ("journey", "body"),
    [
        (EVENT, "{{ member.first_name }} {{ member.attributes.shoe_size }} {{ journey.name }}"),
        (EVENT, "{{ event.items[0].sku }} {{ event.total | times: 2 }}"),
        (BIRTHDAY, "{{ occurrence }} {{ member.birthday }}"),
        (SCHEDULE, "{{ occurrence }}"),
        (EXPIRY, "{{ points_expiring }} on {{ points_expiring_at | date: '%d.%m' }}"),
        (AWARD, "{{ award.points }} until {{ award.expires_at }}"),
        (EVENT, "{% assign n = member.first_name | upcase %}{{ n }}"),
        (EVENT, "{% for x in event.items %}{{ forloop.index }} {{ x.name }}{% endfor %}"),
    ],
)
def test_variables_the_trigger_provides_are_accepted(
    tmp_path: Path, journey: str, body: str
) -> None:
    assert problems_for(tmp_path, journey, body) == []


@pytest.mark.parametrize(
    ("journey", "body", "expected"),
    [
        (
            BIRTHDAY,
            "Hi\n  {{ event.total }}",
            "templates/en/msg.sms.liquid:2:6: unknown variable `event` "
            "(use one of: journey, member, occurrence, tier_name)",
        ),
        (
            EVENT,
            "{{ points_expiring }}",
            "templates/en/msg.sms.liquid:1:4: unknown variable `points_expiring` "
            "(use one of: event, journey, member, tier_name)",
        ),
        (
            EVENT,
            "{{ member.frist_name }}",
            "templates/en/msg.sms.liquid:1:4: unknown variable `member.frist_name` "
            "(did you mean `first_name`?)",
        ),
        (
            EVENT,
            "{{ member.tier.name }}",
            "templates/en/msg.sms.liquid:1:4: `member.tier` has no field `name` "
            "(use `member.tier` on its own)",
        ),
        (
            EVENT,
            "{{ unsubscribe_url }}",
            "templates/en/msg.sms.liquid:1:4: unknown variable `unsubscribe_url` "
            "(use one of: event, journey, member, tier_name)",
        ),
        (
            EVENT,
            "ok\n{% if %}yes{% endif %}",
            "templates/en/msg.sms.liquid:2:4: Liquid syntax: missing expression",
        ),
        (
            EVENT,
            "{{ member.first_name | shout }}",
            "templates/en/msg.sms.liquid:1:24: unknown filter `shout` (did you mean `sort`?)",
        ),
        (
            EVENT,
            "{{ member.tier | upcse }}",
            "templates/en/msg.sms.liquid:1:18: unknown filter `upcse` (did you mean `upcase`?)",
        ),
        (
            EVENT,
            "{{ member.tier | zzz }}",
            "templates/en/msg.sms.liquid:1:18: unknown filter `zzz` "
            "(see the list in the Liquid documentation)",
        ),
        (
            EVENT,
            "---\nsubject: x\n---\nHi",
            "templates/en/msg.sms.liquid:1:1: SMS templates have no front matter "
            "(remove the --- block)",
        ),
    ],
)
def test_template_mistakes_point_into_the_template(
    tmp_path: Path, journey: str, body: str, expected: str
) -> None:
    assert problems_for(tmp_path, journey, body) == [expected]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "<p>no front matter</p>",
            "1:1: an email template starts with a front-matter block "
            '(begin the file with ---, subject: "…", preheader: "…", ---)',
        ),
        (
            "---\npreheader: hi\n---\nbody",
            "1:1: the front matter has no `subject` "
            '(begin the file with ---, subject: "…", preheader: "…", ---)',
        ),
        (
            "---\nsubject: hi\nfrom: me\n---\nbody",
            "3:1: unknown field `from` (allowed: subject, preheader)",
        ),
        (
            '---\nsubject: "Hi {{ member.nam }}"\n---\nbody',
            "2:17: unknown variable `member.nam` (see the list in journeys/README.md)",
        ),
        (
            "---\nsubject: Hi\n---\n<p>\n{{ memberr.first_name }}</p>",
            "5:4: unknown variable `memberr` (did you mean `member`?)",
        ),
    ],
)
def test_email_front_matter(tmp_path: Path, body: str, expected: str) -> None:
    assert problems_for(tmp_path, EVENT, body, channel="email") == [
        f"templates/en/msg.email.liquid:{expected}"
    ]


def test_email_templates_get_an_unsubscribe_url_and_surveys_a_survey_url(tmp_path: Path) -> None:
    journey = EVENT.replace(
        "    type: send_sms\n", "    type: send_survey\n    survey: nps\n    channel: email\n"
    )
    body = '---\nsubject: "Rate us"\n---\n{{ survey_url }} {{ unsubscribe_url }}'

    assert problems_for(tmp_path, journey, body, channel="email") == []
