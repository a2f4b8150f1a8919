"""The worker's stages, one module each: a small class holding the stage's logic,
its writers passed in (:mod:`pipeline.worker.writers`). ``pipeline.worker.app``
registers them on the Faust app; they import nothing from it."""
