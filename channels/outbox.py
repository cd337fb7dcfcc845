"""The local outbox: each message written as a file, the embedded default's "provider".

Email as `.eml` (RFC 5322, HTML and text parts), SMS as `.json`, under
OUTBOX_DIR/YYYY-MM-DD/. The file name is the message id, so writing twice
overwrites the same file, and erasing a member removes their messages' files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

from channels.render import Rendered

__all__ = ["erase_files", "file_name", "write_email", "write_sms"]

#: What the files of one message are called, for each suffix written.
SUFFIXES = ("eml", "json")


def file_name(message_id: int, suffix: str) -> str:
    """The name of a message's file (`eml` for an email, `json` for an SMS)."""
    return f"message-{message_id}.{suffix}"


def _path(folder: Path, sent_at: datetime, message_id: int, suffix: str) -> Path:
    day = folder / sent_at.date().isoformat()
    day.mkdir(parents=True, exist_ok=True)
    return day / file_name(message_id, suffix)


def erase_files(folder: Path, message_ids: Iterable[int]) -> int:
    """Delete the outbox files of these messages, on whatever day they were written.

    A member's erasure calls it with their messages' ids; returns how many files went.
    """
    names = {file_name(message_id, suffix) for message_id in message_ids for suffix in SUFFIXES}
    if not names or not folder.is_dir():
        return 0
    removed = 0
    for day in folder.iterdir():
        if not day.is_dir():
            continue
        for name in names.intersection(os.listdir(day)):
            (day / name).unlink(missing_ok=True)
            removed += 1
    return removed


def write_email(
    folder: Path,
    message_id: int,
    rendered: Rendered,
    *,
    to: str,
    sender: str,
    sent_at: datetime,
    headers: dict[str, str],
) -> Path:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = rendered.subject or ""
    mail["Date"] = format_datetime(sent_at)
    mail["Message-ID"] = make_msgid(idstring=str(message_id), domain="loyalty.local")
    for name, value in headers.items():
        mail[name] = value
    mail.set_content(rendered.text or "")
    mail.add_alternative(rendered.body, subtype="html")
    path = _path(folder, sent_at, message_id, "eml")
    path.write_bytes(bytes(mail))
    return path


def write_sms(
    folder: Path, message_id: int, rendered: Rendered, *, to: str, sent_at: datetime, **extra: Any
) -> Path:
    path = _path(folder, sent_at, message_id, "json")
    record = {"to": to, "body": rendered.body, "sent_at": sent_at.isoformat(), **extra}
    path.write_text(json.dumps(record, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return path
