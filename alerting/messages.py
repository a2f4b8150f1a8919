"""The renderer the notify stage uses: channel templates, and CAP for partners."""

from __future__ import annotations

from alerting.directory import Directory
from alerting.notify import Lang, Message, Renderer
from topics.models import Audience, Channel, Warning


def renderer(directory: Directory) -> Renderer:
    from alerting.cap import cap_xml
    from alerting.render import render

    def one(warning: Warning, channel: Channel, lang: Lang, audience: Audience) -> Message:
        if channel is Channel.CAP:
            xml = cap_xml(warning, directory)
            return Message(subject=f"CAP {warning.warning_id} v{warning.version}", body=xml)
        r = render(warning, channel, lang, audience)
        body = r.sms.text if channel is Channel.SMS and r.sms is not None else r.text
        return Message(subject=r.subject, body=body, html=r.html, payload=dict(r.payload or {}))

    return one
