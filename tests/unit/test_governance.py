"""Who leads and at which tier (alerting.governance)."""

from __future__ import annotations

import pytest

from alerting.directory import Directory
from alerting.governance import lead_agency, lead_agency_code, scope_tier
from topics.models import Domain, Phase, ScopeTier


def test_one_commune_is_commune_tier() -> None:
    assert scope_tier({"bac-ninh"}, {"bn-vu-ninh"}, False) is ScopeTier.COMMUNE


def test_two_communes_same_province_is_province_tier() -> None:
    tier = scope_tier({"bac-ninh"}, {"bn-vu-ninh", "bn-kinh-bac"}, False)
    assert tier is ScopeTier.PROVINCE


def test_rule_scope_province_forces_province_tier() -> None:
    assert scope_tier({"bac-ninh"}, {"bn-vu-ninh"}, True) is ScopeTier.PROVINCE


@pytest.mark.parametrize("rule_says_province", [False, True])
def test_two_provinces_is_national_tier(rule_says_province: bool) -> None:
    tier = scope_tier({"bac-ninh", "hai-phong"}, {"bn-hap-linh", "hp-pha-lai"}, rule_says_province)
    assert tier is ScopeTier.NATIONAL


@pytest.mark.parametrize(
    ("domain", "lead"),
    [
        (Domain.WATER, "snnmt"),
        (Domain.ENVIRONMENT, "snnmt"),
        (Domain.GEOLOGY, "snnmt"),
        (Domain.HEALTH, "syt"),
        (Domain.CYBER, "ca-tinh"),
        (Domain.ENERGY, "sct"),
    ],
)
def test_phase_one_lead_is_the_domain_agency(directory: Directory, domain: Domain, lead: str):
    assert lead_agency_code(directory, domain, Phase.INCIDENT) == lead


@pytest.mark.parametrize("domain", list(Domain))
def test_phase_two_police_lead_every_domain(directory: Directory, domain: Domain) -> None:
    assert lead_agency_code(directory, domain, Phase.SECURITY) == "ca-tinh"


@pytest.mark.parametrize(
    ("domain", "lead"),
    [
        (Domain.WATER, "bchqs"),
        (Domain.GEOLOGY, "bchqs"),
        (Domain.ENVIRONMENT, "bchqs"),
        (Domain.ENERGY, "bchqs"),
        (Domain.HEALTH, "syt"),
        (Domain.CYBER, "ca-tinh"),
    ],
)
def test_phase_three_lead_by_emergency_type(directory: Directory, domain: Domain, lead: str):
    assert lead_agency_code(directory, domain, Phase.EMERGENCY) == lead


@pytest.mark.parametrize("phase", list(Phase))
@pytest.mark.parametrize("domain", list(Domain))
def test_every_lead_agency_is_in_the_directory(
    directory: Directory, domain: Domain, phase: Phase
) -> None:
    agency = lead_agency(directory, domain, phase)
    assert agency.code == lead_agency_code(directory, domain, phase)
    assert agency.name_vi and agency.name_en


def test_lead_agency_names(directory: Directory) -> None:
    agency = lead_agency(directory, Domain.WATER, Phase.EMERGENCY)
    assert agency.name_vi == "Bộ Chỉ huy Quân sự tỉnh"
    assert agency.name_en == "Provincial Military Command"
