"""Demo sign-in: passwordless access codes and signed session cookies.

A user is a role and a subject: ("borrower", party_id) or ("ops", staff name). The access code
is an HMAC of both under the site's secret, so codes need no table and cannot be guessed
without the secret; `fieldbank demo` prints a few. Fit for a demo, not for production, where
sign-in belongs to the bank's identity provider (the session layer stays the same).

The secret lives in `data_dir/web/secret.key` (created once, mode 0600) so printed codes keep
working across restarts; the session cookie (Starlette's SessionMiddleware, itsdangerous) is
signed with a key derived from it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request

ROLES = ("borrower", "ops")
SUBJECT_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
CODE_LENGTH = 10  # hex characters: 40 bits, plenty against guessing with the login limit below
MAX_FAILED_LOGINS_PER_SESSION = 20


@dataclass(frozen=True)
class User:
    role: str
    subject: str  # party_id for a borrower, staff name for ops


def load_secret(data_dir: Path) -> bytes:
    path = Path(data_dir) / "web" / "secret.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        os.replace(tmp, path)
    secret = bytes.fromhex(path.read_text().strip())
    assert len(secret) >= 16, f"{path}: secret too short"
    return secret


def session_key(secret: bytes) -> str:
    return hmac.new(secret, b"session-cookie", hashlib.sha256).hexdigest()


def access_code(secret: bytes, role: str, subject: str) -> str:
    assert role in ROLES and SUBJECT_PATTERN.match(subject), (role, subject)
    return hmac.new(secret, f"{role}\x00{subject}".encode(), hashlib.sha256).hexdigest()[:CODE_LENGTH]


def check_login(secret: bytes, role: str, subject: str, code: str) -> User | None:
    if role not in ROLES or not SUBJECT_PATTERN.match(subject or "") or len(code or "") != CODE_LENGTH:
        return None
    if not hmac.compare_digest(access_code(secret, role, subject), code.lower()):
        return None
    return User(role, subject)


def current_user(request: Request) -> User | None:
    data = request.session.get("user")
    if not isinstance(data, dict) or data.get("role") not in ROLES:
        return None
    return User(data["role"], str(data["subject"]))


def sign_in(request: Request, user: User) -> None:
    request.session.clear()  # a new session on sign-in: no fixation
    request.session["user"] = {"role": user.role, "subject": user.subject}
    request.session["csrf"] = secrets.token_urlsafe(24)


def csrf_token(request: Request) -> str:
    token = request.session.get("csrf")
    if not token:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    expected = request.session.get("csrf")
    if not expected or not submitted or not hmac.compare_digest(expected, submitted):
        raise HTTPException(status_code=403, detail="the form's CSRF token is missing or stale: reload the page")


class SignInRequired(Exception):
    """Raised by the page dependencies; the app turns it into a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path


def require(request: Request, role: str) -> User:
    user = current_user(request)
    if user is None:
        raise SignInRequired(request.url.path)
    if user.role != role:
        raise HTTPException(status_code=403, detail=f"this page is for the {role} role; you are signed in as {user.role}")
    return user


def borrower(request: Request) -> User:
    return require(request, "borrower")


def ops(request: Request) -> User:
    return require(request, "ops")
