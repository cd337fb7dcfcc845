"""SendGrid v3 mail send validation, with the real API's messages and fields."""

from __future__ import annotations

import re
import time
from typing import Any

__all__ = ["MAX_PERSONALIZATIONS", "MAX_RECIPIENTS", "recipients", "validate_mail"]

MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
MAX_CATEGORIES = 10
MAX_SEND_AT_AHEAD_S = 72 * 3600
HELP = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

_FROM_MSG = (
    "The from object must be provided for every email send. It is an object that requires "
    'the email parameter, but may also contain a name parameter.  e.g. {"email" : '
    '"example@example.com"}  or {"email" : "example@example.com", "name" : "Example '
    'Recipient"}.'
)
_SUBJECT_MSG = (
    "The subject is required. You can get around this requirement if you use a template with "
    "a subject defined or if every personalization has a subject defined."
)
_CONTENT_MSG = (
    "Unless a valid template_id is provided, the content parameter is required. There must be "
    "at least one defined content block. We typically suggest both text/plain and text/html "
    "blocks are included, but only one block is required."
)


def _err(message: str, field: str | None, anchor: str) -> dict[str, Any]:
    return {"message": message, "field": field, "help": f"{HELP}#message.{anchor}"}


def recipients(personalization: dict[str, Any]) -> list[str]:
    """Every address of one personalization: to, then cc, then bcc."""
    out = []
    for key in ("to", "cc", "bcc"):
        for entry in personalization.get(key) or []:
            if isinstance(entry, dict) and isinstance(entry.get("email"), str):
                out.append(entry["email"])
    return out


def _email_errors(value: Any, field: str, anchor: str) -> list[dict[str, Any]]:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str):
        return [_err("The email parameter is required.", field + ".email", anchor)]
    if not EMAIL_RE.match(value["email"]):
        return [_err("Does not contain a valid address.", field + ".email", anchor)]
    return []


def _send_at_errors(value: Any, field: str, now: float) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, int) or value > now + MAX_SEND_AT_AHEAD_S:
        msg = (
            "The send_at parameter must be a valid Unix timestamp no more than "
            "72 hours in the future."
        )
        return [_err(msg, field, "send_at")]
    return []


def _string_map_errors(value: Any, field: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        return [_err(f"The {field} values must be strings.", field, field.split(".")[-1])]
    return []


def _personalization_errors(i: int, p: Any, now: float) -> list[dict[str, Any]]:
    base = f"personalizations.{i}"
    if not isinstance(p, dict):
        return [_err("Each personalization must be an object.", base, "personalizations")]
    errors: list[dict[str, Any]] = []
    to = p.get("to")
    if not isinstance(to, list) or not to:
        msg = (
            "The to array is required for all personalization objects, and must have at "
            "least one email object with a valid email address."
        )
        errors.append(_err(msg, f"{base}.to", "personalizations.to"))
    for key in ("to", "cc", "bcc"):
        for j, entry in enumerate(p.get(key) or []):
            errors += _email_errors(entry, f"{base}.{key}.{j}", f"personalizations.{key}")
    seen: set[str] = set()
    for key in ("to", "cc", "bcc"):
        for entry in p.get(key) or []:
            email = entry.get("email", "").lower() if isinstance(entry, dict) else ""
            if email and email in seen:
                msg = (
                    "Each email address in the personalization block should be unique between "
                    f"to, cc, and bcc. We found the first duplicate instance of [{email}] in "
                    f"the {base}.{key} field."
                )
                errors.append(_err(msg, base, "personalizations"))
                break
            seen.add(email)
    errors += _send_at_errors(p.get("send_at"), f"{base}.send_at", now)
    errors += _string_map_errors(p.get("custom_args"), f"{base}.custom_args")
    errors += _string_map_errors(p.get("headers"), f"{base}.headers")
    if p.get("subject") is not None and not isinstance(p["subject"], str):
        errors.append(_err("The subject must be a string.", f"{base}.subject", "subject"))
    return errors


def validate_mail(body: Any, now: float | None = None) -> list[dict[str, Any]]:
    """All validation errors SendGrid would report for a mail send body (empty when valid)."""
    now = time.time() if now is None else now
    if not isinstance(body, dict):
        return [_err("Bad Request", None, "bad_request")]
    errors: list[dict[str, Any]] = []
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        msg = "The personalizations field is required and must have at least one personalization."
        errors.append(_err(msg, "personalizations", "personalizations"))
        personalizations = []
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        msg = f"You may not have more than {MAX_PERSONALIZATIONS} personalizations per API request."
        errors.append(_err(msg, "personalizations", "personalizations"))
    for i, p in enumerate(personalizations):
        errors += _personalization_errors(i, p, now)
    total = sum(len(recipients(p)) for p in personalizations if isinstance(p, dict))
    if total > MAX_RECIPIENTS:
        msg = f"The total number of recipients must be no more than {MAX_RECIPIENTS}."
        errors.append(_err(msg, "personalizations", "personalizations"))

    if not isinstance(body.get("from"), dict):
        errors.append(_err(_FROM_MSG, "from.email", "from"))
    else:
        errors += _email_errors(body["from"], "from", "from")
    if body.get("reply_to") is not None:
        errors += _email_errors(body["reply_to"], "reply_to", "reply_to")

    template_id = body.get("template_id")
    if template_id is not None and not isinstance(template_id, str):
        errors.append(_err("The template_id must be a string.", "template_id", "template_id"))
    all_have_subject = bool(personalizations) and all(
        isinstance(p, dict) and p.get("subject") for p in personalizations
    )
    if not template_id and not body.get("subject") and not all_have_subject:
        errors.append(_err(_SUBJECT_MSG, "subject", "subject"))
    content = body.get("content")
    if not template_id and (not isinstance(content, list) or not content):
        errors.append(_err(_CONTENT_MSG, "content", "content"))
    for i, block in enumerate(content if isinstance(content, list) else []):
        if not isinstance(block, dict) or not block.get("type"):
            errors.append(_err("The content type is required.", f"content.{i}.type", "content"))
        elif not isinstance(block.get("value"), str) or not block["value"]:
            msg = "The content value must be a string at least one character in length."
            errors.append(_err(msg, f"content.{i}.value", "content"))

    categories = body.get("categories")
    if categories is not None:
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            errors.append(_err("Categories must be strings.", "categories", "categories"))
        elif len(categories) > MAX_CATEGORIES:
            msg = f"Too many categories. You may have at most {MAX_CATEGORIES} categories."
            errors.append(_err(msg, "categories", "categories"))
        elif any(len(c) > 255 for c in categories):
            msg = "A category cannot have more than 255 characters."
            errors.append(_err(msg, "categories", "categories"))

    asm = body.get("asm")
    if asm is not None:
        if not isinstance(asm, dict) or type(asm.get("group_id")) is not int:
            msg = "The asm.group_id parameter is required and must be an integer."
            errors.append(_err(msg, "asm.group_id", "asm.group_id"))
        else:
            groups = asm.get("groups_to_display")
            if groups is not None and (
                not isinstance(groups, list)
                or len(groups) > 25
                or not all(type(g) is int for g in groups)
            ):
                msg = "The asm.groups_to_display must be an array of at most 25 integers."
                errors.append(_err(msg, "asm.groups_to_display", "asm.groups_to_display"))

    errors += _send_at_errors(body.get("send_at"), "send_at", now)
    errors += _string_map_errors(body.get("custom_args"), "custom_args")
    errors += _string_map_errors(body.get("headers"), "headers")
    return errors
