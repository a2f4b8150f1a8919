"""Names people read instead of ids: a station's name ("Đáp Cầu", not ``dap-cau``), a
commune's, from the province's geography (``config/geography.yaml``); durations in
words. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field

from alerting.directory import Directory
from topics.models import Warning


@dataclass(frozen=True)
class Names:
    stations: dict[str, str] = field(default_factory=dict)
    communes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, directory: Directory | None) -> Names:
        if directory is None:
            return cls()
        geo = directory.geography
        return cls({s.id: s.name for s in geo.stations}, {c.code: c.name for c in geo.communes})

    def station(self, station_id: str) -> str:
        """A station's name, its id when the geography does not know it."""
        return self.stations.get(station_id, station_id)

    def subject(self, w: Warning) -> str:
        """What a warning is about, by name: the station, the commune (or one of the
        warning's areas), else the subject as the rule wrote it (a source address)."""
        if w.subject in self.stations:
            return self.stations[w.subject]
        if w.subject in self.communes:
            return self.communes[w.subject]
        for a in w.areas:
            if a.code == w.subject:
                return a.name
        return w.subject


def seconds_text(value: float | None, lang: str = "vi") -> str:
    """A delay as people read it: "4,2 s", "3,5 phút" / "3.5 min", "—" when none."""
    if value is None:
        return "—"
    if value < 60:
        n, unit = value, "s"
    elif value < 3600:
        n, unit = value / 60, "min" if lang == "en" else "phút"
    else:
        n, unit = value / 3600, "h" if lang == "en" else "giờ"
    text = f"{n:.1f}"
    return f"{text if lang == 'en' else text.replace('.', ',')} {unit}"
