"""``make audit``: what pip-audit's report means for the run (tests/audit.py)."""

from __future__ import annotations

import pytest

from tests.audit import AuditError, judge, read_ignored

REPORT = {
    "dependencies": [
        {"name": "jinja2", "version": "2.4", "vulns": [
            {"id": "PYSEC-2014-8", "aliases": ["CVE-2014-1402"], "fix_versions": ["2.7.2"]},
        ]},
        {"name": "six", "version": "1.17.0", "vulns": []},
        {"name": "private-pkg", "skip_reason": "Dependency not found on PyPI"},
    ],
    "fixes": [],
}  # fmt: skip


def test_a_known_vulnerability_fails_naming_the_package_and_the_fix() -> None:
    verdict = judge(REPORT, {})
    assert not verdict.ok
    assert verdict.found == ["jinja2 2.4: PYSEC-2014-8, CVE-2014-1402 (fixed in 2.7.2)"]
    assert verdict.checked == 2
    assert verdict.unchecked == ["private-pkg: Dependency not found on PyPI"]


def test_a_vulnerability_listed_with_its_reason_passes_and_is_shown() -> None:
    ignored = read_ignored("# header\nCVE-2014-1402  templates are ours, not users'\n")
    verdict = judge(REPORT, ignored)
    assert verdict.ok
    assert verdict.ignored == [
        "jinja2 2.4: PYSEC-2014-8, CVE-2014-1402: ignored, templates are ours, not users'"
    ]


def test_an_ignored_id_without_a_reason_is_refused() -> None:
    with pytest.raises(AuditError, match="PYSEC-2014-8 is ignored without a reason"):
        read_ignored("PYSEC-2014-8\n")


def test_a_service_that_answered_for_no_pin_checked_nothing() -> None:
    verdict = judge({"dependencies": [{"name": "six", "skip_reason": "not found"}]}, {})
    assert verdict.checked == 0 and verdict.ok  # main() then says it could not check
