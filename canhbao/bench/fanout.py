"""Fan-out: a level-III citizen broadcast to every subscriber in the province's communes,
rendered and enqueued on the SMS and loudspeaker topics (what the approvals agent does
once two operators approve), timed until the broker acknowledged every batch."""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from alerting.audiences import Audiences, AudiencesFile, Loudspeaker, SubscriberList, Synthetic
from alerting.directory import Directory
from alerting.messages import renderer
from alerting.notify import citizen_notifications
from canhbao.settings import REPO_ROOT, Settings
from topics.catalogue import notifications_topic
from topics.connection import Kafka, client_kwargs
from topics.models import Channel, Warning

LANGS = {"vi": 0.9, "en": 0.1}
WARNING_FILE = REPO_ROOT / "examples" / "warnings" / "dap-cau-level3.json"


@dataclass
class FanoutResult:
    subscribers: int
    notifications: int
    seconds: float
    peak_rss_mb: float  # the bench process's, which rendered and enqueued them


async def run_fanout(bootstrap: Kafka, settings: Settings, subscribers: int) -> FanoutResult:
    directory = Directory.load(settings.geography_path, settings.directory_path)
    communes = [c.code for c in directory.geography.communes if c.province == "bac-ninh"]
    per = subscribers // len(communes)
    audiences = Audiences(
        AudiencesFile(
            subscribers=[
                SubscriberList(commune=c, synthetic=Synthetic(count=per, langs=LANGS))
                for c in communes
            ],
            loudspeakers=[Loudspeaker(commune=c, topic=f"canhbao/loa/{c}") for c in communes],
        ),
        REPO_ROOT,
    )
    for c in communes:  # the lists are loaded when the worker starts, not per broadcast
        audiences.subscribers(c)
    warning = Warning.model_validate_json(WARNING_FILE.read_bytes())
    render = renderer(directory)
    producer = AIOKafkaProducer(**client_kwargs(bootstrap), linger_ms=5, acks="all")
    await producer.start()
    try:
        t0 = time.perf_counter()
        notes = citizen_notifications(
            warning, communes, [Channel.SMS, Channel.LOUDSPEAKER], audiences, render
        )
        pending = [
            await producer.send(
                notifications_topic(n.channel), value=n.to_bytes(), key=n.receiver_id.encode()
            )
            for n in notes
        ]
        for fut in pending:
            await fut
        seconds = time.perf_counter() - t0
    finally:
        await producer.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return FanoutResult(per * len(communes), len(notes), round(seconds, 3), round(rss, 1))
