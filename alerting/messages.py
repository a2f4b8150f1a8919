"""The renderers the notify stage uses: channel templates, and CAP for partners;
for aggregation groups, one warning as usual (marked when a reminder) or a digest."""

from __future__ import annotations

from collections.abc import Sequence

from alerting.directory import Directory
from alerting.notify import FlushRenderer, Lang, Message, Renderer
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


def flush_renderer() -> FlushRenderer:
    from alerting.render import render, render_digest

    def flush(
        warnings: Sequence[Warning],
        changed: frozenset[str],
        channel: Channel,
        lang: Lang,
        audience: Audience,
        reminder: bool,
        labels: dict[str, str],
    ) -> Message:
        if len(warnings) == 1:
            r = render(warnings[0], channel, lang, audience, reminder=reminder)
        else:
            r = render_digest(warnings, channel, lang, audience, changed=changed,
                              reminder=reminder, labels=labels)  # fmt: skip
        body = r.sms.text if channel is Channel.SMS and r.sms is not None else r.text
        return Message(subject=r.subject, body=body, html=r.html, payload=dict(r.payload or {}))

    return flush
