"""``canhbao bench``: the pipeline measured against raw Kafka, in one run on one broker.

Phases, each in its own module: ``baseline`` (a raw aiokafka consumer decoding the
readings), ``throughput`` (the Faust worker through validation, the quality gate and
the shipped rule packs), ``latency`` (reading produced → webhook delivered, at fixed
offered loads), ``fanout`` (a citizen broadcast to 100,000 subscribers enqueued), and
the worker's peak RSS. ``run`` ties them together; ``report`` prints them.
"""
