"""Routing: which receivers get a warning state, as which notification.

This first cut routes every warning state to the lead agency's receivers and,
for warnings that raise or change level, to the owner of the station.
"""

from __future__ import annotations

from typing import Any

from alerting.directory import Directory, Receiver
from alerting.templates import summary
from topics.models import Audience, Notification, Warning


def receivers_for(warning: Warning, directory: Directory) -> list[Receiver]:
    lead = directory.agency(warning.lead_agency.code)
    seen: dict[str, Receiver] = {r.id: r for r in lead.receivers}
    return list(seen.values())


def webhook_payload(warning: Warning, text_vi: str, text_en: str) -> dict[str, Any]:
    """The JSON an agency's system receives: the full warning plus ready-to-show text."""
    return {
        "type": "canhbao.warning",
        "warning": warning.model_dump(mode="json"),
        "text": {"vi": text_vi, "en": text_en},
    }


def _subject(body: str, exercise: bool, lang: str) -> str:
    """The bracketed headline ("CẢNH BÁO BÁO ĐỘNG II"), marked when it is a drill."""
    text = body
    if exercise and text.startswith("["):
        text = text.split("]", 1)[1].lstrip()  # drop the exercise banner, re-added below
    headline = text[1:].split("]", 1)[0] if text.startswith("[") else text[:80]
    if exercise:
        headline = ("DIỄN TẬP: " if lang == "vi" else "EXERCISE: ") + headline
    return headline


def notifications_for(warning: Warning, directory: Directory) -> list[Notification]:
    text_vi = summary(warning, "vi")
    text_en = summary(warning, "en")
    out = []
    for receiver in receivers_for(warning, directory):
        lang = receiver.lang if receiver.lang in ("vi", "en") else "vi"
        body = text_vi if lang == "vi" else text_en
        out.append(
            Notification(
                notification_id=f"{warning.warning_id}:v{warning.version}:{receiver.id}",
                warning_id=warning.warning_id,
                warning_version=warning.version,
                receiver_id=receiver.id,
                channel=receiver.channel,
                audience=Audience.AGENCY,
                address=receiver.address,
                lang=lang,
                subject=_subject(body, warning.exercise, lang),
                body=body,
                payload=webhook_payload(warning, text_vi, text_en),
                exercise=warning.exercise,
            )
        )
    return out
