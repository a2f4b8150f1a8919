"""The console's web application (aiohttp, server-rendered Jinja2 pages).

Every request but the login page and static files needs a session; every POST needs
the session's CSRF token; every action checks the account's role on the server.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, TemplateError, select_autoescape
from markupsafe import Markup
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from alerting import palette
from alerting.cap import cap_xml, event, level_label
from alerting.chart import number, readings_charts
from alerting.directory import Directory
from alerting.messages import renderer
from alerting.notify import Renderer
from alerting.routes import ReceiverConfig, Silence
from alerting.templates import VIETNAM as _VN
from console.accounts import Accounts, LoginResult, Permission, Session
from console.board import Board, Filter, approval_refusal
from console.broadcasts import (
    RequestError,
    cancellable,
    citizen_texts,
    delivery_counts,
    minutes_left,
    request_event,
)
from console.history import (
    Delivery,
    Event,
    History,
    HistoryUnavailable,
    WarningRecord,
    deliveries,
    thresholds,
    timeline,
)
from console.i18n import TEXTS, decision_label, lang_of, t
from console.names import Names, seconds_text
from console.pages import Site, Sources
from console.pages import api as api_pages
from console.pages import health as health_page
from console.pages import indicators as indicators_page
from console.pages import map as map_page
from console.pages import rules as rules_page
from console.silences import SilenceError, listing, make, matchers_of, preview, silenced_by
from console.streamgroups import MIN_GROUP, StreamGroup, group_id, group_key, group_stream
from pipeline.lifecycle import STATUS_ORDER, is_active
from topics import ids
from topics.errors import field_errors
from topics.metrics import Metrics
from topics.models import (
    Action,
    ApprovalAction,
    ApprovalEvent,
    Broadcast,
    BroadcastStatus,
    Command,
    Domain,
    LifecycleStatus,
    Phase,
    Warning,
)

HERE = Path(__file__).parent
SESSION_COOKIE = "canhbao_session"
LOGIN_COOKIE = "canhbao_login"
LANG_COOKIE = "canhbao_lang"
PUBLIC = ("/login", "/static/", "/healthz", "/favicon.ico", "/metrics")
# The record's API checks its own (bearer) tokens; the console's OpenAPI document is public.
PUBLIC_API = ("/api/v1/", "/openapi.json")
HEARTBEAT_SECONDS = 15.0
KHMER_FONT = "@fontsource/noto-sans-khmer/files"
FALSE_ALARM = "báo động giả / false alarm"


class Writer(Protocol):
    """Where the console's commands and approval events go (Kafka, or a test's list)."""

    async def command(self, command: Command) -> None: ...

    async def approval(self, event: ApprovalEvent) -> None: ...

    async def silence(self, silence: Silence) -> None: ...

    async def unsilence(self, silence_id: str, actor: str) -> None: ...


@dataclass(frozen=True)
class ConsoleConfig:
    """What ``canhbao console`` passes down from the settings."""

    # Reached over https through a TLS proxy: the console itself sees plain http, so
    # it is told to mark its cookies Secure.
    behind_https: bool = False
    # The province's stations, communes and agencies: names people read instead of
    # ids, and the CAP message of a warning. None: ids are shown, and no CAP.
    directory: Directory | None = None
    # The routing's receiver of citizen messages that waits for approval: the channels
    # and expiry of a broadcast an operator asks for. None: the console asks for none.
    citizens: ReceiverConfig | None = None


# The console's buttons and the Command each becomes: the same actions the CLI's
# ``canhbao warning`` sends. "Acknowledge" is the lifecycle's "responding" step; a
# false alarm closes the warning with the reason saying so.
ACTIONS: dict[str, Action] = {
    "verify": Action.VERIFY,
    "acknowledge": Action.RESPOND,
    "recover": Action.RECOVER,
    "resolve": Action.CLOSE,
    "false_alarm": Action.CLOSE,
    "set_phase": Action.SET_PHASE,
}
NEEDS_REASON = {"false_alarm", "set_phase"}
# An action of the audit log ("kind/action") as the console's buttons name it.
AUDIT_WORDS = {
    **{f"command/{a.value}": name for name, a in ACTIONS.items() if name != "false_alarm"},
    "approval/approve": "approve",
    "approval/cancel": "reject",
    "approval/request": "request_broadcast",
}
_STEPS = {"verify": Action.VERIFY, "acknowledge": Action.RESPOND, "recover": Action.RECOVER,
          "resolve": Action.CLOSE}  # fmt: skip
_STEP_STATUS = {
    Action.VERIFY: LifecycleStatus.VERIFIED,
    Action.RESPOND: LifecycleStatus.RESPONDING,
    Action.RECOVER: LifecycleStatus.RECOVERING,
    Action.CLOSE: LifecycleStatus.CLOSED,
}


def offered(w: Warning) -> list[str]:
    """The lifecycle steps a warning can still take: forward only (the worker refuses a
    step back), none once it is closed."""
    at = STATUS_ORDER.index(w.status)
    return [name for name, action in _STEPS.items()
            if STATUS_ORDER.index(_STEP_STATUS[action]) > at]  # fmt: skip


REQ_SESSION: web.RequestKey[Session] = web.RequestKey("session", Session)
APP_ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts", Accounts)
APP_BOARD: web.AppKey[Board] = web.AppKey("board", Board)
APP_WRITER: web.AppKey[Writer] = web.AppKey("writer", Writer)
APP_JINJA: web.AppKey[Environment] = web.AppKey("jinja", Environment)
APP_CONFIG: web.AppKey[ConsoleConfig] = web.AppKey("config", ConsoleConfig)
APP_STOP: web.AppKey[asyncio.Event] = web.AppKey("stop", asyncio.Event)
APP_METRICS: web.AppKey[Metrics] = web.AppKey("metrics", Metrics)
APP_HISTORY: web.AppKey[History | None] = web.AppKey("history", History)
# The worker's own renderer of citizen messages (None without the province's directory).
APP_RENDER: web.AppKey[Renderer | None] = web.AppKey("render", object)  # type: ignore[arg-type]


_COUNTED = {*ACTIONS, "approve", "cancel", "silence", "unsilence", "request_broadcast"}


def _count(request: web.Request, action: str, outcome: str) -> None:
    # The label takes only known actions: a form value must not add series at will.
    label = action if action in _COUNTED else "other"
    request.app[APP_METRICS].console_actions.labels(label, outcome).inc()


def _secure(request: web.Request) -> bool:
    return request.secure or request.app[APP_CONFIG].behind_https


def _set_cookie(
    resp: web.StreamResponse, request: web.Request, name: str, value: str, max_age: int | None
) -> None:
    resp.set_cookie(
        name, value, max_age=max_age, path="/", httponly=True, samesite="Strict",
        secure=_secure(request),
    )  # fmt: skip


def _lang(request: web.Request) -> str:
    return lang_of(request.cookies.get(LANG_COOKIE))


def _session(request: web.Request) -> Session:
    return request[REQ_SESSION]


def render(request: web.Request, name: str, status: int = 200, **ctx: Any) -> web.Response:
    env = request.app[APP_JINJA]
    lang = _lang(request)
    session = request.get(REQ_SESSION)
    body = env.get_template(name).render(
        lang=lang,
        t=lambda key: t(key, lang),
        session=session,
        path=request.path_qs,
        **ctx,
    )
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status=status, message=message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sessions, CSRF and the security headers, for every request."""
    if not request.path.startswith(PUBLIC + PUBLIC_API):
        token = request.cookies.get(SESSION_COOKIE, "")
        session = request.app[APP_ACCOUNTS].session(token) if token else None
        if session is None:
            if request.path.startswith("/api/"):  # JSON: an answer, not a login page
                return web.json_response({"error": "login needed"}, status=401)
            if request.method == "GET":
                raise web.HTTPSeeOther("/login?" + urlencode({"next": request.path_qs}))
            return refuse(request, 401, "login needed")
        request[REQ_SESSION] = session
        if request.method not in ("GET", "HEAD"):
            form = await request.post()
            sent = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
            if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
                _count(request, str(form.get("action") or form.get("decision") or request.path),
                       "refused_csrf")  # fmt: skip
                return refuse(request, 403, "CSRF token missing or wrong: reload the page")
    resp = await handler(request)
    resp.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def allowed(request: web.Request, permission: Permission, action: str) -> web.Response | None:
    """None when the account may; otherwise the 403 page to return."""
    if _session(request).account.may(permission):
        return None
    _count(request, action, "refused_role")
    return refuse(request, 403, t("not_allowed", _lang(request)))


# -- login ------------------------------------------------------------------------


def _safe_next(value: str) -> str:
    # Only a path of this site: never an open redirect to another.
    return value if value.startswith("/") and not value.startswith("//") else "/"


async def login_page(request: web.Request) -> web.StreamResponse:
    # The same nonce for every login page of this browser: a second tab (or a
    # background request sent here) must not invalidate the form already shown.
    nonce = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    nxt = _safe_next(request.query.get("next", "/"))
    resp = render(request, "login.html", nonce=nonce, next=nxt, error=None)
    _set_cookie(resp, request, LOGIN_COOKIE, nonce, None)
    return resp


async def login(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    # Login CSRF: the form must carry the nonce of the cookie the login page set.
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(str(form.get("nonce", "")).encode(), nonce.encode()):
        return refuse(request, 403, "CSRF token missing or wrong: reload the login page")
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    accounts = request.app[APP_ACCOUNTS]
    result = await asyncio.to_thread(accounts.login, name, password)
    request.app[APP_METRICS].console_logins.labels(result.value).inc()
    nxt = _safe_next(str(form.get("next", "/")))
    if result is not LoginResult.OK:
        throttled = result is LoginResult.THROTTLED
        status, key = (429, "throttled") if throttled else (401, "wrong_login")
        resp = render(request, "login.html", status=status, nonce=nonce, next=nxt,
                      error=t(key, _lang(request)))  # fmt: skip
        return resp
    token = accounts.open_session(name)
    resp = web.HTTPSeeOther(nxt)
    _set_cookie(resp, request, SESSION_COOKIE, token, int(accounts.session_seconds))
    resp.del_cookie(LOGIN_COOKIE, path="/")
    raise resp


async def logout(request: web.Request) -> web.StreamResponse:
    request.app[APP_ACCOUNTS].close_session(request.cookies.get(SESSION_COOKIE, ""))
    resp = web.HTTPSeeOther("/login")
    resp.del_cookie(SESSION_COOKIE, path="/")
    raise resp


async def set_lang(request: web.Request) -> web.StreamResponse:
    lang = lang_of(request.match_info["lang"])
    resp = web.HTTPSeeOther(_safe_next(request.query.get("next", "/")))
    resp.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/", samesite="Strict",
                    secure=_secure(request))  # fmt: skip
    raise resp


# -- the live stream --------------------------------------------------------------


def _row_context(w: Warning) -> dict[str, Any]:
    return {"w": w, "active": w.level > 0 and w.status is not LifecycleStatus.CLOSED}


async def stream(request: web.Request) -> web.StreamResponse:
    f = Filter.parse(dict(request.query))
    board = request.app[APP_BOARD]
    shown = board.select(f)
    events_url = "/events?" + urlencode({**f.query(), "since": board.cursor()})
    return render(
        request, "stream.html", warnings=shown, groups=group_stream(shown), f=f,
        domains=list(Domain),
        statuses=list(LifecycleStatus), events_url=events_url,
        silenced_ids=_silenced_ids(board, shown),
    )  # fmt: skip


def _silenced_ids(board: Board, warnings: list[Warning]) -> set[str]:
    """The warnings an active silence holds back now (marked on the stream)."""
    now = datetime.now(UTC)
    return {w.warning_id for w in warnings if silenced_by(board.silences.values(), w, now)}


def group_head_html(request: web.Request, f: Filter, w: Warning) -> str | None:
    """The head line of ``w``'s group on a stream filtered by ``f``, when the group is
    (now) large enough to fold: sent with each row, so a group that forms while the
    page is open folds at once, not on the next reload."""
    board = request.app[APP_BOARD]
    key = group_key(w)
    members = [x for x in board.select(f) if group_key(x) == key]
    if len(members) < MIN_GROUP:
        return None
    env = request.app[APP_JINJA]
    lang = _lang(request)
    return env.get_template("_group_head.html").render(
        lang=lang, t=lambda k: t(k, lang), g=StreamGroup(key, members)
    )


def row_html(request: web.Request, w: Warning) -> str:
    env = request.app[APP_JINJA]
    lang = _lang(request)
    silenced = _silenced_ids(request.app[APP_BOARD], [w])
    return env.get_template("_row.html").render(lang=lang, t=lambda key: t(key, lang), w=w,
                                                silenced_ids=silenced)  # fmt: skip


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each warning state as the Kafka reader delivers it, as the
    row to show ("warning") or to take away because it no longer matches ("remove")."""
    f = Filter.parse(dict(request.query))
    board = request.app[APP_BOARD]
    stop = request.app[APP_STOP]
    token = request.cookies.get(SESSION_COOKIE, "")
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                 "X-Accel-Buffering": "no"}
    )  # fmt: skip
    await resp.prepare(request)
    streams = request.app[APP_METRICS].console_streams
    streams.inc()
    # Where the page stood (or, reconnecting, the last event the browser had).
    cursor = request.headers.get("Last-Event-ID") or request.query.get("since")
    with board.listen() as listener:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            await resp.write(b": connected\n\n")
            # Listening first, then the states kept since the page: none falls between.
            sent = 0
            for seq, w in board.changed_since(cursor):
                await resp.write(_warning_event(request, f, w, seq, board.epoch))
                sent = seq
            while not stop.is_set():
                getter = asyncio.ensure_future(listener.queue.get())
                done, _ = await asyncio.wait(
                    {getter, stopping}, timeout=HEARTBEAT_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                if getter not in done:
                    getter.cancel()
                    if stopping in done:
                        break
                    # A session that expired, logged out or was disabled meanwhile
                    # ends its stream too (the browser then gets the login page).
                    if request.app[APP_ACCOUNTS].session(token) is None:
                        break
                    await resp.write(b": heartbeat\n\n")
                    continue
                item = getter.result()
                if item is None:  # dropped: the browser reconnects and reloads
                    break
                seq, w = item
                if seq > sent:  # else already sent as changed since the page
                    await resp.write(_warning_event(request, f, w, seq, board.epoch))
        except ConnectionResetError:  # the browser went away
            pass
        finally:
            stopping.cancel()
            streams.dec()
    return resp


def _warning_event(request: web.Request, f: Filter, w: Warning, seq: int, epoch: str) -> bytes:
    """The row to show, or to take away when ``w`` no longer matches the stream's
    filter; its id is the board's cursor, which a reconnecting browser sends back."""
    if f.matches(w):
        data = {"id": w.warning_id, "level": w.level, "html": row_html(request, w),
                "group_html": group_head_html(request, f, w),
                "escalated": w.level > w.previous_level}  # fmt: skip
        return _event("warning", data, f"{epoch}-{seq}")
    return _event("remove", {"id": w.warning_id}, f"{epoch}-{seq}")


def _event(kind: str, data: dict[str, Any], event_id: str) -> bytes:
    payload = json.dumps(data, ensure_ascii=False)
    return f"id: {event_id}\nevent: {kind}\ndata: {payload}\n\n".encode()


# -- a warning --------------------------------------------------------------------


async def _warning_view(request: web.Request, w: Warning) -> dict[str, Any]:
    """What the warning page shows besides the warning itself: its record (chart,
    timeline, deliveries), the CAP message, and the silence that holds it back."""
    lang = _lang(request)
    board = request.app[APP_BOARD]
    history = request.app[APP_HISTORY]
    record: WarningRecord | None = None
    record_error = None
    if history is None:
        record_error = t("no_record_configured", lang)
    else:
        try:
            record = await history.warning(w.warning_id, w.rule_id)
        except HistoryUnavailable as exc:
            record_error = f"{t('record_unreadable', lang)}: {exc}"
    chart_svg = None
    events: list[Event] = []
    sent: list[Delivery] = []
    if record is not None:
        lines = thresholds(record.levels, lambda lv: _rule_level_label(w, lv.name, lang))
        chart_svg = Markup(readings_charts(record.periods, record.points, lines, lang))
        events = timeline(record.periods, record.actions)
        sent = deliveries(record.notifications, record.deliveries)
    directory = request.app[APP_CONFIG].directory
    cap = None
    if directory is not None:
        try:
            cap = cap_xml(w, directory)
        except (ValueError, KeyError) as exc:  # an area or agency the directory lacks
            cap = f"<!-- {exc} -->"
    now = datetime.now(UTC)
    return {
        "record": record, "record_error": record_error, "chart": chart_svg, "events": events,
        "sent_notes": sent, "cap": cap,
        # The decisions recorded on the warning (its summaries are shown above).
        "decisions": [(decision_label(k, lang), v) for k, v in sorted(w.annotations.items())
                      if not k.startswith("summary_")],
        "silenced": silenced_by(board.silences.values(), w, now),
        "may_silence": _session(request).account.may(Permission.ACT),
        **_broadcast_offer(request, w),
    }  # fmt: skip


def _broadcast_offer(request: web.Request, w: Warning) -> dict[str, Any]:
    """A warning page's citizen broadcast: the one of its current state if asked for
    already, else whether this account may ask for one."""
    known = request.app[APP_BOARD].broadcasts.get(ids.broadcast_id(w.warning_id, w.version))
    may = (_session(request).account.may(Permission.ACT) and known is None
           and request.app[APP_CONFIG].citizens is not None and w.active and w.level > 0
           and bool(w.areas))  # fmt: skip
    return {"state_broadcast": known, "may_request_broadcast": may}


async def warning_page(request: web.Request) -> web.StreamResponse:
    wid = request.match_info["warning_id"]
    w = request.app[APP_BOARD].warnings.get(wid)
    if w is None:
        return refuse(request, 404, t("not_found", _lang(request)))
    may_act = _session(request).account.may(Permission.ACT)
    return render(request, "warning.html", w=w, may_act=may_act, phases=list(Phase),
                  sent=request.query.get("sent"), error=None, offered=offered(w),
                  active=is_active(w), **await _warning_view(request, w))  # fmt: skip


def command_for(warning_id: str, choice: str, actor: str, reason: str, phase: str) -> Command:
    """The Command a console button sends; ValueError (or ValidationError) with the
    reason when it cannot be sent."""
    action = ACTIONS.get(choice)
    if action is None:
        raise ValueError(f"no action {choice!r}")
    reason = reason.strip()
    if choice in NEEDS_REASON and not reason:
        raise ValueError("a reason is required")
    if choice == "false_alarm":
        reason = f"{FALSE_ALARM}: {reason}"
    return Command(
        command_id=str(uuid.uuid4()),
        warning_id=warning_id,
        action=action,
        actor=actor,
        reason=reason,
        phase=Phase(int(phase)) if choice == "set_phase" and phase in {"1", "2", "3"} else None,
    )


async def warning_action(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    choice = str(form.get("action", ""))
    if (no := allowed(request, Permission.ACT, choice)) is not None:
        return no
    wid = request.match_info["warning_id"]
    w = request.app[APP_BOARD].warnings.get(wid)
    if w is None:
        return refuse(request, 404, t("not_found", _lang(request)))
    try:
        command = command_for(wid, choice, _session(request).account.name,
                              str(form.get("reason", "")), str(form.get("phase", "")))  # fmt: skip
    except ValidationError as exc:
        _count(request, choice, "invalid")
        message = "; ".join(field_errors(exc, "command"))
        return render(request, "warning.html", status=400, w=w, may_act=True,
                      phases=list(Phase), sent=None, error=message, offered=offered(w),
                      active=is_active(w), **await _warning_view(request, w))  # fmt: skip
    except ValueError as exc:
        _count(request, choice, "invalid")
        return render(request, "warning.html", status=400, w=w, may_act=True,
                      phases=list(Phase), sent=None, error=str(exc), offered=offered(w),
                      active=is_active(w), **await _warning_view(request, w))  # fmt: skip
    await request.app[APP_WRITER].command(command)
    _count(request, choice, "sent")
    raise web.HTTPSeeOther(f"/warnings/{quote(wid, safe='')}?sent={quote(choice)}")


# -- broadcasts -------------------------------------------------------------------


# How many broadcasts below the waiting ones show their texts and delivery counts (each
# reads the record); the rest are listed in a table.
DETAILED_OTHERS = 10


async def _counts(request: web.Request, b: Broadcast) -> tuple[Any, str | None]:
    """The delivery counts of a sent (or cancelled) broadcast from the threat record, or
    None with the reason when the record cannot say."""
    history = request.app[APP_HISTORY]
    if history is None:
        return None, t("no_record_configured", _lang(request))
    try:
        record = await history.warning(b.warning.warning_id, b.warning.rule_id)
    except HistoryUnavailable as exc:
        return None, str(exc)
    if record is None:
        return None, t("record_has_none", _lang(request))
    return delivery_counts(b, record.notifications, record.deliveries), None


async def broadcasts_page(request: web.Request) -> web.StreamResponse:
    board = request.app[APP_BOARD]
    me = _session(request).account
    render_msg = request.app[APP_RENDER]
    now = datetime.now(UTC)

    def texts(b: Broadcast) -> list[Any] | str:
        """The texts, or why they cannot be rendered (the worker would fail alike:
        the approvers must still see the broadcast and can reject it)."""
        if render_msg is None:
            return []
        try:
            return citizen_texts(b, render_msg)
        except (ValueError, KeyError, TemplateError) as exc:
            return f"{type(exc).__name__}: {exc}"

    pending = [
        {"b": b, "requester": board.requesters.get(b.broadcast_id),
         "refusal": approval_refusal(me.name, b, board.requesters.get(b.broadcast_id)),
         "minutes_left": minutes_left(b, now), "texts": texts(b)}
        for b in board.pending()
    ]  # fmt: skip
    others = board.others()[:50]
    detailed = []
    for b in others[:DETAILED_OTHERS]:
        counts, counts_error = (None, None)
        if b.status in (BroadcastStatus.SENT, BroadcastStatus.CANCELLED) and b.sent_at:
            counts, counts_error = await _counts(request, b)
        detailed.append({"b": b, "requester": board.requesters.get(b.broadcast_id),
                         "counts": counts, "counts_error": counts_error, "texts": texts(b),
                         "cancellable": cancellable(b)})  # fmt: skip
    return render(request, "broadcasts.html", pending=pending, detailed=detailed,
                  others=others[DETAILED_OTHERS:], may_approve=me.may(Permission.APPROVE),
                  error=None, sent=request.query.get("sent"),
                  no_texts=render_msg is None)  # fmt: skip


async def broadcast_decide(request: web.Request) -> web.StreamResponse:
    """Approve, reject (a waiting one) or cancel (a sent one): the event ``canhbao alerts
    approve`` / ``cancel`` writes, with the account as actor."""
    form = await request.post()
    decision = str(form.get("decision", ""))
    if (no := allowed(request, Permission.APPROVE, decision)) is not None:
        return no
    board = request.app[APP_BOARD]
    bid = request.match_info["broadcast_id"]
    b = board.broadcasts.get(bid)
    if b is None:
        return refuse(request, 404, t("not_found", _lang(request)))
    me = _session(request).account.name
    if decision == "approve":
        why = approval_refusal(me, b, board.requesters.get(bid))
        if why is not None:
            _count(request, decision, "refused_two_person")
            return refuse(request, 403, t(why, _lang(request)))
        action = ApprovalAction.APPROVE
    elif decision == "cancel":
        if not cancellable(b):  # the pipeline would refuse it: say so now
            _count(request, decision, "invalid")
            return refuse(request, 409, t("not_cancellable", _lang(request)))
        action = ApprovalAction.CANCEL
    else:
        return refuse(request, 400, f"no decision {decision!r}")
    try:
        event = ApprovalEvent(event_id=str(uuid.uuid4()), broadcast_id=bid, action=action,
                              actor=me, reason=str(form.get("reason", "")).strip())  # fmt: skip
    except ValidationError as exc:
        _count(request, decision, "invalid")
        return refuse(request, 400, "; ".join(field_errors(exc, decision)))
    await request.app[APP_WRITER].approval(event)
    _count(request, decision, "sent")
    raise web.HTTPSeeOther(f"/broadcasts?sent={quote(decision)}")


async def broadcast_request(request: web.Request) -> web.StreamResponse:
    """Ask two approvers to send a warning to its communes' citizens: the REQUEST event
    the route stage sends for the states its routing picks, with the account as the
    requester (who then cannot approve it)."""
    if (no := allowed(request, Permission.ACT, "request_broadcast")) is not None:
        return no
    form = await request.post()
    wid = request.match_info["warning_id"]
    w = request.app[APP_BOARD].warnings.get(wid)
    if w is None:
        return refuse(request, 404, t("not_found", _lang(request)))
    receiver = request.app[APP_CONFIG].citizens
    if receiver is None:
        return refuse(request, 409, t("no_citizen_receiver", _lang(request)))
    try:
        event = request_event(w, receiver, request.app[APP_BOARD].broadcasts,
                              _session(request).account.name, str(form.get("reason", "")),
                              datetime.now(UTC))  # fmt: skip
    except (RequestError, ValidationError) as exc:
        _count(request, "request_broadcast", "invalid")
        return refuse(request, 400, str(exc))
    await request.app[APP_WRITER].approval(event)
    _count(request, "request_broadcast", "sent")
    raise web.HTTPSeeOther(f"/broadcasts?sent=request_broadcast#{quote(event.broadcast_id)}")


# -- silences ---------------------------------------------------------------------


def _silences_page(
    request: web.Request,
    status: int = 200,
    form: dict[str, str] | None = None,
    preview_of: list[Warning] | None = None,
    error: str | None = None,
) -> web.Response:
    board = request.app[APP_BOARD]
    active, ended = listing(board.silences.values(), datetime.now(UTC))
    # What each active silence holds back now: the warnings its matchers match.
    holds = {e.silence.id: preview(e.silence.matchers, board.warnings.values()) for e in active}
    return render(request, "silences.html", status=status, active_silences=active, holds=holds,
                  ended_silences=ended, form=form or {}, preview=preview_of, error=error,
                  may_silence=_session(request).account.may(Permission.ACT),
                  sent=request.query.get("sent"),
                  request_lifted=bool(request.query.get("lifted")))  # fmt: skip


async def silences_page(request: web.Request) -> web.StreamResponse:
    form = {"matchers": "", "duration": "2h", "reason": ""}
    wid = request.query.get("warning")
    w = request.app[APP_BOARD].warnings.get(wid or "")
    if w is not None:  # "silence this warning" from its page: its rule and subject
        form["matchers"] = f'rule="{w.rule_id}"\nsubject="{w.subject}"'
    return _silences_page(request, form=form)


async def silences_post(request: web.Request) -> web.StreamResponse:
    """Preview (nothing sent) or create a silence: the message the CLI's ``canhbao
    alerts silence`` writes, with the account as its author."""
    form = await request.post()
    intent = str(form.get("intent", "preview"))
    action = "silence" if intent == "create" else "preview"
    if (no := allowed(request, Permission.ACT, action)) is not None:
        return no
    values = {k: str(form.get(k, "")) for k in ("matchers", "duration", "reason")}
    board = request.app[APP_BOARD]
    try:
        matchers = matchers_of(values["matchers"])
        matched = preview(matchers, board.warnings.values())
        if intent != "create":
            return _silences_page(request, form=values, preview_of=matched)
        silence = make(values["matchers"], values["duration"], values["reason"],
                       _session(request).account.name, datetime.now(UTC))  # fmt: skip
    except SilenceError as exc:
        if intent == "create":
            _count(request, action, "invalid")
        return _silences_page(request, status=400, form=values, error=str(exc))
    await request.app[APP_WRITER].silence(silence)
    _count(request, action, "sent")
    raise web.HTTPSeeOther(f"/silences?sent={quote(silence.id)}")


async def silence_lift(request: web.Request) -> web.StreamResponse:
    """Lift a silence early: the tombstone ``canhbao alerts unsilence`` writes, with
    the account as the one who lifted it."""
    if (no := allowed(request, Permission.ACT, "unsilence")) is not None:
        return no
    sid = request.match_info["silence_id"]
    entry = request.app[APP_BOARD].silences.get(sid)
    if entry is None or not entry.active(datetime.now(UTC)):
        return refuse(request, 404, t("not_found", _lang(request)))
    await request.app[APP_WRITER].unsilence(sid, _session(request).account.name)
    _count(request, "unsilence", "sent")
    raise web.HTTPSeeOther(f"/silences?sent={quote(sid)}&lifted=1")


# -- static -----------------------------------------------------------------------


async def levels_css(request: web.Request) -> web.StreamResponse:
    """The level colours of alerting.palette as CSS classes (one source for them all)."""
    rules = [f".lvl-{c.level} {{ background: {c.hex}; color: {c.text}; }}"
             for c in palette.PALETTE.values()]  # fmt: skip
    rules.append(".lvl-0 { background: #e6e6e6; color: #000; }")
    return web.Response(text="\n".join(rules) + "\n", content_type="text/css",
                        headers={"Cache-Control": "max-age=3600"})  # fmt: skip


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def no_icon(request: web.Request) -> web.StreamResponse:
    return web.Response(status=204)


# -- /metrics ---------------------------------------------------------------------


async def metrics_page(request: web.Request) -> web.StreamResponse:
    """Prometheus' scrape: open like every canhbao service's /metrics (counts, no
    warning content), so a scraper needs no account."""
    body = generate_latest(request.app[APP_METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _level_label(level: int, lang: str) -> str:
    """A disaster risk level (Decision 18/2021): its number and official name."""
    return palette.label(level, lang)


def _alarm_label(w: Warning, lang: str) -> str:
    """The warning's own level, written beside its colour: the number and the rule's
    name for it (báo động II ...); not the disaster risk level, shown apart."""
    if w.level == 0:
        return t("cleared", lang)
    word = t("level", lang).lower()
    # The rule's own name for it as the bulletins write it: "báo động II".
    return f"{word} {w.level} · {level_label(w, lang)}" if w.level_name else f"{word} {w.level}"


def _rule_level_label(w: Warning, name: str, lang: str) -> str:
    """A level of the warning's rule as the bulletins name it ("báo động II")."""
    return level_label(w.model_copy(update={"level_name": name}), lang)


def _hazard(w: Warning, lang: str) -> str:
    """The hazard by its name in the page's language (river_flood: "Lũ sông"); a hazard
    the CAP names do not know gets its domain's name with its code."""
    name = event(w, lang)
    if name == event(w.model_copy(update={"hazard": ""}), lang):
        return f"{name} ({w.hazard})"
    return name


def jinja(directory: Directory | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["level_label"] = _level_label
    env.filters["alarm_label"] = _alarm_label
    env.filters["q"] = lambda s: quote(str(s), safe="")
    env.filters["vn_time"] = lambda d: d.astimezone(_VN).strftime("%H:%M:%S %d/%m/%Y")
    env.globals["texts"] = TEXTS
    env.globals["audit_words"] = AUDIT_WORDS
    env.filters["hazard"] = _hazard
    env.filters["rule_level"] = lambda w, lang: (
        level_label(w, lang) if w.level else t("cleared", lang)
    )
    names = Names.of(directory)
    env.filters["station"] = names.station
    env.filters["commune"] = lambda code: names.communes.get(code, code)
    env.filters["group_id"] = lambda w: group_id(group_key(w))
    env.filters["subject"] = names.subject
    env.filters["seconds"] = seconds_text
    env.filters["num"] = lambda v, lang: number(float(v), lang)
    return env


def make_app(
    accounts: Accounts,
    board: Board,
    writer: Writer,
    config: ConsoleConfig | None = None,
    metrics: Metrics | None = None,
    history: History | None = None,
    sources: Sources | None = None,
) -> web.Application:
    app = web.Application(middlewares=[security], client_max_size=64 * 1024)
    app[APP_ACCOUNTS] = accounts
    app[APP_BOARD] = board
    app[APP_WRITER] = writer
    app[APP_JINJA] = jinja((config or ConsoleConfig()).directory)
    app[APP_CONFIG] = config or ConsoleConfig()
    app[APP_STOP] = asyncio.Event()
    app[APP_METRICS] = metrics or Metrics.default()
    app[APP_HISTORY] = history
    directory = (config or ConsoleConfig()).directory
    app[APP_RENDER] = renderer(directory) if directory is not None else None

    async def stop_streams(app: web.Application) -> None:
        app[APP_STOP].set()

    app.on_shutdown.append(stop_streams)
    app.router.add_get("/login", login_page)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_get("/lang/{lang}", set_lang)
    app.router.add_get("/", stream)
    app.router.add_get("/events", events)
    app.router.add_get("/warnings/{warning_id}", warning_page)
    app.router.add_post("/warnings/{warning_id}/action", warning_action)
    app.router.add_get("/broadcasts", broadcasts_page)
    app.router.add_post("/broadcasts/{broadcast_id}/decide", broadcast_decide)
    app.router.add_post("/warnings/{warning_id}/broadcast", broadcast_request)
    app.router.add_get("/silences", silences_page)
    app.router.add_post("/silences", silences_post)
    app.router.add_post("/silences/{silence_id}/lift", silence_lift)
    app.router.add_get("/static/levels.css", levels_css)
    app.router.add_static("/static/", HERE / "static")
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/favicon.ico", no_icon)
    app.router.add_get("/metrics", metrics_page)
    # The area map, rules, health and indicators pages, the record's API and the
    # OpenAPI document (console/pages/), each registered with one call.
    site = Site(render=render, refuse=refuse, lang=_lang, board=APP_BOARD)
    sources = sources or Sources()
    # The Khmer SMS texts on the broadcasts page need a Khmer font, which few operator
    # machines have; the console serves one itself (npm, no CDN). Without it the
    # browser falls back to whatever it has.
    khmer = sources.node_modules / KHMER_FONT
    if khmer.is_dir():
        app.router.add_static("/vendor/fonts/", khmer)
    map_page.register(app, site, sources)
    rules_page.register(app, site, sources)
    health_page.register(app, site, sources)
    indicators_page.register(app, site, sources)
    api_pages.register(app, site, sources)
    return app
