"""The journey diagram: every step a box, every way out of a step an arrow, labels escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from automations.definition import load_journeys
from web.console.diagram import StepFigures, journey_svg

JOURNEYS = Path(__file__).resolve().parents[2] / "journeys"
SVG = "{http://www.w3.org/2000/svg}"


def test_splits_branches_and_event_waits_are_drawn_with_their_labels() -> None:
    files, _ = load_journeys([JOURNEYS / "post_purchase_nps.yaml"], JOURNEYS / "templates")
    [journey_file] = files
    journey = journey_file.journey
    figures = {"survey_email": StepFigures(entered=7, sent=5, suppressed={"no_consent": 2})}

    svg = ET.fromstring(journey_svg(journey, figures))

    boxes = [g.get("data-step") for g in svg.iter(f"{SVG}g")]
    assert boxes == [step.id for step in journey.steps]
    labels = {t.text for t in svg.iter(f"{SVG}text")}
    assert {"email 50%", "holdout 10%", "if", "else", "event", "timeout", "end"} <= labels
    assert "entered 7 · waiting 0" in labels
    assert "suppressed 2 (no_consent 2)" in labels
    arrows = [*svg.iter(f"{SVG}line"), *svg.iter(f"{SVG}path")]
    # One per way out: the timed wait 1, the split's 2 variants and holdout 3, survey_email 1,
    # the branch 2, survey_sms 1, the event wait 2, reminder 1; plus the arrow head's path.
    assert len(arrows) == 11 + 1
