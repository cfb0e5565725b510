"""The pages without a browser (fast): sign-in, roles, ownership (403), CSRF, idempotent
forms, refused amounts that book nothing, the statement download, the dashboard's HTML."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from fieldbank.api.app import create_app
from fieldbank.config import load_settings
from fieldbank.web import auth
from fieldbank.web.apply import total_cost_minor
from fieldbank.web.money import AmountError, fmt_minor, parse_major


@pytest.fixture
def app(tmp_path: Path):  # noqa: ANN201
    app = create_app(load_settings(data_dir=tmp_path))
    bank = app.state.bank
    for party in ("P1", "P2"):
        bank.open_line(offer_id=f"o-{party}", party_id=party, product_code="line-revolving", amount_minor=500_000,
                       idempotency_key=f"open-{party}")
    return app


def _client(app, role: str, subject: str) -> TestClient:  # noqa: ANN001
    c = TestClient(app)
    r = c.post("/login", data={"role": role, "user": subject,
                               "code": auth.access_code(app.state.web_secret, role, subject)}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return c


def _csrf(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def _loan_of(app, party: str) -> int:  # noqa: ANN001
    with app.state.bank.engine.connect() as conn:
        return conn.execute(text("SELECT loan_id FROM loans WHERE party_id = :p"), {"p": party}).scalar_one()


def _entries(app) -> int:  # noqa: ANN001
    with app.state.bank.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM journal_entries")).scalar_one()


def test_sign_in_needs_the_right_code_and_roles_are_kept_apart(app) -> None:  # noqa: ANN001
    c = TestClient(app)
    assert c.get("/me", follow_redirects=False).headers["location"] == "/login?next=/me"
    bad = c.post("/login", data={"role": "borrower", "user": "P1", "code": "0" * auth.CODE_LENGTH})
    assert bad.status_code == 401 and "do not match" in bad.text
    ops_code_for_borrower = c.post("/login", data={"role": "ops", "user": "P1",
                                                   "code": auth.access_code(app.state.web_secret, "borrower", "P1")})
    assert ops_code_for_borrower.status_code == 401
    borrower = _client(app, "borrower", "P1")
    assert borrower.get("/ops").status_code == 403
    staff = _client(app, "ops", "ops")
    assert staff.get("/me").status_code == 403
    assert staff.get("/ops").status_code == 200


def test_a_borrower_sees_only_their_own_loan(app) -> None:  # noqa: ANN001
    c = _client(app, "borrower", "P1")
    mine, theirs = _loan_of(app, "P1"), _loan_of(app, "P2")
    assert c.get(f"/me/loans/{mine}").status_code == 200
    assert c.get(f"/me/loans/{theirs}").status_code == 403
    assert c.get(f"/me/loans/{theirs}/statement.csv").status_code == 403
    csrf = _csrf(c.get(f"/me/loans/{mine}").text)
    before = _entries(app)
    r = c.post(f"/me/loans/{theirs}/draw", data={"amount": "10", "form_key": "k1", "csrf": csrf})
    assert r.status_code == 403 and _entries(app) == before
    assert c.get("/me/loans/999999").status_code == 404
    assert f"/me/loans/{theirs}" not in c.get("/me").text


def test_forms_need_the_csrf_token_and_are_idempotent(app) -> None:  # noqa: ANN001
    c = _client(app, "borrower", "P1")
    loan = _loan_of(app, "P1")
    page = c.get(f"/me/loans/{loan}").text
    before = _entries(app)
    assert c.post(f"/me/loans/{loan}/draw", data={"amount": "10", "form_key": "k1", "csrf": "stale"}).status_code == 403
    assert _entries(app) == before
    form = {"amount": "1,000.50", "form_key": "k2", "csrf": _csrf(page)}
    first = c.post(f"/me/loans/{loan}/draw", data=form, follow_redirects=False)
    again = c.post(f"/me/loans/{loan}/draw", data=form, follow_redirects=False)  # a double submit
    assert first.status_code == again.status_code == 303
    assert app.state.bank.loan(loan)["principal_minor"] == 100_050
    after_draw = _entries(app)
    for n, (amount, rule) in enumerate((("-5", "positive amount"), ("1.005", "at most 2 decimals"),
                                        ("abc", "positive amount"), ("5000", "limit"))):
        r = c.post(f"/me/loans/{loan}/draw", data={"amount": amount, "form_key": f"bad{n}", "csrf": _csrf(page)})
        assert r.status_code == 422 and rule in r.text, (amount, r.text[-500:])
    assert _entries(app) == after_draw and app.state.bank.loan(loan)["principal_minor"] == 100_050
    statement = c.get(f"/me/loans/{loan}/statement.csv")
    assert statement.headers["content-type"].startswith("text/csv")
    assert "draw_reserve,LOANS_PRINCIPAL,100050,1000.50" in statement.text


def test_dashboard_page_has_the_kpis_and_serves_plotly_locally(app) -> None:  # noqa: ANN001
    c = _client(app, "ops", "ops")
    html = c.get("/ops").text
    assert 'id="kpi-active">2<' in html and 'src="/static/plotly.min.js"' in html
    assert "cdn" not in html.lower()
    js = c.get("/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000


def test_money_parsing_and_cost() -> None:
    assert parse_major("amount", "1,500.5") == 150_050 and parse_major("amount", "0.01") == 1
    for bad in ("", "0", "1e5", "-1", "1.001", "12345678901234"):
        with pytest.raises(AmountError):
            parse_major("amount", bad)
    assert fmt_minor(-123_456) == "-1,234.56" and fmt_minor(5) == "0.05"
    # 10,000.00 at 18 % for 365 days: 1,800.00; for 30 days: 147.95 (half up)
    assert total_cost_minor(1_000_000, 1_800, 365) == 180_000
    assert total_cost_minor(1_000_000, 1_800, 30) == 14_795
