"""The governance model of the framework scenario (plan 418): who leads, at which tier.

Phase 1: the agency managing the domain leads. Phase 2 (the incident has become
a security or public-order threat): the provincial police lead. Phase 3 (state of
emergency): by emergency type -- military for defence and natural disasters,
police for security and order, the health sector for health.
"""

from __future__ import annotations

from alerting.directory import Directory
from topics.models import Agency, Domain, Phase, ScopeTier

POLICE = "ca-tinh"
MILITARY = "bchqs"
HEALTH = "syt"

# Phase-3 lead by domain (the emergency type the domain's hazards fall under).
_EMERGENCY_LEAD = {
    Domain.WATER: MILITARY,
    Domain.GEOLOGY: MILITARY,
    Domain.ENVIRONMENT: MILITARY,
    Domain.ENERGY: MILITARY,
    Domain.HEALTH: HEALTH,
    Domain.CYBER: POLICE,
}


def scope_tier(provinces: set[str], communes: set[str], rule_says_province: bool) -> ScopeTier:
    """Commune when one commune is affected; province when several (or the rule
    says so); national when more than one province is affected."""
    if len(provinces) > 1:
        return ScopeTier.NATIONAL
    if rule_says_province or len(communes) > 1:
        return ScopeTier.PROVINCE
    return ScopeTier.COMMUNE


def lead_agency_code(directory: Directory, domain: Domain, phase: Phase) -> str:
    if phase is Phase.SECURITY:
        return POLICE
    if phase is Phase.EMERGENCY:
        return _EMERGENCY_LEAD[domain]
    return directory.lead_for(domain).code


def lead_agency(directory: Directory, domain: Domain, phase: Phase) -> Agency:
    entry = directory.agency(lead_agency_code(directory, domain, phase))
    return Agency(code=entry.code, name_vi=entry.name_vi, name_en=entry.name_en)


MEDIA = "svhttdl"  # priority use of media and grassroots loudspeakers
BORDER = "bdbp"

# Support forces that coordinate in phase 1, by domain (the plans' assignment of tasks).
_SUPPORT = {
    Domain.WATER: [MILITARY, MEDIA],  # search and rescue; warnings on loudspeakers
    Domain.GEOLOGY: [MILITARY, MEDIA],
    Domain.ENVIRONMENT: [MEDIA],
    Domain.HEALTH: [MEDIA],
    Domain.CYBER: [],
    Domain.ENERGY: [MEDIA],
}


def coordinators(directory: Directory, domain: Domain, phase: Phase) -> list[str]:
    """Agencies that coordinate (not lead) in this phase; never the lead itself."""
    lead = lead_agency_code(directory, domain, phase)
    if phase is Phase.INCIDENT:
        codes = list(_SUPPORT[domain])
    elif phase is Phase.SECURITY:
        # Phase 2: the police lead; the military and the border guard coordinate, and
        # the domain agency stays on it.
        codes = [MILITARY, BORDER, directory.lead_for(domain).code, MEDIA]
    else:
        codes = [POLICE, MILITARY, HEALTH, directory.lead_for(domain).code, MEDIA]
    return [c for c in dict.fromkeys(codes) if c != lead and c in directory.agencies]


REPORT_TO = {
    ScopeTier.COMMUNE: "Chủ tịch UBND xã/phường (commune People's Committee chair)",
    ScopeTier.PROVINCE: "Chủ tịch UBND tỉnh (provincial People's Committee chair)",
    ScopeTier.NATIONAL: "Thủ tướng Chính phủ (the Prime Minister)",
}


def directs(scope: ScopeTier) -> str:
    """Who directs the response at this scope tier (framework scenario, plan 418)."""
    return REPORT_TO[scope]
