"""A journey drawn as SVG: one box per step, top to bottom, arrows for where each step goes.

The layout is the definition's own order; the step that follows is a straight
arrow down, any other way (branch, split variant, wait outcome, `next`) an arc
on the right, labelled. Text is escaped: ids and figures only, no markup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from automations.definition import END, Journey
from automations.definition.models import Branch, Split, Wait

__all__ = ["StepFigures", "journey_svg"]

BOX_W, BOX_H, GAP, LEFT, TOP = 320, 74, 34, 20, 16


@dataclass
class StepFigures:
    """What the console shows on one step."""

    entered: int = 0
    waiting: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    suppressed: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        first = f"entered {self.entered} · waiting {self.waiting}"
        second = f"sent {self.sent} · deferred {self.deferred} · failed {self.failed}"
        why = ", ".join(f"{reason} {n}" for reason, n in sorted(self.suppressed.items()))
        third = f"suppressed {sum(self.suppressed.values())}" + (f" ({why})" if why else "")
        return [first, second, third]


def _ways(journey: Journey) -> list[tuple[str, str, str]]:
    """(from, to, label) for every way out of every step."""
    ways: list[tuple[str, str, str]] = []
    for step in journey.steps:
        if isinstance(step, Branch):
            ways.append((step.id, step.then, "if"))
            ways.append((step.id, step.else_ or journey.following(step.id), "else"))
        elif isinstance(step, Split):
            for variant in step.variants:
                ways.append((step.id, variant.next, f"{variant.name} {variant.percent}%"))
            if step.holdout:
                ways.append((step.id, END, f"holdout {step.holdout}%"))
        elif isinstance(step, Wait) and step.until_event is not None:
            ways.append((step.id, step.on_event or journey.following(step.id), "event"))
            ways.append((step.id, step.on_timeout or journey.following(step.id), "timeout"))
        elif step.type != "exit":
            ways.append((step.id, journey.following(step.id), ""))
        else:
            ways.append((step.id, END, ""))
    return ways


def journey_svg(journey: Journey, figures: dict[str, StepFigures]) -> str:
    """The SVG markup of the journey with each step's figures."""
    rows = {step.id: n for n, step in enumerate(journey.steps)}
    rows[END] = len(journey.steps)
    height = TOP + (len(journey.steps) + 1) * (BOX_H + GAP)
    width = LEFT + BOX_W + 260
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="steps of {escape(journey.id)}">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for n, step in enumerate(journey.steps):
        y = TOP + n * (BOX_H + GAP)
        shown = figures.get(step.id, StepFigures())
        parts.append(
            f'<g class="step" data-step="{escape(step.id)}">'
            f'<rect x="{LEFT}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            'fill="#f4f6fb" stroke="#345"/>'
            f'<text x="{LEFT + 10}" y="{y + 18}" font-weight="bold">{escape(step.id)} '
            f'<tspan font-weight="normal" fill="#567">({escape(step.type)})</tspan></text>'
        )
        for k, line in enumerate(shown.lines()):
            parts.append(
                f'<text x="{LEFT + 10}" y="{y + 37 + 15 * k}" font-size="12">{escape(line)}</text>'
            )
        parts.append("</g>")
    end_y = TOP + len(journey.steps) * (BOX_H + GAP)
    parts.append(
        f'<rect x="{LEFT + BOX_W / 2 - 40}" y="{end_y}" width="80" height="30" rx="15" '
        f'fill="#eee" stroke="#345"/><text x="{LEFT + BOX_W / 2}" y="{end_y + 20}" '
        'text-anchor="middle">end</text>'
    )
    arcs = 0
    for source, target, label in _ways(journey):
        start, stop = rows[source], rows.get(target, rows[END])
        y1 = TOP + start * (BOX_H + GAP) + BOX_H
        y2 = TOP + stop * (BOX_H + GAP)
        if stop == start + 1 and label in ("", "else", "timeout"):
            x = LEFT + BOX_W / 2
            parts.append(
                f'<line x1="{x}" y1="{y1}" x2="{x}" y2="{y2}" stroke="#555" '
                'marker-end="url(#arrow)"/>'
            )
            if label:
                parts.append(
                    f'<text x="{x + 6}" y="{y1 + 20}" font-size="11">{escape(label)}</text>'
                )
            continue
        arcs += 1
        reach = LEFT + BOX_W + 20 + 22 * arcs
        ya, yb = y1 - BOX_H / 2, y2 + (15 if stop == rows[END] else BOX_H / 2)
        xb = LEFT + BOX_W / 2 + 40 if stop == rows[END] else LEFT + BOX_W
        parts.append(
            f'<path d="M{LEFT + BOX_W},{ya} C{reach},{ya} {reach},{yb} {xb},{yb}" fill="none" '
            'stroke="#555" marker-end="url(#arrow)"/>'
        )
        if label:
            parts.append(
                f'<text x="{reach + 4}" y="{(ya + yb) / 2}" font-size="11">{escape(label)}</text>'
            )
    parts.append("</svg>")
    return "".join(parts)
