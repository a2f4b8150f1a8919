"""``make audit``: the supply chain, checked.

1. The lock file is current: what ``make setup`` installed is exactly
   ``constraints.txt`` (``make lock`` would change nothing), and ``pip check`` passes.
2. The pinned set has no known vulnerability: pip-audit asks PyPI's advisory data
   (then OSV's) about every pin of ``constraints.txt``. A vulnerability fails the run
   unless ``tests/audit_ignore.txt`` lists its id with a reason. When no advisory
   service answers, the run says so plainly and does not fail: nothing was checked,
   and that is not the same as nothing found.

Run: ``.venv/bin/python tests/audit.py`` (``make audit``; CI runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CONSTRAINTS = REPO / "constraints.txt"
IGNORE = Path(__file__).resolve().parent / "audit_ignore.txt"
BIN = Path(sys.executable).parent
#: Where pip-audit looks, in order: PyPI's own advisory data, then OSV.
SERVICES = ("pypi", "osv")


class AuditError(Exception):
    """The audit could not be set up (a bad ignore file): fails the run."""


def read_ignored(text: str) -> dict[str, str]:
    """``id reason…`` per line (``#`` comments); every id needs its reason."""
    ignored: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        vuln_id, _, reason = line.partition(" ")
        if not reason.strip():
            raise AuditError(f"{IGNORE.name}:{number}: {vuln_id} is ignored without a reason")
        ignored[vuln_id] = reason.strip()
    return ignored


@dataclass
class Verdict:
    checked: int = 0
    unchecked: list[str] = field(default_factory=list)  # "name version: why"
    found: list[str] = field(default_factory=list)  # failures
    ignored: list[str] = field(default_factory=list)  # listed with a reason

    @property
    def ok(self) -> bool:
        return not self.found


def judge(report: dict[str, Any], ignored: dict[str, str]) -> Verdict:
    """What pip-audit's JSON report means for the run."""
    verdict = Verdict()
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            verdict.unchecked.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        verdict.checked += 1
        for vuln in dep.get("vulns", []):
            ids = [vuln["id"], *vuln.get("aliases", [])]
            where = f"{dep['name']} {dep['version']}: {', '.join(ids)}"
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version yet"
            reason = next((ignored[i] for i in ids if i in ignored), None)
            if reason is None:
                verdict.found.append(f"{where} (fixed in {fixed})")
            else:
                verdict.ignored.append(f"{where}: ignored, {reason}")
    return verdict


def pip_audit(service: str) -> dict[str, Any] | None:
    """pip-audit's report on the pins, or None when ``service`` did not answer."""
    done = subprocess.run(
        [
            str(BIN / "pip-audit"), "-r", str(CONSTRAINTS),
            # The pins as they are: no resolving, no install (every line is pinned).
            "--disable-pip", "--no-deps",
            "--vulnerability-service", service,
            "--format", "json", "--progress-spinner", "off",
        ],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"audit: {service}: no answer ({last[:200]})")
        return None
    return report


def lock_is_current() -> list[str]:
    """Differences between what is installed and ``constraints.txt``, and pip check's."""
    problems: list[str] = []
    frozen = subprocess.run(
        [str(BIN / "pip"), "freeze", "--exclude-editable"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    installed = {line for line in frozen.splitlines() if line and not line.startswith("-e")}
    pinned = {
        line.strip()
        for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for line in sorted(installed - pinned, key=str.lower):
        problems.append(f"installed but not pinned (run make lock): {line}")
    for line in sorted(pinned - installed, key=str.lower):
        problems.append(f"pinned but not installed (make lock would drop it): {line}")
    check = subprocess.run([str(BIN / "pip"), "check"], capture_output=True, text=True)
    if check.returncode != 0:
        problems.extend(f"pip check: {line}" for line in check.stdout.splitlines())
    return problems


def main() -> int:
    failed = False
    problems = lock_is_current()
    if problems:
        failed = True
        print("audit: constraints.txt is not what is installed:")
        print("\n".join(f"  {p}" for p in problems))
    else:
        print(f"audit: constraints.txt is current ({CONSTRAINTS.name}; pip check passes)")
    try:
        ignored = read_ignored(IGNORE.read_text(encoding="utf-8") if IGNORE.exists() else "")
    except AuditError as exc:
        print(f"audit: {exc}")
        return 1
    for service in SERVICES:
        report = pip_audit(service)
        if report is None:
            continue
        verdict = judge(report, ignored)
        if verdict.checked == 0:
            print(f"audit: {service}: answered for none of the {len(verdict.unchecked)} pins")
            continue
        print(f"audit: {verdict.checked} pins checked against {service}'s advisory data")
        for line in verdict.ignored:
            print(f"  {line}")
        for line in verdict.unchecked:
            print(f"  not checked: {line}")
        if verdict.found:
            print("audit: KNOWN VULNERABILITIES (upgrade, or list in tests/audit_ignore.txt "
                  "with the reason):")  # fmt: skip
            print("\n".join(f"  {line}" for line in verdict.found))
            return 1
        print("audit: no known vulnerability in the pinned set")
        return 1 if failed else 0
    print(
        "audit: COULD NOT CHECK for vulnerabilities: no advisory service answered "
        f"({', '.join(SERVICES)}). Nothing was checked; this is not a failure. "
        "Run `make audit` where pypi.org's JSON API or api.osv.dev is reachable."
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
