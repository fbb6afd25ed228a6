"""Outgoing mail through SMTP (MAIL_* settings). With no MAIL_SERVER the message goes to the log."""
from __future__ import annotations

import logging
import smtplib
from email.message import EmailMessage

from flask import current_app

log = logging.getLogger(__name__)


def send_mail(to: str, subject: str, body: str) -> bool:
    cfg = current_app.config
    if not cfg["MAIL_SERVER"]:
        log.warning("mail not configured (MAIL_SERVER unset); message to %s: %s\n%s", to, subject, body)
        return False
    msg = EmailMessage()
    msg["From"] = cfg["MAIL_DEFAULT_SENDER"]
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    smtp_cls = smtplib.SMTP_SSL if cfg["MAIL_USE_SSL"] else smtplib.SMTP
    try:
        with smtp_cls(cfg["MAIL_SERVER"], cfg["MAIL_PORT"], timeout=cfg["MAIL_TIMEOUT_S"]) as smtp:
            if cfg["MAIL_USE_TLS"]:
                smtp.starttls()
            if cfg["MAIL_USERNAME"]:
                smtp.login(cfg["MAIL_USERNAME"], cfg["MAIL_PASSWORD"])
            smtp.send_message(msg)
    except (OSError, smtplib.SMTPException) as exc:
        log.error("could not send mail to %s via %s:%s: %s", to, cfg["MAIL_SERVER"], cfg["MAIL_PORT"], exc)
        return False
    log.info("mail sent to %s: %s", to, subject)
    return True
