"""The threat record: every warning state, notification, delivery attempt, operator
action, broadcast, rule set, silence and dead letter, kept in a SQL database
(SQLite by default, PostgreSQL in production) long after the topics' retention.

``recorder.service`` is the Kafka consumer (``canhbao record``): it writes each batch's
rows and the consumed offsets in one transaction, so the record is exactly once.
``recorder.decode`` turns records into rows (pure), ``recorder.store`` writes them,
``recorder.queries`` answers ``canhbao history``; the schema is ``recorder.schema`` and
its Alembic migrations ship in ``recorder/migrations``."""
