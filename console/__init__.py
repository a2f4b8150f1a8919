"""The operator console: the live warning stream in a browser, and the operators'
actions under real accounts (``canhbao console``). A service of the stages layer: it
reads and writes Kafka topics, takes plain config from ``canhbao/``, and never reads
the environment."""
