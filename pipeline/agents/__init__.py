"""Faust agents, one module per stage; each registers itself on a given app."""
