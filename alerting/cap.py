"""CAP 1.2 (OASIS Common Alerting Protocol) messages and the Atom feed that lists them.

Pure functions: a warning state in, an XML document out. One warning state is one
CAP ``<alert>``: ``identifier`` is unique per (warning, version), a raise is an
``Alert``, every later state an ``Update`` (or a ``Cancel`` once it is over) that
references the message it replaces, so a receiver can follow one warning from its
first message to its all-clear. There is one ``<info>`` per language (vi-VN, en-US,
km-KH for the partners in Mondulkiri) and one ``<area>`` per affected commune.

The XML is built with :mod:`xml.etree.ElementTree`, never by pasting strings, so
text from rules, operators and reports (``<``, ``&``, quotes) is always escaped;
characters XML 1.0 cannot carry at all (control characters) are dropped.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

from alerting import quantities
from alerting.directory import Directory, Station
from alerting.risk import ADJUSTMENT_BASIS
from alerting.templates import VIETNAM, environment, summary
from topics import ids
from topics.models import Domain, Evidence, LifecycleStatus, Severity, Transition, Warning

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
ATOM_NS = "http://www.w3.org/2005/Atom"
CAP_MIME = "application/cap+xml"
ATOM_MIME = "application/atom+xml"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

LANGUAGE_CODES = {"vi": "vi-VN", "en": "en-US", "km": "km-KH"}
DEFAULT_SENDER = "canhbao@bacninh.gov.vn"
# A commune with no polygon is published as a circle of this radius around a station
# located in it: wide enough to cover a ward, and obviously approximate.
CIRCLE_RADIUS_KM = 5.0
HEADLINE_MAX = 160  # CAP 1.2 §3.2.2: headline SHOULD be under 160 characters

Lang = Literal["vi", "en", "km"]

# Hazards that are notices for the operators and station owners, not public warnings.
OPERATIONAL_HAZARDS = frozenset({"sensor_fault", "data_gap"})

# --- Identifiers ---------------------------------------------------------------------

# The forms live in topics.ids (one place for every identifier).
cap_token = ids.cap_token


def identifier(warning_id: str, version: int) -> str:
    """The CAP identifier of one warning state: ``urn:canhbao:<warning_id>:v<version>``."""
    return ids.cap_identifier(warning_id, version)


def alert_identifier(warning: Warning) -> str:
    return identifier(warning.warning_id, warning.version)


def sender_token(sender: str) -> str:
    return cap_token(sender, extra="@")


def cap_time(value: datetime) -> str:
    """A CAP date-time: Vietnam time, whole seconds, explicit offset (never ``Z``).

    The CAP 1.2 schema requires ``YYYY-MM-DDThh:mm:ss+hh:mm`` (no fraction, no ``Z``)."""
    if value.tzinfo is None:
        raise ValueError("CAP times must be timezone-aware")
    return value.astimezone(VIETNAM).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%S+07:00")


# --- What the warning means in CAP terms ---------------------------------------------

_CATEGORY: dict[Domain, tuple[str, ...]] = {
    Domain.WATER: ("Met",),  # CAP "Met": meteorological, including flood
    Domain.GEOLOGY: ("Geo",),
    Domain.ENVIRONMENT: ("Env",),
    Domain.HEALTH: ("Health",),
    Domain.CYBER: ("Security",),
    Domain.ENERGY: ("Infra",),
}
_CATEGORY_BY_HAZARD: dict[str, tuple[str, ...]] = {
    "landslide": ("Geo",),
    "landslide_rain": ("Met", "Geo"),
    "soil_saturation": ("Geo",),
    "flood_dengue": ("Met", "Health"),
    "sensor_fault": ("Other",),
    "data_gap": ("Other",),
}

# Event names per hazard: (vi, en, km).
_EVENT: dict[str, tuple[str, str, str]] = {
    "river_flood": ("Lũ sông", "River flood", "ទឹកជំនន់ទន្លេ"),
    "river_rise": ("Nước sông lên nhanh", "Rapid river rise", "ទឹកទន្លេឡើងលឿន"),
    "flood_report": ("Ngập lụt (báo cáo)", "Flooding (reported)", "ទឹកជំនន់ (របាយការណ៍)"),
    "heavy_rain": ("Mưa lớn", "Heavy rain", "ភ្លៀងធ្លាក់ខ្លាំង"),
    "landslide_rain": (
        "Mưa lớn kéo dài (nguy cơ sạt lở)",
        "Prolonged heavy rain (landslide risk)",
        "ភ្លៀងធ្លាក់ខ្លាំងរយៈពេលយូរ (ហានិភ័យបាក់ដី)",
    ),
    "soil_saturation": ("Đất bão hòa nước", "Saturated soil", "ដីឆ្អែតទឹក"),
    "landslide": ("Nguy cơ sạt lở đất", "Landslide risk", "ហានិភ័យបាក់ដី"),
    "air_pollution": ("Ô nhiễm không khí", "Air pollution", "ការបំពុលខ្យល់"),
    "air_pollution_pm25": (
        "Ô nhiễm bụi mịn PM2.5",
        "Fine-particle (PM2.5) air pollution",
        "ការបំពុលខ្យល់ដោយភាគល្អិត PM2.5",
    ),
    "dengue_outbreak": ("Dịch sốt xuất huyết", "Dengue outbreak", "ការផ្ទុះជំងឺគ្រុនឈាម"),
    "ili_cluster": (
        "Gia tăng bệnh giống cúm",
        "Rise in influenza-like illness",
        "ការកើនឡើងនៃជំងឺស្រដៀងគ្រុនផ្តាសាយ",
    ),
    "flood_dengue": (
        "Lũ và dịch sốt xuất huyết",
        "Flood and dengue outbreak",
        "ទឹកជំនន់ និងការផ្ទុះជំងឺគ្រុនឈាម",
    ),
    "brute_force": ("Tấn công dò mật khẩu", "Password-guessing attack", "ការវាយប្រហារទាយពាក្យសម្ងាត់"),
    "intrusion_attempt": (
        "Tấn công xâm nhập mạng",
        "Network intrusion attempt",
        "ការប៉ុនប៉ងជ្រៀតចូលបណ្ដាញ",
    ),
    "ddos": (
        "Tấn công từ chối dịch vụ (DDoS)",
        "Denial-of-service attack (DDoS)",
        "ការវាយប្រហារបដិសេធសេវាកម្ម (DDoS)",
    ),
    "cyber_incident_report": (
        "Sự cố an ninh mạng",
        "Cyber security incident",
        "ឧប្បត្តិហេតុសន្តិសុខអ៊ីនធឺណិត",
    ),
    "grid_frequency": ("Sự cố lưới điện", "Power grid disturbance", "បញ្ហាបណ្ដាញអគ្គិសនី"),
    "fuel_shortage": ("Nguy cơ thiếu xăng dầu", "Fuel shortage risk", "ហានិភ័យកង្វះប្រេងឥន្ធនៈ"),
    "sensor_fault": ("Lỗi cảm biến", "Sensor fault", "កំហុសឧបករណ៍ចាប់សញ្ញា"),
    "data_gap": ("Mất dữ liệu quan trắc", "Monitoring data gap", "ការបាត់ទិន្នន័យតាមដាន"),
}
_EVENT_BY_DOMAIN: dict[Domain, tuple[str, str, str]] = {
    Domain.WATER: ("Nguy cơ về nước", "Water hazard", "គ្រោះថ្នាក់ទាក់ទងនឹងទឹក"),
    Domain.GEOLOGY: ("Nguy cơ địa chất", "Geological hazard", "គ្រោះថ្នាក់ភូគព្ភសាស្ត្រ"),
    Domain.ENVIRONMENT: ("Sự cố môi trường", "Environmental hazard", "គ្រោះថ្នាក់បរិស្ថាន"),
    Domain.HEALTH: (
        "Nguy cơ sức khỏe cộng đồng",
        "Public-health threat",
        "ការគំរាមកំហែងសុខភាពសាធារណៈ",
    ),
    Domain.CYBER: (
        "Nguy cơ an ninh mạng",
        "Cyber security threat",
        "ការគំរាមកំហែងសន្តិសុខអ៊ីនធឺណិត",
    ),
    Domain.ENERGY: (
        "Nguy cơ an ninh năng lượng",
        "Energy security threat",
        "ការគំរាមកំហែងសន្តិសុខថាមពល",
    ),
}
_LANG_INDEX = {"vi": 0, "en": 1, "km": 2}

# Which family of advice a hazard gets (response types and instructions).
_FAMILY: dict[str, str] = {
    "river_flood": "flood",
    "flood_report": "flood",
    "river_rise": "rain",
    "heavy_rain": "rain",
    "landslide_rain": "rain",
    "soil_saturation": "rain",
    "landslide": "landslide",
    "air_pollution": "air",
    "air_pollution_pm25": "air",
    "dengue_outbreak": "health",
    "ili_cluster": "health",
    "flood_dengue": "flood_dengue",
    "sensor_fault": "operational",
    "data_gap": "operational",
}
_FAMILY_BY_DOMAIN: dict[Domain, str] = {
    Domain.WATER: "rain",
    Domain.GEOLOGY: "landslide",
    Domain.ENVIRONMENT: "air",
    Domain.HEALTH: "health",
    Domain.CYBER: "cyber",
    Domain.ENERGY: "energy",
}
# Response types by family and level (the highest level listed applies above it).
_RESPONSE: dict[str, dict[int, tuple[str, ...]]] = {
    "flood": {1: ("Monitor",), 2: ("Prepare",), 3: ("Evacuate",)},
    "rain": {1: ("Monitor",), 2: ("Prepare",)},
    "landslide": {1: ("Prepare",), 3: ("Evacuate",)},
    "air": {1: ("Monitor",), 2: ("Avoid",), 3: ("Shelter",)},
    "health": {1: ("Monitor",), 2: ("Avoid",)},
    "flood_dengue": {1: ("Prepare", "Avoid")},
    "cyber": {1: ("Monitor",), 2: ("Prepare",)},
    "energy": {1: ("Monitor",), 2: ("Prepare",)},
    "operational": {1: ("None",)},
}

# Instructions: (family, response type) -> (vi, en, km); ("*", type) is the default.
_INSTRUCTION: dict[tuple[str, str], tuple[str, str, str]] = {
    ("*", "Monitor"): (
        "Theo dõi thông tin chính thức từ chính quyền địa phương và cơ quan chủ trì; "
        "sẵn sàng làm theo hướng dẫn.",
        "Follow official updates from the local authorities and the lead agency; "
        "be ready to act on their instructions.",
        "សូមតាមដានព័ត៌មានផ្លូវការពីអាជ្ញាធរមូលដ្ឋាន ហើយត្រៀមខ្លួនអនុវត្តតាមការណែនាំ។",
    ),
    ("*", "Prepare"): (
        "Chuẩn bị ứng phó theo hướng dẫn của chính quyền địa phương và cơ quan chủ trì.",
        "Prepare to respond as instructed by the local authorities and the lead agency.",
        "សូមត្រៀមខ្លួនឆ្លើយតបតាមការណែនាំរបស់អាជ្ញាធរមូលដ្ឋាន។",
    ),
    ("*", "Evacuate"): (
        "Sơ tán ngay đến nơi an toàn theo hướng dẫn của chính quyền xã, phường; giúp người "
        "già, trẻ em và người khuyết tật đi trước. Gọi 112 khi cần cứu nạn.",
        "Evacuate now to a safe place as directed by the commune or ward authorities; help "
        "the elderly, children and people with disabilities first. Call 112 for rescue.",
        "សូមជម្លៀសចេញភ្លាមៗទៅកន្លែងមានសុវត្ថិភាព តាមការណែនាំរបស់អាជ្ញាធរមូលដ្ឋាន។ "
        "សូមជួយមនុស្សចាស់ កុមារ និងជនពិការមុនគេ។",
    ),
    ("*", "Avoid"): (
        "Tránh xa khu vực nguy hiểm và làm theo hướng dẫn của cơ quan chủ trì.",
        "Keep away from the danger and follow the lead agency's advice.",
        "សូមជៀសវាងតំបន់គ្រោះថ្នាក់ ហើយអនុវត្តតាមការណែនាំរបស់អាជ្ញាធរ។",
    ),
    ("*", "Shelter"): (
        "Ở trong nhà, đóng kín cửa và làm theo hướng dẫn của chính quyền địa phương.",
        "Stay indoors with doors and windows closed and follow the local authorities' "
        "instructions.",
        "សូមស្នាក់នៅក្នុងផ្ទះ បិទទ្វារ និងបង្អួច ហើយអនុវត្តតាមការណែនាំរបស់អាជ្ញាធរមូលដ្ឋាន។",
    ),
    ("*", "AllClear"): (
        "Nguy hiểm đã qua. Tiếp tục theo dõi thông tin chính thức.",
        "The danger has passed. Keep following official information.",
        "គ្រោះថ្នាក់បានកន្លងផុតហើយ។ សូមបន្តតាមដានព័ត៌មានផ្លូវការ។",
    ),
    ("*", "None"): (
        "Thông báo kỹ thuật cho cơ quan quản lý; người dân không cần làm gì.",
        "Technical notice for the operating agency; no action is needed from the public.",
        "នេះជាសេចក្ដីជូនដំណឹងបច្ចេកទេសសម្រាប់ស្ថាប័នគ្រប់គ្រង។ ប្រជាជនមិនចាំបាច់ធ្វើអ្វីទេ។",
    ),
    ("flood", "Monitor"): (
        "Theo dõi mực nước và thông tin từ chính quyền địa phương; không đánh bắt cá, "
        "vớt củi trên sông.",
        "Watch the river level and official updates; do not fish or collect driftwood on "
        "the river.",
        "សូមតាមដានកម្ពស់ទឹកទន្លេ និងព័ត៌មានពីអាជ្ញាធរមូលដ្ឋាន។ កុំនេសាទ ឬរើសអុសនៅលើទន្លេ។",
    ),
    ("flood", "Prepare"): (
        "Chuẩn bị sơ tán: kê cao đồ đạc, chuẩn bị giấy tờ, thuốc men, nước uống; tránh xa "
        "bờ sông, không đi qua đường ngập.",
        "Get ready to evacuate: raise belongings, pack documents, medicine and drinking "
        "water; keep away from river banks and do not cross flooded roads.",
        "សូមត្រៀមខ្លួនជម្លៀស៖ រៀបចំឯកសារ ថ្នាំ និងទឹកផឹក។ សូមនៅឱ្យឆ្ងាយពីមាត់ទន្លេ ហើយកុំឆ្លងកាត់ផ្លូវដែលលិចទឹក។",
    ),
    ("flood", "AllClear"): (
        "Nguy hiểm đã qua. Chỉ trở về nhà khi chính quyền địa phương cho phép; không dùng "
        "nước, điện trong nhà bị ngập khi chưa được kiểm tra.",
        "The danger has passed. Return home only when the local authorities say it is safe; "
        "do not use water or electricity in a flooded house until it has been checked.",
        "គ្រោះថ្នាក់បានកន្លងផុតហើយ។ សូមត្រឡប់ទៅផ្ទះវិញ តែនៅពេលអាជ្ញាធរមូលដ្ឋានអនុញ្ញាត។",
    ),
    ("landslide", "Prepare"): (
        "Tránh xa sườn dốc, taluy và khe suối; chuẩn bị sơ tán khi thấy đất nứt hoặc nước "
        "suối đục bất thường.",
        "Keep away from steep slopes, road cuttings and streams; be ready to evacuate at "
        "signs of cracking ground or suddenly muddy water.",
        "សូមនៅឱ្យឆ្ងាយពីជម្រាលភ្នំ និងអូរ។ ត្រៀមខ្លួនជម្លៀស ប្រសិនបើឃើញដីប្រេះ ឬទឹកល្អក់ខុសធម្មតា។",
    ),
    ("air", "Avoid"): (
        "Hạn chế ra ngoài và vận động mạnh ngoài trời; đeo khẩu trang khi ra đường; người "
        "già, trẻ em, người có bệnh hô hấp nên ở trong nhà.",
        "Limit time and exercise outdoors and wear a mask outside; the elderly, children and "
        "people with respiratory illness should stay indoors.",
        "សូមកាត់បន្ថយការចេញក្រៅ និងពាក់ម៉ាស់ពេលចេញក្រៅ។ មនុស្សចាស់ កុមារ និងអ្នកមានជំងឺផ្លូវដង្ហើម គួរស្នាក់នៅក្នុងផ្ទះ។",
    ),
    ("health", "Avoid"): (
        "Thực hiện các biện pháp phòng bệnh theo hướng dẫn của ngành y tế; đến cơ sở y tế "
        "gần nhất khi có triệu chứng.",
        "Follow the health authorities' prevention advice; see the nearest health facility "
        "if you have symptoms.",
        "សូមអនុវត្តវិធានការបង្ការជំងឺតាមការណែនាំរបស់មន្ត្រីសុខាភិបាល ហើយទៅមណ្ឌលសុខភាពជិតបំផុត ប្រសិនបើមានរោគសញ្ញា។",
    ),
    ("flood_dengue", "Prepare"): (
        "Chuẩn bị ứng phó lũ theo hướng dẫn của chính quyền địa phương.",
        "Prepare for the flood as instructed by the local authorities.",
        "សូមត្រៀមខ្លួនទប់ទល់នឹងទឹកជំនន់ តាមការណែនាំរបស់អាជ្ញាធរមូលដ្ឋាន។",
    ),
    ("flood_dengue", "Avoid"): (
        "Sau khi nước rút, diệt lăng quăng, ngủ màn, phòng muỗi đốt; đến cơ sở y tế khi sốt.",
        "When the water recedes, clear standing water, sleep under a net and avoid mosquito "
        "bites; see a health facility if you have a fever.",
        "ក្រោយទឹកស្រក សូមសម្អាតទឹកដក់ គេងក្នុងមុង ហើយការពារកុំឱ្យមូសខាំ។",
    ),
    ("cyber", "Prepare"): (
        "Đổi mật khẩu, bật xác thực hai lớp, không mở liên kết hay tệp lạ; báo sự cố cho "
        "Công an tỉnh.",
        "Change passwords, turn on two-factor authentication and do not open unknown links "
        "or files; report incidents to the Provincial Police.",
        "សូមប្ដូរពាក្យសម្ងាត់ បើកការផ្ទៀងផ្ទាត់ពីរជំហាន ហើយកុំបើកតំណ ឬឯកសារមិនស្គាល់។",
    ),
    ("energy", "Prepare"): (
        "Sử dụng điện, xăng dầu tiết kiệm; chuẩn bị nguồn dự phòng cho thiết bị thiết yếu.",
        "Use electricity and fuel sparingly; prepare backup power for essential equipment.",
        "សូមប្រើប្រាស់អគ្គិសនី និងប្រេងឥន្ធនៈដោយសន្សំសំចៃ ហើយត្រៀមថាមពលបម្រុងសម្រាប់ឧបករណ៍ចាំបាច់។",
    ),
}

_EXERCISE_HEAD = {"vi": "[DIỄN TẬP] ", "en": "[EXERCISE] ", "km": "[សមយុទ្ធ] "}
_EXERCISE_TEXT = {
    "vi": "DIỄN TẬP - KHÔNG PHẢI THẬT. ",
    "en": "EXERCISE - NOT REAL. ",
    "km": "សមយុទ្ធ - មិនមែនជាការពិតទេ។ ",
}
_ALL_CLEAR = {"vi": "Hết cảnh báo", "en": "All clear", "km": "បញ្ចប់ការព្រមាន"}
_CLOSED = {"vi": "[ĐÃ KẾT THÚC XỬ LÝ] ", "en": "[RESPONSE CLOSED] ", "km": ""}
_ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5}
# Hazards whose levels are the "alarm levels" (báo động) of the national bulletins.
_ALARM_HAZARDS = frozenset({"river_flood"})


def ended(warning: Warning) -> bool:
    """Over: cleared, or closed by the operators (nothing more will follow)."""
    return warning.transition is Transition.CLEARED or warning.status is LifecycleStatus.CLOSED


def is_public(warning: Warning) -> bool:
    """Whether a warning state belongs in the public CAP feed: not a rule that only
    feeds compound rules (``notify: false``), nor a notice about the monitoring itself."""
    return warning.labels.get("notify") != "false" and warning.hazard not in OPERATIONAL_HAZARDS


def _references_known(warning: Warning) -> bool:
    return warning.version > 1 and warning.previous_updated_at is not None


def msg_type(warning: Warning) -> str:
    """``Alert`` for a raise, ``Update`` for a change, ``Cancel`` when it is over.

    A change whose previous message is unknown (no ``previous_updated_at``) cannot
    reference it and goes out as a fresh ``Alert``."""
    if warning.transition is Transition.RAISED or not _references_known(warning):
        return "Alert"
    return "Cancel" if ended(warning) else "Update"


def references(warning: Warning, sender: str = DEFAULT_SENDER) -> str | None:
    """``sender,identifier,sent`` of the message this one replaces (CAP 1.2 §3.2.1)."""
    if msg_type(warning) == "Alert":
        return None
    assert warning.previous_updated_at is not None
    previous = identifier(warning.warning_id, warning.version - 1)
    return f"{sender_token(sender)},{previous},{cap_time(warning.previous_updated_at)}"


def categories(warning: Warning) -> tuple[str, ...]:
    return _CATEGORY_BY_HAZARD.get(warning.hazard) or _CATEGORY.get(warning.domain, ("Other",))


def _family(warning: Warning) -> str:
    return _FAMILY.get(warning.hazard) or _FAMILY_BY_DOMAIN.get(warning.domain, "*")


def response_types(warning: Warning) -> tuple[str, ...]:
    if ended(warning):
        return ("AllClear",)
    table = _RESPONSE.get(_family(warning), {1: ("Monitor",), 2: ("Prepare",)})
    if warning.hazard == "landslide" and warning.severity is Severity.EXTREME:
        return ("Evacuate",)
    levels = [lv for lv in sorted(table) if lv <= max(warning.level, 1)]
    return table[levels[-1]] if levels else table[min(table)]


def urgency(warning: Warning) -> str:
    if ended(warning):
        return "Past"
    if warning.level >= 3 or warning.severity is Severity.EXTREME:
        return "Immediate"
    if warning.level == 2:
        return "Expected"
    return "Future"


# The least CAP severity a disaster risk level (Decision 18/2021/QĐ-TTg) calls for: the
# rule's own severity stands unless the risk level, raised by an operator say, says more.
RISK_SEVERITY = {
    1: Severity.MINOR,
    2: Severity.MODERATE,
    3: Severity.SEVERE,
    4: Severity.EXTREME,
    5: Severity.EXTREME,
}
# CAP parameters of the risk level, named for any receiver to use (documented in the README).
RISK_PARAMETER = "VN_DISASTER_RISK_LEVEL"
RISK_BASIS_PARAMETER = "VN_DISASTER_RISK_BASIS"
RISK_ADJUSTMENT_PARAMETER = "VN_DISASTER_RISK_ADJUSTMENT"


def severity(warning: Warning) -> str:
    """The rule's severity, or more when the disaster risk level calls for it."""
    if ended(warning):
        return Severity.MINOR.value
    chosen = warning.severity
    if warning.risk_level is not None:
        floor = RISK_SEVERITY[warning.risk_level]
        if floor.rank > chosen.rank:
            chosen = floor
    return chosen.value


def _sensor_evidence(warning: Warning, directory: Directory) -> list[Evidence]:
    return [
        ev
        for ev in warning.evidence
        if not ev.metric.startswith("report:") and directory.station(ev.station_id) is not None
    ]


def certainty(warning: Warning, directory: Directory) -> str:
    """``Observed`` when a monitoring station measured it; ``Likely`` for reports,
    statistical signals and combinations of other warnings."""
    return "Observed" if _sensor_evidence(warning, directory) else "Likely"


def event(warning: Warning, lang: str) -> str:
    names = _EVENT.get(warning.hazard) or _EVENT_BY_DOMAIN.get(warning.domain)
    if names is None:
        return warning.hazard
    return names[_LANG_INDEX[lang]]


def level_label(warning: Warning, lang: str) -> str:
    """The level as the channel templates write it: "báo động III", "alarm level III",
    "កម្រិតប្រកាសអាសន្នទី 3"; a named level: "mưa rất to", "level 2 (mưa rất to)"."""
    return level_text(warning.hazard, warning.level, warning.level_name, lang)


def level_text(hazard: str, level: int, level_name: str, lang: str) -> str:
    """:func:`level_label` from the warning's hazard, level and level name alone."""
    name = level_name.strip()
    n = _ROMAN.get(name.upper())
    if n is not None and hazard in _ALARM_HAZARDS:
        return {
            "vi": f"báo động {name}",
            "en": f"alarm level {name}",
            "km": f"កម្រិតប្រកាសអាសន្នទី {n}",
        }[lang]
    if n is not None:
        return {"vi": f"cấp {name}", "en": f"level {name}", "km": f"កម្រិត {n}"}[lang]
    if lang == "vi":
        return name or f"cấp {level}"
    word = "level" if lang == "en" else "កម្រិត"
    return f"{word} {level}" + (f" ({name})" if name else "")


def _area_names(warning: Warning, limit: int = 2) -> str:
    names = list(dict.fromkeys(a.name for a in warning.areas))
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" +{len(names) - limit}"


def headline(warning: Warning, lang: str) -> str:
    """Short and plain: "Lũ sông: báo động III – Phường Vũ Ninh, Phường Kinh Bắc"."""
    colon = "៖ " if lang == "km" else ": "  # the Khmer colon
    if ended(warning):
        parts = [f"{_ALL_CLEAR[lang]}{colon}{event(warning, lang)}"]
    else:
        parts = [f"{event(warning, lang)}{colon}{level_label(warning, lang)}"]
    where = _area_names(warning)
    if where:
        parts.append(where)
    text = (_EXERCISE_HEAD[lang] if warning.exercise else "") + " – ".join(parts)
    text = clean_text(text)
    return text if len(text) <= HEADLINE_MAX else text[: HEADLINE_MAX - 1].rstrip() + "…"


def _risk_line(warning: Warning, lang: str) -> str:
    """The disaster risk level as every channel says it (templates/common/risk.j2)."""
    module: Any = environment().get_template("common/risk.j2").module
    return str(module.line(warning, lang))


def _description_km(warning: Warning) -> str:
    """Khmer has no summary template: a short text from the same facts."""
    where = ", ".join(dict.fromkeys(a.name for a in warning.areas)) or "មិនទាន់កំណត់"
    lead = warning.lead_agency.name_en
    if ended(warning):
        text = f"បញ្ចប់ការព្រមាន៖ {event(warning, 'km')} នៅ {where} បានធូរស្រាលហើយ។"
    else:
        text = f"ការព្រមាន៖ {event(warning, 'km')} {level_label(warning, 'km')} នៅ {where}។"
    ev = warning.evidence[0] if warning.evidence else None
    if ev is not None and quantities.measured(ev):  # not a silence, report or component
        measured = quantities.written(ev, "km")  # with its unit, or none
        when = ev.observed_at.astimezone(VIETNAM).strftime("%H:%M %d/%m/%Y")
        text += f" តម្លៃវាស់៖ {measured} ({when})"
        if ev.threshold is not None:
            text += f", កម្រិតកំណត់ {quantities.written(ev, 'km', ev.threshold)}"
        text += "។"
    risk = _risk_line(warning, "km")
    if risk:
        text += f" {risk}"
    text += f" ស្ថាប័នទទួលបន្ទុក៖ {lead}។"
    text += " សម្រាប់ព័ត៌មានលម្អិត សូមមើលសេចក្ដីជូនដំណឹងជាភាសាវៀតណាម ឬអង់គ្លេស។"
    return (_EXERCISE_TEXT["km"] if warning.exercise else "") + text


def description(warning: Warning, lang: str) -> str:
    if lang == "km":
        return clean_text(_description_km(warning))
    text = summary(warning, lang)  # the vi/en templates mark exercises themselves
    if warning.status is LifecycleStatus.CLOSED and warning.transition is not Transition.CLEARED:
        text = _CLOSED[lang] + text
    return clean_text(text)


def instruction(warning: Warning, lang: str) -> str:
    family = _family(warning)
    i = _LANG_INDEX[lang]
    texts = []
    for rt in response_types(warning):
        entry = _INSTRUCTION.get((family, rt)) or _INSTRUCTION.get(("*", rt))
        if entry is not None:
            texts.append(entry[i])
    text = " ".join(dict.fromkeys(texts))
    return clean_text((_EXERCISE_TEXT[lang] if warning.exercise else "") + text)


def sender_name(warning: Warning, lang: str) -> str:
    # Khmer: the agencies have no official Khmer names; the English one is understood
    # by the partners' duty officers.
    agency = warning.lead_agency
    return clean_text(agency.name_vi if lang == "vi" else agency.name_en)


def parameters(warning: Warning) -> list[tuple[str, str]]:
    params = [
        ("canhbao:warning_id", warning.warning_id),
        ("canhbao:version", str(warning.version)),
        ("canhbao:transition", warning.transition.value),
        ("canhbao:domain", warning.domain.value),
        ("canhbao:hazard", warning.hazard),
        ("canhbao:level", str(warning.level)),
        ("canhbao:level_name", warning.level_name),
        ("canhbao:scope", warning.scope_tier.value),
        ("canhbao:phase", str(int(warning.phase))),
        ("canhbao:lead_agency", warning.lead_agency.code),
        ("canhbao:status", warning.status.value),
    ]
    if warning.risk_level is not None and not ended(warning):
        params.append((RISK_PARAMETER, str(warning.risk_level)))
        if warning.risk_basis:
            params.append((RISK_BASIS_PARAMETER, warning.risk_basis))
        adj = warning.risk_adjustment
        if adj is not None:
            params.append((
                RISK_ADJUSTMENT_PARAMETER,
                f"+{adj.by} from {adj.from_level} ({ADJUSTMENT_BASIS}) by {adj.actor} at "
                f"{cap_time(adj.at)}: {adj.reason}",
            ))  # fmt: skip
    for ev in warning.evidence[:3]:
        value = f"{ev.station_id} {ev.metric}={ev.value:g}"
        if ev.threshold is not None:
            value += f" threshold={ev.threshold:g}"
        params.append(("canhbao:evidence", f"{value} at {cap_time(ev.observed_at)}"))
    return [(name, clean_text(value)) for name, value in params]


# --- Areas ---------------------------------------------------------------------------


def polygon_text(points: Sequence[tuple[float, float]]) -> str | None:
    """A CAP polygon ("lat,lon lat,lon ...", first = last, at least 4 points), or None
    when the points do not make one (fewer than 3 distinct)."""
    pts = [(round(lat, 5), round(lon, 5)) for lat, lon in points]
    if len(set(pts)) < 3:
        return None
    if pts[0] != pts[-1]:
        pts.append(pts[0])
    return " ".join(f"{_coord(lat)},{_coord(lon)}" for lat, lon in pts)


def _coord(value: float) -> str:
    text = f"{value:.5f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def _circle_station(warning: Warning, directory: Directory, code: str) -> Station | None:
    """A station with coordinates located in the commune, the warning's own first."""
    candidates = [directory.station(ev.station_id) for ev in warning.evidence]
    candidates += list(directory.geography.stations)
    for s in candidates:
        if s is not None and s.commune == code and s.lat is not None and s.lon is not None:
            return s
    return None


def _area(parent: ET.Element, warning: Warning, directory: Directory, code: str) -> None:
    area = next(a for a in warning.areas if a.code == code)
    area_el = _sub(parent, "area")
    desc = f"{area.name}, {area.province}" if area.province else area.name
    _sub(area_el, "areaDesc", desc)
    commune = directory.commune(code)
    poly = polygon_text(commune.polygon) if commune is not None and commune.polygon else None
    if poly is not None:
        _sub(area_el, "polygon", poly)
    else:
        station = _circle_station(warning, directory, code)
        if station is not None and station.lat is not None and station.lon is not None:
            circle = f"{_coord(station.lat)},{_coord(station.lon)} {CIRCLE_RADIUS_KM:.1f}"
            _sub(area_el, "circle", circle)
    if commune is not None and commune.geocode:
        _geocode(area_el, "VN-commune", commune.geocode)
    _geocode(area_el, "canhbao:commune", code)


def _geocode(parent: ET.Element, name: str, value: str) -> None:
    el = _sub(parent, "geocode")
    _sub(el, "valueName", name)
    _sub(el, "value", value)


# --- XML -----------------------------------------------------------------------------

# Characters XML 1.0 cannot represent at all (not even escaped).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` without the characters XML 1.0 forbids (escaping is ElementTree's job)."""
    return _NOT_XML.sub("", text)


def _sub(
    parent: ET.Element,
    tag: str,
    text: str | None = None,
    ns: str | None = CAP_NS,
    attrib: dict[str, str] | None = None,
) -> ET.Element:
    el = ET.SubElement(parent, f"{{{ns}}}{tag}" if ns else tag, attrib or {})
    if text is not None:
        el.text = clean_text(text)
    return el


def _serialize(root: ET.Element, namespace: str | None) -> str:
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode", default_namespace=namespace)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def cap_xml(
    warning: Warning,
    directory: Directory,
    langs: tuple[str, ...] = ("vi", "en", "km"),
    sender: str = DEFAULT_SENDER,
    web: str | None = None,
) -> str:
    """The CAP 1.2 ``<alert>`` for one warning state, as an XML document (UTF-8)."""
    unknown = [lang for lang in langs if lang not in LANGUAGE_CODES]
    if unknown:
        raise ValueError(f"unsupported language(s) {unknown}; choose from vi, en, km")
    alert = ET.Element(f"{{{CAP_NS}}}alert")
    _sub(alert, "identifier", alert_identifier(warning))
    _sub(alert, "sender", sender_token(sender))
    _sub(alert, "sent", cap_time(warning.updated_at))
    _sub(alert, "status", "Exercise" if warning.exercise else "Actual")
    _sub(alert, "msgType", msg_type(warning))
    _sub(alert, "source", "canhbao")
    _sub(alert, "scope", "Public")
    if warning.exercise:
        _sub(alert, "note", "DIỄN TẬP - KHÔNG PHẢI THẬT / EXERCISE - NOT REAL")
    refs = references(warning, sender)
    if refs is not None:
        _sub(alert, "references", refs)
    codes = list(dict.fromkeys(a.code for a in warning.areas))
    for lang in dict.fromkeys(langs):
        _info(alert, warning, directory, lang, codes, web)
    return _serialize(alert, CAP_NS)


def _info(
    alert: ET.Element,
    warning: Warning,
    directory: Directory,
    lang: str,
    codes: Iterable[str],
    web: str | None,
) -> None:
    info = _sub(alert, "info")
    _sub(info, "language", LANGUAGE_CODES[lang])
    for cat in categories(warning):
        _sub(info, "category", cat)
    _sub(info, "event", event(warning, lang))
    for rt in response_types(warning):
        _sub(info, "responseType", rt)
    _sub(info, "urgency", urgency(warning))
    _sub(info, "severity", severity(warning))
    _sub(info, "certainty", certainty(warning, directory))
    if not ended(warning):
        _sub(info, "onset", cap_time(warning.raised_at))
    _sub(info, "senderName", sender_name(warning, lang))
    _sub(info, "headline", headline(warning, lang))
    _sub(info, "description", description(warning, lang))
    _sub(info, "instruction", instruction(warning, lang))
    if web:
        _sub(info, "web", web)
    for name, value in parameters(warning):
        param = _sub(info, "parameter")
        _sub(param, "valueName", name)
        _sub(param, "value", value)
    for code in codes:
        _area(info, warning, directory, code)


def atom_time(value: datetime) -> str:
    """RFC 3339, as Atom wants it (the same form as CAP times)."""
    return cap_time(value)


def atom_feed(
    entries: list[tuple[Warning, str]],
    feed_url: str,
    updated: datetime,
    title: str = "canhbao: cảnh báo sớm (CAP 1.2)",
) -> str:
    """An Atom 1.0 feed of CAP messages: one entry per warning, linking to its CAP
    document (``rel="alternate"``, ``type="application/cap+xml"``), as CAP feed readers
    (e.g. Google Public Alerts) expect. ``entries`` pairs each warning state with the
    URL of its CAP message."""
    # ElementTree cannot write unprefixed attributes (rel, href) with a default namespace,
    # so the Atom elements are unqualified and the root declares the namespace itself.
    feed = ET.Element("feed", {"xmlns": ATOM_NS, XML_LANG: "vi"})
    _sub(feed, "id", feed_url, None)
    _sub(feed, "title", title, None)
    _sub(feed, "updated", atom_time(updated), None)
    author = _sub(feed, "author", ns=None)
    _sub(author, "name", "canhbao", None)
    _sub(feed, "link", ns=None, attrib={"rel": "self", "type": ATOM_MIME, "href": feed_url})
    _sub(feed, "generator", "canhbao", None)
    for warning, url in entries:
        entry = _sub(feed, "entry", ns=None)
        _sub(entry, "id", alert_identifier(warning), None)
        _sub(entry, "title", headline(warning, "vi"), None)
        _sub(entry, "updated", atom_time(warning.updated_at), None)
        _sub(entry, "published", atom_time(warning.updated_at), None)
        entry_author = _sub(entry, "author", ns=None)
        _sub(entry_author, "name", warning.lead_agency.name_vi, None)
        _sub(entry, "link", ns=None, attrib={"rel": "alternate", "type": CAP_MIME, "href": url})
        for cat in categories(warning):
            _sub(entry, "category", ns=None, attrib={"term": cat})
        _sub(entry, "summary", description(warning, "vi"), None, {"type": "text"})
    return _serialize(feed, None)
