"""What to send to whom, and how it reads: governance, routing, templates. Pure logic."""
