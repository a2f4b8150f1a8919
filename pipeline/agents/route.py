"""Stage 3: route each warning state to its receivers as rendered notifications."""

from __future__ import annotations

from typing import Any

import faust

from alerting.directory import Directory
from alerting.routing import notifications_for
from canhbao.metrics import NOTIFICATIONS_ROUTED
from topics.catalogue import WARNINGS, notifications_topic
from topics.models import Channel, Warning


def register(app: faust.App, directory: Directory) -> None:
    from pipeline.app import raw_topic

    source = raw_topic(app, WARNINGS)
    outs = {c: raw_topic(app, notifications_topic(c)) for c in Channel}

    async def route(stream: faust.StreamT[Any]) -> None:
        async for value in stream:
            warning = Warning.model_validate_json(value)
            if warning.labels.get("notify") == "false":
                continue  # a rule that only feeds compound rules
            for note in notifications_for(warning, directory):
                NOTIFICATIONS_ROUTED.labels(note.channel.value).inc()
                await outs[note.channel].send(key=note.receiver_id.encode(), value=note.to_bytes())

    app.agent(source, name="canhbao.route")(route)
