"""The console's words, Vietnamese first and English. A page asks ``t(key)`` in the
language the operator chose (a cookie; Vietnamese by default)."""

from __future__ import annotations

LANGS = ("vi", "en")

TEXTS: dict[str, tuple[str, str]] = {
    "title": ("Bảng điều khiển cảnh báo", "Warning console"),
    "stream": ("Luồng cảnh báo", "Live stream"),
    "broadcasts": ("Tin phát cho người dân", "Citizen broadcasts"),
    "login": ("Đăng nhập", "Log in"),
    "logout": ("Đăng xuất", "Log out"),
    "account": ("Tài khoản", "Account"),
    "password": ("Mật khẩu", "Password"),
    "wrong_login": ("Sai tài khoản hoặc mật khẩu.", "Wrong account or password."),
    "throttled": (
        "Quá nhiều lần đăng nhập sai: hãy thử lại sau 5 phút.",
        "Too many wrong passwords: try again in 5 minutes.",
    ),
    "domain": ("Lĩnh vực", "Domain"),
    "level": ("Cấp", "Level"),
    "status": ("Trạng thái", "Status"),
    "phase": ("Giai đoạn", "Phase"),
    "all": ("Tất cả", "All"),
    "active": ("Đang hiệu lực", "Active"),
    "filter": ("Lọc", "Filter"),
    "hazard": ("Hiểm họa", "Hazard"),
    "subject": ("Đối tượng", "Subject"),
    "communes": ("Xã/phường", "Communes"),
    "updated": ("Cập nhật", "Updated"),
    "raised": ("Phát sinh", "Raised"),
    "lead_agency": ("Cơ quan chủ trì", "Lead agency"),
    "scope_tier": ("Cấp chỉ huy", "Scope tier"),
    "severity": ("Mức độ (CAP)", "Severity (CAP)"),
    "risk_level": ("Cấp độ rủi ro thiên tai", "Disaster risk level"),
    "evidence": ("Bằng chứng", "Evidence"),
    "station": ("Trạm", "Station"),
    "metric": ("Chỉ số", "Metric"),
    "value": ("Giá trị", "Value"),
    "threshold": ("Ngưỡng", "Threshold"),
    "observed": ("Thời điểm đo", "Observed"),
    "note": ("Ghi chú", "Note"),
    "actions": ("Thao tác", "Actions"),
    "reason": ("Lý do", "Reason"),
    "verify": ("Xác minh", "Verify"),
    "acknowledge": ("Tiếp nhận, ứng phó", "Acknowledge (responding)"),
    "recover": ("Chuyển sang khắc phục", "Recovering"),
    "resolve": ("Kết thúc", "Resolve (close)"),
    "false_alarm": ("Báo động giả", "False alarm"),
    "set_phase": ("Chuyển giai đoạn", "Change phase"),
    "phase_1": ("1 – sự cố chuyên ngành", "1 – domain incident"),
    "phase_2": ("2 – đe dọa an ninh, trật tự", "2 – security threat"),
    "phase_3": ("3 – tình trạng khẩn cấp", "3 – state of emergency"),
    "sent_command": ("Đã gửi lệnh", "Command sent"),
    "no_warnings": ("Không có cảnh báo nào.", "No warnings."),
    "connected": ("Đang nhận trực tiếp", "Live"),
    "disconnected": ("Mất kết nối, đang kết nối lại…", "Disconnected, reconnecting…"),
    "cleared": ("đã hết", "cleared"),
    "exercise": ("DIỄN TẬP", "EXERCISE"),
    "pending": ("Chờ phê duyệt", "Waiting for approval"),
    "requested_by": ("Yêu cầu bởi", "Requested by"),
    "approved_by": ("Đã duyệt", "Approved by"),
    "expires": ("Hết hạn", "Expires"),
    "channels": ("Kênh", "Channels"),
    "approve": ("Phê duyệt", "Approve"),
    "reject": ("Từ chối (hủy)", "Reject (cancel)"),
    "no_broadcasts": ("Không có tin nào chờ duyệt.", "No broadcast is waiting."),
    "other_broadcasts": ("Các tin khác", "Other broadcasts"),
    "own_request": (
        "Bạn đã yêu cầu tin này: người khác phải phê duyệt.",
        "You requested this broadcast: someone else must approve it.",
    ),
    "already_approved": (
        "Bạn đã phê duyệt tin này: cần một người thứ hai.",
        "You approved it already: a second person must approve.",
    ),
    "not_allowed": ("Tài khoản của bạn không có quyền này.", "Your account may not do this."),
    "not_found": ("Không tìm thấy.", "Not found."),
    "warning": ("Cảnh báo", "Warning"),
    "version": ("Phiên bản", "Version"),
    "annotations": ("Quyết định đã ghi", "Decisions recorded"),
    "role": ("Vai trò", "Role"),
    "sound": ("Âm báo", "Sound"),
    "language": ("English", "Tiếng Việt"),
    # The domains (topics.models.Domain)
    "dom_water": ("thủy văn, lũ", "water"),
    "dom_environment": ("môi trường", "environment"),
    "dom_health": ("y tế", "health"),
    "dom_cyber": ("an ninh mạng", "cyber"),
    "dom_energy": ("năng lượng", "energy"),
    "dom_geology": ("địa chất", "geology"),
    # The broadcasts' statuses (topics.models.BroadcastStatus)
    "bs_pending": ("chờ phê duyệt", "pending"),
    "bs_sent": ("đã phát", "sent"),
    "bs_expired": ("hết hạn", "expired"),
    "bs_cancelled": ("đã hủy", "cancelled"),
    "bs_superseded": ("được thay bằng tin mới hơn", "superseded"),
    # The lifecycle's statuses (topics.models.LifecycleStatus)
    "st_new": ("mới", "new"),
    "st_verified": ("đã xác minh", "verified"),
    "st_responding": ("đang ứng phó", "responding"),
    "st_recovering": ("đang khắc phục", "recovering"),
    "st_closed": ("đã kết thúc", "closed"),
}


def lang_of(value: str | None) -> str:
    return value if value in LANGS else "vi"


def t(key: str, lang: str) -> str:
    vi, en = TEXTS[key]
    return en if lang == "en" else vi
