"""The Faust worker: validate → evaluate → route → group → approvals, and the rules'
hot reload. ``app.build_app`` wires it; the stages (:mod:`pipeline.worker.stages`)
hold the logic, with their writers passed in; every use of a Faust, mode or aiokafka
internal is in :mod:`pipeline.worker.faust_fixes`. Nothing here imports ``canhbao``:
the command line builds a :class:`pipeline.worker.config.WorkerConfig` and passes it."""
