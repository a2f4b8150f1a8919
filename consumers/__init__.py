"""aiokafka services at the edges: they deliver notifications and record receipts."""
