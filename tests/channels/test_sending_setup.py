"""Marketing email through SendGrid without EMAIL_FROM or POSTAL_ADDRESS is refused at start-up."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from automations.runtime.process import check_sending_setup, marketing_email_steps
from bench.soak_processes import loyalty_command
from cli import main
from loyalty.app import App
from tests.conftest import REDIS_URL, make_settings

ROOT = Path(__file__).resolve().parents[2]


def environment(app: App, tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "DATABASE_URL": app.database.url,
        "JOURNEYS_DIR": str(ROOT / "journeys"),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "SENDGRID_API_KEY": "SG.test-key",
        "SENDGRID_BASE_URL": "http://127.0.0.1:9",
        **extra,
    }


def test_the_scheduler_refuses_to_start_without_a_postal_address(app: App, tmp_path: Path) -> None:
    env = environment(app, tmp_path, EMAIL_FROM="rewards@acme.example")

    result = CliRunner().invoke(main, ["scheduler"], env=env)

    assert result.exit_code == 2
    [line] = result.stderr.splitlines()[-1:]
    assert line == (
        "error: marketing email needs POSTAL_ADDRESS (a verified sender and the postal address "
        "every marketing email must carry): set them, or mark these send_email steps "
        "`transactional: true`: birthday_bonus.birthday_email, points_expiring.reminder_email, "
        "referral_reward.thank_you, …"
    )
    assert "Traceback" not in result.output


def test_the_embedded_default_refuses_to_process_without_a_sender(app: App, tmp_path: Path) -> None:
    # Given no EMAIL_FROM and no POSTAL_ADDRESS, an event needing the workers is refused
    env = environment(app, tmp_path)
    result = CliRunner().invoke(
        main, ["events", "emit", "member.enrolled", "--member", "m-1"], env=env
    )
    assert result.exit_code == 2
    assert "marketing email needs EMAIL_FROM and POSTAL_ADDRESS" in result.stderr


def test_transactional_email_and_the_local_outbox_need_neither(app: App, tmp_path: Path) -> None:
    folder = tmp_path / "journeys"
    shutil.copytree(ROOT / "journeys", folder)
    for path in folder.glob("*.yaml"):
        text = path.read_text().replace("    transactional: true\n", "")
        path.write_text(
            text.replace("type: send_email\n", "type: send_email\n    transactional: true\n")
        )
    env = environment(app, tmp_path, JOURNEYS_DIR=str(folder))
    assert CliRunner().invoke(main, ["journeys", "publish"], env=env).exit_code == 0

    # Only transactional email: the scheduler gets past the check (to its Redis need)
    app.settings = make_settings(app.database, journeys_dir=folder, sendgrid_api_key="SG.k")
    assert marketing_email_steps(app) == []
    check_sending_setup(app)

    # Marketing email into the local outbox: no SendGrid, nothing to refuse
    outbox = environment(app, tmp_path)
    del outbox["SENDGRID_API_KEY"]
    result = CliRunner().invoke(
        main, ["events", "emit", "member.enrolled", "--member", "m-1"], env=outbox
    )
    assert "marketing email needs" not in result.output


@pytest.mark.integration
def test_loyalty_worker_refuses_to_start_in_one_line(
    postgres_app: App, redis_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, **environment(postgres_app, tmp_path, REDIS_URL=REDIS_URL)}
    published = subprocess.run(
        [*loyalty_command(), "journeys", "publish"], env=env, capture_output=True, text=True
    )
    assert published.returncode == 0, published.stderr

    worker = subprocess.run(
        [*loyalty_command(), "worker", "--processes", "1", "--threads", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert worker.returncode == 2
    assert worker.stderr.startswith(
        "error: marketing email needs EMAIL_FROM and POSTAL_ADDRESS (a verified sender"
    )
    assert len(worker.stderr.splitlines()) == 1
