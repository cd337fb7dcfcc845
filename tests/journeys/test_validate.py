from __future__ import annotations

from pathlib import Path

from automations.definition.validate import load_journeys, validate_paths

from .factories import journey, lines, template, write

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_journeys_are_valid() -> None:
    folder = ROOT / "journeys"

    loaded, problems = load_journeys([folder])

    assert lines(problems) == []
    assert sorted(j.journey.id for j in loaded) == [
        "birthday_bonus",
        "points_expiring",
        "post_purchase_nps",
        "referral_reward",
        "reward_code",
        "welcome",
    ]


def broken_folder(tmp_path: Path) -> Path:
    """One valid journey and one broken file per kind of mistake."""
    template(tmp_path, "en", "hello", "email")
    journey(tmp_path, "fine")
    write(tmp_path, "bad_yaml.yaml", "id: bad_yaml\nname: [oops\ntrigger: {}\n")
    journey(
        tmp_path,
        "unknown_step",
        """\
        id: unknown_step
        name: Unknown step
        trigger: {type: event, event: order.completed}
        entry: {every_time: true}
        steps:
          - id: first
            type: send_emial
            template: hello
        """,
    )
    journey(tmp_path, "missing_template", MISSING_TEMPLATE)
    journey(tmp_path, "unknown_variable", UNKNOWN_VARIABLE)
    template(
        tmp_path,
        "en",
        "typo",
        "sms",
        "Hi {{ member.first_name }},\nyou have {{ member.points }} points\n",
    )
    journey(tmp_path, "bad_cron", SCHEDULE.format(id="bad_cron", cron="0 25 * * *", zone="member"))
    journey(
        tmp_path,
        "bad_zone",
        SCHEDULE.format(id="bad_zone", cron="0 10 * * mon", zone="Europe/Warsow"),
    )
    journey(tmp_path, "missing_step", MISSING_STEP)
    return tmp_path


MISSING_TEMPLATE = """\
id: missing_template
name: Missing template
locales: [en, pl]
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - id: hello
    type: send_email
    template: hello
"""

UNKNOWN_VARIABLE = """\
id: unknown_variable
name: Unknown variable
trigger: {type: date, field: birthday, at: "09:00"}
entry: {once_per: year}
steps:
  - id: sms
    type: send_sms
    template: typo
"""

SCHEDULE = """\
id: {id}
name: Weekly
trigger:
  type: schedule
  cron: "{cron}"
  zone: {zone}
entry: {{every_time: true}}
steps:
  - id: hello
    type: send_email
    template: hello
"""

MISSING_STEP = """\
id: missing_step
name: Missing step
trigger: {type: event, event: order.completed}
entry: {every_time: true}
steps:
  - id: check
    type: branch
    if: {consent: sms}
    then: send_smss
  - id: hello
    type: send_email
    template: hello
"""


def test_each_broken_file_gets_one_precise_message_and_the_rest_still_load(
    tmp_path: Path,
) -> None:
    folder = broken_folder(tmp_path)

    loaded, problems = load_journeys([folder])

    t = str(tmp_path)
    assert lines(problems) == [
        f"{t}/bad_cron.yaml:5:9: invalid cron expression `0 25 * * *`: Error validating "
        "expression '25': the last value (25) is higher than the maximum value (23) "
        '(five fields: minute hour day month weekday, e.g. "0 10 * * mon")',
        f"{t}/bad_yaml.yaml:3:8: invalid YAML: while parsing a flow sequence, expected ',' or "
        "']', but got ':' (check the indentation and quoting around this spot)",
        f"{t}/bad_zone.yaml:6:9: unknown time zone `Europe/Warsow` (did you mean `Europe/Warsaw`?)",
        f"{t}/missing_step.yaml:9:11: step `check` goes to `send_smss`, which is not a step of "
        "this journey (use one of: check, hello, end)",
        f"{t}/missing_template.yaml:9:15: template `hello` has no pl email version: no file "
        f"{t}/templates/pl/hello.email.liquid (create it, or correct the template name, "
        "or remove pl from locales)",
        f"{t}/unknown_step.yaml:7:11: unknown step type `send_emial` (did you mean `send_email`?)",
        f"{t}/templates/en/typo.sms.liquid:2:13: unknown variable `member.points` "
        "(did you mean `points_balance`?)",
    ]
    assert [j.journey.id for j in loaded] == ["fine"]


def test_a_template_shared_by_two_journeys_is_reported_once(tmp_path: Path) -> None:
    template(tmp_path, "en", "hello", "email", '---\nsubject: "Hi"\n---\n{{ member.nope }}\n')
    journey(tmp_path, "one")
    journey(tmp_path, "two")

    problems = validate_paths([tmp_path])

    assert lines(problems) == [
        f"{tmp_path}/templates/en/hello.email.liquid:4:4: unknown variable `member.nope` "
        "(see the list in journeys/README.md)"
    ]


def test_two_files_with_the_same_id(tmp_path: Path) -> None:
    template(tmp_path, "en", "hello", "email")
    journey(tmp_path, "one")
    write(tmp_path, "two.yaml", (tmp_path / "one.yaml").read_text())

    loaded, problems = load_journeys([tmp_path])

    assert lines(problems) == [
        f"{tmp_path}/two.yaml:1:5: journey id `one` is also used by {tmp_path}/one.yaml "
        "(every journey needs its own id)",
        f"{tmp_path}/two.yaml:1:5: the id `one` differs from the file name `two.yaml` "
        "(rename the file to one.yaml or set id: two)",
    ]
    assert [j.path.name for j in loaded] == ["one.yaml"]
