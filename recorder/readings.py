"""Which validated readings the record keeps: those some rule in force selects (its
selector: domain, station, metric, area, source), so that an after-action report can
chart a river between two state changes, not only at them. Pure: no broker, no
database.

The rule set in force is the newest one seen, by the time it was applied: the one
the recorder found on ``canhbao.control.rules`` when it started (or the rule files,
while none was ever applied, as the worker does), then each newer set it reads on
that topic. An older set read again (a recorder re-reading the compacted topic from
an earlier offset) never replaces a newer one."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from pipeline.rules.loader import RuleError, RuleSet, compile_rules
from topics.models import Reading, RuleSetDoc

log = logging.getLogger(__name__)


@dataclass
class ReadingSelection:
    """The rule set in force, as far as the record is concerned: which readings to keep."""

    rules: RuleSet | None = None
    #: when the set in force was applied (None: the rule files, never applied)
    applied_at: datetime | None = None
    #: rule sets that did not compile, by version, with the reason (kept once each)
    refused: dict[str, str] = field(default_factory=dict)

    def adopt(self, doc: RuleSetDoc) -> bool:
        """Take ``doc`` if it is newer than the set in force; True if it was taken. A
        set that does not compile is refused (the set in force stays), as the worker
        refuses it."""
        if self.applied_at is not None and doc.applied_at <= self.applied_at:
            return False
        try:
            rules = compile_rules(doc.sources)
        except RuleError as exc:
            if doc.version not in self.refused:
                self.refused[doc.version] = str(exc)
                log.error("rule set %s does not compile here; the record keeps selecting "
                          "readings by the set in force: %s", doc.version, exc)  # fmt: skip
            return False
        self.rules, self.applied_at = rules, doc.applied_at
        return True

    def selects(self, reading: Reading) -> bool:
        """Whether some rule in force watches ``reading``."""
        return self.rules is not None and bool(self.rules.matching(reading))

    @property
    def version(self) -> str | None:
        return None if self.rules is None else self.rules.version
