"""The inbound edge: adapters that turn what sensors and agencies already speak
(HTTP JSON, MQTT, CSV/JSONL history, Suricata EVE, CAP) into raw messages on
``canhbao.ingest.readings`` / ``canhbao.ingest.reports``. The pipeline's validate
stage stays the authority; adapters reject early only to tell the sender why."""
