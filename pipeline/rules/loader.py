"""Load rule files (YAML) with errors that name the file, the rule and the field."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.rules.model import Rule, RuleFile
from topics.models import Reading


class RuleError(ValueError):
    """One or more problems in rule files; ``problems`` lists each one."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _describe(path: Path, data: Any, exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = str(path)
        if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
            idx = loc[1]
            rule_id = "?"
            with contextlib.suppress(KeyError, IndexError, TypeError, AttributeError):
                rule_id = str(data["rules"][idx].get("id", f"#{idx + 1}"))
            where += f": rule {rule_id}"
            loc = loc[2:]
        field = ".".join(str(p) for p in loc) or "(rule)"
        problems.append(f"{where}: {field}: {err['msg']}")
    return problems


def load_file(path: Path) -> list[Rule]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise RuleError([f"{path}: not valid YAML: {exc}"]) from exc
    except OSError as exc:
        raise RuleError([f"{path}: cannot read: {exc.strerror}"]) from exc
    try:
        return RuleFile.model_validate(data).rules
    except ValidationError as exc:
        raise RuleError(_describe(path, data, exc)) from exc


def rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.yaml") if not p.name.endswith(".test.yaml"))
    return [path]


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...]

    def matching(self, reading: Reading) -> list[Rule]:
        out = []
        for rule in self.rules:
            sel = rule.selector
            if rule.domain is not reading.domain or sel.metric != reading.metric:
                continue
            if sel.station is not None and sel.station != reading.station_id:
                continue
            if sel.area is not None and sel.area != reading.area:
                continue
            if sel.source is not None and sel.source != reading.source:
                continue
            out.append(rule)
        return out


def load_rules(*paths: Path) -> RuleSet:
    """Load every rule under ``paths``; all problems are reported at once."""
    problems: list[str] = []
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for root in paths:
        if not root.exists():
            problems.append(f"{root}: no such file or directory")
            continue
        for file in rule_files(root):
            try:
                for rule in load_file(file):
                    if rule.id in seen:
                        problems.append(
                            f"{file}: rule {rule.id}: id: already defined in {seen[rule.id]}"
                        )
                        continue
                    seen[rule.id] = file
                    rules.append(rule)
            except RuleError as exc:
                problems.extend(exc.problems)
    if problems:
        raise RuleError(problems)
    return RuleSet(tuple(rules))
