"""The contracts: the topic catalogue and the pydantic model of every message."""
