"""The indicators page (``/indicators``): the record's indicators of a period, the same
numbers as ``canhbao indicators`` (the record computes them), per domain and commune,
with charts over the period (each step of the chart is the same computation over that
step's days)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from alerting import palette
from console.charts import bar_chart, buckets
from console.i18n import t
from console.pages import RecordUnavailable, Site, Sources
from topics.durations import span_text
from topics.models import Domain

VN = timezone(timedelta(hours=7))
DELAYS = ("first_reading_to_warning", "warning_to_verified", "warning_to_lead_agency",
          "warning_to_citizens")  # fmt: skip


def default_period(now: datetime) -> str:
    """This month, in Vietnam time."""
    return now.astimezone(VN).strftime("%Y-%m")


def register(app: web.Application, site: Site, sources: Sources) -> None:
    geo = sources.geography
    communes = [(c.code, c.name) for c in geo.communes] if geo is not None else []
    names = dict(communes)

    async def page(request: web.Request) -> web.StreamResponse:
        q = request.query
        period = q.get("period", "").strip() or default_period(datetime.now(UTC))
        domain = q.get("domain") if q.get("domain") in {d.value for d in Domain} else None
        area = q.get("area") if q.get("area") in names else None
        lang = site.lang(request)
        ctx: dict[str, Any] = {
            "period": period, "domain": domain, "area": area, "domains": list(Domain),
            "communes": communes, "names": names, "found": None, "error": None,
            "charts": [], "delays": DELAYS, "span": span_text,
        }  # fmt: skip
        if sources.record is None:
            return site.render(request, "indicators.html", **ctx)
        try:
            found = await sources.record.indicators(period, area, domain)
        except ValueError as exc:
            ctx["error"] = str(exc)
            return site.render(request, "indicators.html", status=400, **ctx)
        except RecordUnavailable as exc:
            ctx["error"] = str(exc)
            return site.render(request, "indicators.html", status=503, **ctx)
        ctx["found"] = found
        start = datetime.fromisoformat(found["period"]["start"])
        end = datetime.fromisoformat(found["period"]["end"])
        steps = buckets(start, end)
        per_step = []
        for b in steps:
            last = b.end - timedelta(days=1)
            text = f"{b.start:%Y-%m-%d}..{last:%Y-%m-%d}"
            per_step.append((await sources.record.indicators(text, area, domain))["total"])
        labels = [b.label for b in steps]
        word = "cấp" if lang == "vi" else "level"
        shown = [n for n in range(1, 6) if any(s["by_level"].get(str(n)) for s in per_step)]
        by_level = {
            f"{word} {n}": [float(s["by_level"].get(str(n), 0)) for s in per_step] for n in shown
        }
        title = t("ind_chart_levels", lang)
        # The levels in their own colours, as everywhere in the console.
        colours = [palette.colour(n) for n in shown]
        ctx["charts"].append((title, bar_chart(labels, by_level, title=title, colours=colours)))
        lead = [float(s["warning_to_lead_agency"]["median_s"] or 0) for s in per_step]
        if any(lead):
            title = t("ind_chart_lead", lang)
            series = {t("ind_median_s", lang): lead}
            ctx["charts"].append((title, bar_chart(labels, series, unit=" s", title=title)))
        return site.render(request, "indicators.html", **ctx)

    app.router.add_get("/indicators", page)
