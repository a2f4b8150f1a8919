"""One warning state rendered for one channel, language and audience.

The words live in template files under ``alerting/templates/<channel>/``, named
``<channel>.<lang>.<kind>.j2`` (``email.vi.txt.j2``, ``email.vi.html.j2``,
``sms.vi.txt.j2``, ``loudspeaker.km.txt.j2`` ...). An audience-specific file
``<channel>.<audience>.<lang>.<kind>.j2`` wins when it exists (``sms.citizen.vi.txt.j2``:
short plain-language instructions instead of the agencies' facts). Wording shared by
the channels is in ``common/phrases.<lang>.j2``; the subject line of every channel is
``common/subject.<lang>.txt.j2``. All run in the sandboxed environment of
:mod:`alerting.templates` (HTML autoescaped, text not).

Drills: every rendering of an exercise must say so first. The templates write the
mark; :func:`render` checks it is there (text, e-mail subject and HTML banner, both
SMS forms, every webhook text) and raises :class:`RenderError` otherwise, so an
edited template cannot silently drop it.

Loudspeaker scripts do not depend on the audience (they are heard by everyone);
e-mail and webhook have one form for all audiences; SMS has a citizen form.

Aggregation groups (:mod:`alerting.grouping`): a flush of one warning renders as
above; a reminder says so right after the exercise mark (``reminder=True``). A flush
of several warnings is one digest (:func:`render_digest`, ``templates/digest/``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from alerting.sms import SmsMessage, split, to_gsm7
from alerting.templates import TEMPLATE_DIR, context, environment, render_names
from topics.models import Audience, Channel, Warning

Lang = Literal["vi", "en", "km"]
LANGS: tuple[Lang, ...] = get_args(Lang)

# How every message of an exercise starts: the mark, or its long form that says "not
# real" too ("[DIỄN TẬP - KHÔNG PHẢI THẬT]", as the one-line summaries write it).
# A loudspeaker script starts with the spoken form.
EXERCISE_MARK: dict[str, str] = {"vi": "[DIỄN TẬP]", "en": "[EXERCISE]", "km": "[សមយុទ្ធ]"}
SPOKEN_EXERCISE_MARK: dict[str, str] = {"vi": "Diễn tập.", "en": "Exercise.", "km": "សមយុទ្ធ។"}
# A reminder of a warning still in force (repeat_interval), after the exercise mark if any.
REMINDER_MARK: dict[str, str] = {"vi": "[NHẮC LẠI]", "en": "[REMINDER]", "km": "[រំលឹក]"}
# The channels a group may flush to (alerting.notify.GROUPED_CHANNELS).
DIGEST_CHANNELS = (Channel.WEBHOOK, Channel.EMAIL, Channel.SMS)

# An SMS longer than this many segments is truncated (visibly: SmsMessage.truncated).
# Citizens get short messages (the templates aim at 3 segments); the few agency,
# commune and partner receivers may get a longer one with the facts.
SMS_MAX_SEGMENTS: dict[Audience, int] = {
    Audience.CITIZEN: 4,
    Audience.COMMUNE: 6,
    Audience.AGENCY: 6,
    Audience.PARTNER: 6,
}


class RenderError(ValueError):
    """A template produced a message that must not be sent (e.g. a drill not marked)."""


@dataclass(frozen=True)
class Rendered:
    """What one receiver gets. ``text`` is always set (for SMS: the text sent, with
    diacritics); the other fields belong to one channel each."""

    channel: Channel
    lang: Lang
    audience: Audience
    subject: str
    text: str
    html: str | None = None  # e-mail
    payload: dict[str, Any] | None = None  # webhook: the JSON the agency's system receives
    sms: SmsMessage | None = None  # SMS with diacritics (UCS-2 for Vietnamese and Khmer)
    # SMS unaccented (GSM-7); None for Khmer, which has no Latin form.
    sms_gsm7: SmsMessage | None = None


@dataclass(frozen=True)
class CapTexts:
    """The texts of one CAP ``info`` block."""

    headline: str
    description: str
    instruction: str


def exercise_mark(channel: Channel, lang: str) -> str:
    """The words an exercise message of ``channel`` starts with."""
    if channel is Channel.LOUDSPEAKER:
        return SPOKEN_EXERCISE_MARK[lang]
    return EXERCISE_MARK[lang]


def starts_marked(text: str, channel: Channel, lang: str) -> bool:
    """True when ``text`` starts as an exercise message of ``channel`` must:
    "[DIỄN TẬP]", "[DIỄN TẬP - ...]" (long form), or the spoken mark."""
    mark = exercise_mark(channel, lang)
    if channel is Channel.LOUDSPEAKER:
        return text.startswith(mark)
    stem = mark[:-1]  # without the closing bracket
    return text.startswith(mark) or text.startswith(stem + " - ")


def _names(channel: str, audience: str, lang: str, kind: str) -> list[str]:
    return [
        f"{channel}/{channel}.{audience}.{lang}.{kind}.j2",
        f"{channel}/{channel}.{lang}.{kind}.j2",
    ]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _tidy(text: str) -> str:
    """Lines kept, spaces inside a line folded, at most one blank line in a row."""
    lines = [" ".join(line.split()) for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _variables(warning: Warning, channel: Channel, lang: str, audience: Audience) -> dict[str, Any]:
    return {
        **context(warning),
        "ev": warning.evidence[0] if warning.evidence else None,
        "lang": lang,
        "channel": channel.value,
        "audience": audience.value,
    }


def as_lang(lang: str) -> Lang:
    """``lang`` as a supported language code, or ValueError."""
    for known in LANGS:
        if lang == known:
            return known
    raise ValueError(f"language {lang!r} is not supported (one of {', '.join(LANGS)})")


def cap_texts(warning: Warning, lang: str = "vi", *, template_dir: Path = TEMPLATE_DIR) -> CapTexts:
    """Headline, description and instruction of the CAP ``info`` block in ``lang``
    (``cap/cap.<lang>.txt.j2`` defines them as macros)."""
    lang = as_lang(lang)
    variables = _variables(warning, Channel.CAP, lang, Audience.CITIZEN)
    tpl = environment(template_dir).select_template(
        _names("cap", Audience.CITIZEN.value, lang, "txt")
    )
    module = tpl.make_module(variables)
    texts = CapTexts(
        *(
            _one_line(str(getattr(module, name)()))
            for name in ("headline", "description", "instruction")
        )
    )
    if warning.exercise:
        for name, value in vars(texts).items():
            if not starts_marked(value, Channel.CAP, lang):
                raise RenderError(f"cap/{lang}: the {name} does not start with the exercise mark")
    return texts


def with_reminder(text: str, lang: str) -> str:
    """``text`` marked as a reminder: first, or right after the exercise mark."""
    mark = REMINDER_MARK[lang]
    if starts_marked(text, Channel.WEBHOOK, lang):
        end = text.index("]") + 1
        return f"{text[:end]} {mark}{text[end:]}"
    return f"{mark} {text}"


def render(
    warning: Warning,
    channel: Channel,
    lang: Lang = "vi",
    audience: Audience = Audience.AGENCY,
    *,
    reminder: bool = False,
    template_dir: Path = TEMPLATE_DIR,
) -> Rendered:
    """Render ``warning`` for one channel, language and audience (see the module doc).
    ``reminder``: the same message, marked as a reminder (webhook, e-mail, SMS)."""
    lang = as_lang(lang)
    channel, audience = Channel(channel), Audience(audience)
    if reminder and channel not in DIGEST_CHANNELS:
        raise ValueError(f"reminders go by webhook, e-mail or SMS, not {channel.value}")
    variables = _variables(warning, channel, lang, audience)
    ch, aud = channel.value, audience.value

    subject = _one_line(
        render_names(
            [*_names(ch, aud, lang, "subject.txt"), f"common/subject.{lang}.txt.j2"],
            variables,
            template_dir,
        )
    )
    if reminder:
        subject = with_reminder(subject, lang)
    variables["subject"] = subject  # e-mails start with it: the reminder mark comes along

    html: str | None = None
    payload: dict[str, Any] | None = None
    sms: SmsMessage | None = None
    gsm: SmsMessage | None = None
    if channel is Channel.EMAIL:
        text = _tidy(render_names(_names(ch, aud, lang, "txt"), variables, template_dir))
        html = render_names(_names(ch, aud, lang, "html"), variables, template_dir).strip()
    elif channel is Channel.SMS:
        full = _one_line(render_names(_names(ch, aud, lang, "txt"), variables, template_dir))
        if reminder:
            full = with_reminder(full, lang)
        most = SMS_MAX_SEGMENTS[audience]
        sms = split(full, most)
        gsm = split(to_gsm7(full), most) if lang != "km" else None
        text = sms.text
    elif channel is Channel.WEBHOOK:
        texts = {
            code: _one_line(
                render_names(
                    _names(ch, aud, code, "txt"), {**variables, "lang": code}, template_dir
                )
            )
            for code in LANGS
        }
        if reminder:
            texts = {code: with_reminder(t, code) for code, t in texts.items()}
        payload = {
            "type": "canhbao.warning",
            "warning": warning.model_dump(mode="json"),
            "text": texts,
        }
        if reminder:
            payload["reminder"] = True
        text = texts[lang]
    elif channel is Channel.LOUDSPEAKER:
        text = _tidy(render_names(_names(ch, aud, lang, "txt"), variables, template_dir))
    else:  # CAP: the texts of the info block; the XML itself is alerting.cap's
        cap = cap_texts(warning, lang, template_dir=template_dir)
        subject, text = cap.headline, f"{cap.description}\n\n{cap.instruction}"
    out = Rendered(
        channel=channel,
        lang=lang,
        audience=audience,
        subject=subject,
        text=text,
        html=html,
        payload=payload,
        sms=sms,
        sms_gsm7=gsm,
    )
    if warning.exercise:
        _check_exercise(out)
    return out


def _digest_items(warnings: Sequence[Warning], changed: Collection[str]) -> list[dict[str, Any]]:
    return [
        {
            **context(w),
            "ev": w.evidence[0] if w.evidence else None,
            "changed": w.warning_id in changed,
        }
        for w in warnings
    ]


def render_digest(
    warnings: Sequence[Warning],
    channel: Channel,
    lang: Lang = "vi",
    audience: Audience = Audience.AGENCY,
    *,
    changed: Collection[str] = (),
    reminder: bool = False,
    labels: Mapping[str, str] | None = None,
    template_dir: Path = TEMPLATE_DIR,
) -> Rendered:
    """Several warnings of one aggregation group in one message: a headline, one line
    per warning (the ``changed`` ones tagged with what changed), the lead agencies.
    The words are in ``templates/digest/digest.<lang>.txt.j2``."""
    lang = as_lang(lang)
    channel, audience = Channel(channel), Audience(audience)
    if channel not in DIGEST_CHANNELS:
        raise ValueError(f"a digest goes by webhook, e-mail or SMS, not {channel.value}")
    if len(warnings) < 2:
        raise ValueError("a digest lists several warnings; one renders with render()")
    if len({w.exercise for w in warnings}) > 1:
        raise RenderError("a digest cannot mix exercise and real warnings")
    exercise = warnings[0].exercise
    env = environment(template_dir)
    items = _digest_items(warnings, changed)

    def variables(code: str) -> dict[str, Any]:
        return {
            "items": items, "exercise": exercise,
            "reminder": reminder, "reminder_mark": REMINDER_MARK[code],
            "labels": dict(labels or {}), "lang": code, "channel": channel.value,
            "audience": audience.value,
        }  # fmt: skip

    def words(code: str) -> Any:
        return env.get_template(f"digest/digest.{code}.txt.j2").make_module(variables(code))

    module = words(lang)
    subject = _one_line(str(module.subject()))
    text = _tidy(str(module.text()))
    html: str | None = None
    payload: dict[str, Any] | None = None
    sms: SmsMessage | None = None
    gsm: SmsMessage | None = None
    if channel is Channel.EMAIL:
        html = render_names(
            ["digest/digest.html.j2"], {**variables(lang), "subject": subject}, template_dir
        ).strip()
    elif channel is Channel.SMS:
        full = _one_line(str(module.sms()))
        most = SMS_MAX_SEGMENTS[audience]
        sms = split(full, most)
        gsm = split(to_gsm7(full), most) if lang != "km" else None
        text = sms.text
    else:
        texts = {code: _tidy(str(words(code).text())) for code in LANGS}
        payload = {
            "type": "canhbao.digest",
            "group": dict(labels or {}),
            "reminder": reminder,
            "changed": sorted(w.warning_id for w in warnings if w.warning_id in changed),
            "warnings": [w.model_dump(mode="json") for w in warnings],
            "text": texts,
        }
        text = texts[lang]
    out = Rendered(channel=channel, lang=lang, audience=audience, subject=subject, text=text,
                   html=html, payload=payload, sms=sms, sms_gsm7=gsm)  # fmt: skip
    if exercise:
        _check_exercise(out)
    return out


def _check_exercise(r: Rendered) -> None:
    where = f"{r.channel.value}/{r.audience.value}/{r.lang}"
    problems = []
    if not starts_marked(r.text, r.channel, r.lang):
        problems.append("text")
    if r.channel in (Channel.EMAIL, Channel.CAP) and not starts_marked(
        r.subject, Channel.EMAIL, r.lang
    ):
        problems.append("subject")
    if r.html is not None and EXERCISE_MARK[r.lang][1:-1] not in r.html:
        problems.append("HTML banner")
    if r.sms_gsm7 is not None and not r.sms_gsm7.text.startswith(to_gsm7(EXERCISE_MARK[r.lang])):
        problems.append("unaccented SMS")
    if r.payload is not None:
        problems += [
            f"webhook text {code}"
            for code, text in r.payload["text"].items()
            if not starts_marked(text, Channel.WEBHOOK, code)
        ]
    if problems:
        raise RenderError(
            f"{where}: an exercise must be marked at the start; missing in: {', '.join(problems)}"
        )
