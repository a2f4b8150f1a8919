"""``canhbao alerts render``: what one warning looks like on one channel, in one
language, for one audience -- the exact text the channel would send.

Exit status: 0 rendered; 1 bad input (file missing, not JSON, not a warning) or a
template that refuses to render; 2 CAP asked for but ``alerting.cap`` is not available.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any

from jinja2 import TemplateError
from pydantic import ValidationError

from alerting.render import LANGS, Rendered, as_lang, render
from alerting.sms import SmsMessage, limits
from topics.errors import field_errors
from topics.models import Audience, Channel, Warning

CAP_LANGS = ("vi", "en", "km")


def _err(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)


def load_warning(path: Path) -> Warning | None:
    """The warning in ``path``, or None after saying on stderr what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        _err(f"cannot read {path}: {exc.strerror or exc}")
        return None
    except UnicodeDecodeError as exc:
        _err(f"{path} is not UTF-8 text: {exc.reason} at byte {exc.start}")
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _err(f"{path} is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")
        return None
    try:
        return Warning.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path} is not a valid warning ({exc.error_count()} problem(s)):"]
        lines += field_errors(exc, "(file)", prefix="  ")
        _err("\n".join(lines))
        return None


def _print_sms(label: str, sms: SmsMessage) -> None:
    single, multi = limits(sms.encoding)
    encoding = "GSM-7" if sms.encoding == "gsm7" else "UCS-2"
    total = sum(sms.units)
    plural = "s" if sms.segments != 1 else ""
    print(
        f"{label}: {encoding}, {sms.segments} segment{plural}, {total} characters "
        f"(at most {single} in one SMS, {multi} per segment when split)"
    )
    for i, (part, size) in enumerate(zip(sms.parts, sms.units, strict=True), start=1):
        print(f"  [{i}/{sms.segments}] {size:3d}  {part}")
    if sms.truncated:
        print(f"  TRUNCATED to {sms.max_segments} segments; left out: {sms.omitted!r}")


def _print(r: Rendered, show_html: bool) -> None:
    if r.channel is Channel.EMAIL:
        print(f"Subject: {r.subject}\n")
        if show_html:
            print(r.html)
        else:
            print(r.text)
            print(f"\n(HTML part: {len(r.html or '')} characters; --html prints it)")
    elif r.channel is Channel.SMS:
        assert r.sms is not None
        _print_sms("with diacritics", r.sms)
        if r.sms_gsm7 is not None:
            _print_sms("unaccented", r.sms_gsm7)
        else:
            print(f"unaccented: none for {r.lang} (no Latin form)")
    elif r.channel is Channel.WEBHOOK:
        print(json.dumps(r.payload, ensure_ascii=False, indent=2))
    else:
        print(r.text)


def _cap(warning: Warning, lang: str | None) -> int:
    try:
        cap: Any = importlib.import_module("alerting.cap")
        cap_xml = cap.cap_xml
    except (ImportError, AttributeError) as exc:
        _err(f"CAP rendering is not available: alerting.cap.cap_xml cannot be loaded ({exc})")
        return 2
    from alerting.directory import ConfigError, Directory
    from canhbao.settings import get_settings

    settings = get_settings()
    try:
        directory = Directory.load(settings.geography_path, settings.directory_path)
    except ConfigError as exc:
        _err(f"cannot load the directory: {exc}")
        return 1
    langs = (lang,) if lang else CAP_LANGS
    try:
        xml = cap_xml(warning, directory, langs=langs)
    except Exception as exc:  # another module's failure: say which, do not trace back
        _err(f"cannot render CAP: {type(exc).__name__}: {exc}")
        return 1
    text = xml if isinstance(xml, str) else str(xml)
    print(text, end="" if text.endswith("\n") else "\n")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    warning = load_warning(Path(args.warning))
    if warning is None:
        return 1
    channel = Channel(args.channel)
    if channel is Channel.CAP:
        return _cap(warning, args.lang)
    lang = as_lang(args.lang or "vi")
    try:
        rendered = render(warning, channel, lang, Audience(args.audience))
    except (TemplateError, ValueError) as exc:
        _err(f"cannot render {channel.value}/{lang}/{args.audience}: {exc}")
        return 1
    _print(rendered, args.html)
    return 0


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add the ``alerts`` command group; returns its subcommands for more to join."""
    alerts = sub.add_parser(
        "alerts", help="notifications: render, approve or cancel broadcasts, silence"
    )
    asub = alerts.add_subparsers(dest="alerts_command", required=True)

    p = asub.add_parser(
        "render",
        help="print one rendering of a warning (channel, language, audience)",
        description="Print what a channel would send for a warning state stored as JSON "
        "(a message of the canhbao.warnings topic).",
    )
    p.add_argument("--warning", required=True, metavar="FILE.json", help="a Warning as JSON")
    p.add_argument("--channel", required=True, choices=[c.value for c in Channel])
    p.add_argument(
        "--lang",
        choices=list(LANGS),
        default=None,
        help="language (default vi; for cap: all of vi, en, km)",
    )
    p.add_argument("--audience", choices=[a.value for a in Audience], default=Audience.AGENCY.value)
    p.add_argument("--html", action="store_true", help="e-mail: print the HTML part")
    p.set_defaults(func=cmd_render)
    return asub
