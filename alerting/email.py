"""Email notifications over SMTP, as multipart/alternative (text + HTML).

The body holds the numbers an on-call needs (value, threshold, window, scope), the rule
and a dashboard link. Sent with stdlib ``smtplib`` (the service loop is synchronous):
STARTTLS, implicit TLS or plain for a local relay, optional AUTH. A 5xx refusal (bad
recipient, rejected message) is permanent; a connection failure or 4xx is retried.
"""

from __future__ import annotations

import html
import smtplib
import ssl
from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from alerting.settings import AlertingSettings
from schemas.alerts import email_recipients

if TYPE_CHECKING:
    from alerting.notify import Notice


def dashboard_link(n: Notice, settings: AlertingSettings) -> str:
    """The dashboard around the window (±30 min), filtered to the rule's scope."""
    r = n.rule
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    params = {"range": "custom",
              "start": (n.window_start - timedelta(minutes=30)).strftime(fmt),
              "end": (n.window_end + timedelta(minutes=30)).strftime(fmt)}
    endpoint = n.member if r.scope == "each_endpoint" else r.endpoint
    api_key = n.member if r.scope == "each_api_key" else r.api_key
    params |= {k: v for k, v in (("endpoint", endpoint), ("method", r.method),
                                 ("api_key", api_key)) if v}
    return f"{settings.dashboard_base_url.rstrip('/')}/#{urlencode(params)}"


def facts(n: Notice, scope: str, value: str, condition: str = "") -> list[tuple[str, str]]:
    r = n.rule
    test = (("Threshold", f"{r.comparator} {r.threshold:g}") if r.rule_type == "threshold"
            else ("Condition", condition))
    return [("Rule", f"{r.name} (#{r.rule_id}, {r.rule_type})"), ("Metric", r.metric),
            ("Value", value), test,
            ("Window", f"{r.window_minutes} min, {n.window_start:%Y-%m-%d %H:%M} – "
                       f"{n.window_end:%H:%M} UTC"),
            ("Scope", scope), ("At", f"{n.at:%Y-%m-%d %H:%M:%S} UTC")]


def compose(n: Notice, settings: AlertingSettings, subject: str, scope: str,
            value: str, condition: str = "") -> EmailMessage:
    link = dashboard_link(n, settings)
    rows = facts(n, scope, value, condition)
    banner = ("This is a TEST notification sent on request; the rule's state is unchanged."
              if n.kind == "test" else "")
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.smtp_from
    msg["To"] = ", ".join(email_recipients(n.rule.target))
    msg["Date"] = format_datetime(n.at)
    msg["Message-ID"] = make_msgid("turnstile")
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies
    msg["X-Turnstile-Rule-Id"] = str(n.rule.rule_id)
    msg["X-Turnstile-Event-Id"] = str(n.event_id)
    width = max(len(k) for k, _ in rows)
    text = "\n".join([subject, "", *([banner, ""] if banner else []),
                      *(f"{k.ljust(width)}  {v}" for k, v in rows), "", f"Dashboard: {link}"])
    msg.set_content(text + "\n")
    cells = "".join(f"<tr><th align='left' style='padding:2px 12px 2px 0'>{html.escape(k)}</th>"
                    f"<td>{html.escape(v)}</td></tr>" for k, v in rows)
    note = f"<p><strong>{html.escape(banner)}</strong></p>" if banner else ""
    msg.add_alternative(
        f"<!doctype html><html><body style='font-family:sans-serif'>"
        f"<h2>{html.escape(subject)}</h2>{note}<table>{cells}</table>"
        f"<p><a href='{html.escape(link, quote=True)}'>Open the dashboard</a></p>"
        f"</body></html>", subtype="html")
    return msg


def send(msg: EmailMessage, settings: AlertingSettings) -> None:
    """One SMTP session; raises ``smtplib.SMTPException`` or ``OSError``."""
    context = ssl.create_default_context(
        cafile=str(settings.smtp_ca_file) if settings.smtp_ca_file else None)
    smtp: smtplib.SMTP
    if settings.smtp_security == "ssl":
        smtp = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port,
                                timeout=settings.timeout_s, context=context)
    else:
        smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.timeout_s)
    with smtp:
        if settings.smtp_security == "starttls":
            smtp.starttls(context=context)
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        smtp.send_message(msg)


def permanent(exc: Exception) -> bool:
    """The server refused the message itself (5xx): sending it again is useless."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in exc.recipients.values())
    if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return False
