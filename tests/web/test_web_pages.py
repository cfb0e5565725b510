"""The borrower pages and the ops dashboard in a real browser (Debian's chromium via Playwright)."""

from __future__ import annotations

import csv
import io
import re

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_borrower_sees_schedule_repays_and_downloads_statement(phone, site) -> None:  # noqa: ANN001
    party, loan_id = site.sql("SELECT party_id, loan_id FROM loans WHERE status = 'active' ORDER BY loan_id LIMIT 1")[0]
    phone.sign_in("borrower", party)
    page = phone.page
    assert page.url.endswith("/me") and party in page.inner_text("h1")
    phone.shot("borrower-home")
    page.click(f"a[href='/me/loans/{loan_id}']")
    assert page.locator("#schedule tbody tr").count() >= 6
    phone.shot("borrower-loan")
    paid_before = site.sql("SELECT count(*) FROM journal_entries WHERE kind = 'repay' AND loan_id = :l", l=loan_id)[0][0]
    page.fill("#repay-form input[name=amount]", "12.34")
    page.click("#repay-form button[type=submit]")
    assert "Done: repay" in page.inner_text("[role=status]")
    phone.shot("borrower-repaid")
    paid_after = site.sql("SELECT count(*) FROM journal_entries WHERE kind = 'repay' AND loan_id = :l", l=loan_id)[0][0]
    assert paid_after == paid_before + 1
    # A bad amount is refused with the field, the value and the rule, and books nothing.
    page.fill("#repay-form input[name=amount]", "12.345")
    page.click("#repay-form button[type=submit]")
    assert re.search(r"amount = '12.345': .*at most 2 decimals", page.inner_text("[role=alert]"))
    phone.shot("borrower-bad-amount")
    assert site.sql("SELECT count(*) FROM journal_entries WHERE kind = 'repay' AND loan_id = :l", l=loan_id)[0][0] \
        == paid_after
    with page.expect_download() as download:
        page.click("#statement-link")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    repaid: dict[str, int] = {}
    for r in rows:
        if r["kind"] == "repay":
            repaid[r["entry_id"]] = repaid.get(r["entry_id"], 0) + int(r["amount_minor"])
    assert list(repaid.values())[-1] == -1234  # the newest repayment: 12.34 off what is owed
    # The only failed response was the refused amount's 422 page.
    assert [e for e in phone.errors if "422" not in e] == [], phone.errors


def test_borrower_cannot_open_another_borrowers_loan(phone, site) -> None:  # noqa: ANN001
    (mine, my_loan), (_other, other_loan) = site.sql(
        "SELECT party_id, loan_id FROM loans ORDER BY loan_id LIMIT 2")
    phone.sign_in("borrower", mine)
    assert phone.goto(f"/me/loans/{my_loan}").status == 200
    for path in (f"/me/loans/{other_loan}", f"/me/loans/{other_loan}/statement.csv"):
        response = phone.goto(path) if not path.endswith(".csv") else phone.page.request.get(site.base + path)
        assert response.status == 403, path
    phone.goto(f"/me/loans/{other_loan}")
    assert "not yours" in phone.page.inner_text("#error-detail")
    phone.shot("borrower-403")
    # Nor the operations dashboard.
    assert phone.goto("/ops").status == 403


def test_signed_out_visitor_is_sent_to_sign_in(phone, site) -> None:  # noqa: ANN001
    phone.goto("/me/loans/1")
    assert "/login?next=/me/loans/1" in phone.page.url
    phone.page.fill("input[name=user]", "P0001")
    phone.page.fill("input[name=code]", "0000000000")
    phone.page.click("button[type=submit]")
    assert "do not match" in phone.page.inner_text("[role=alert]")


def test_dashboard_draws_charts_without_console_errors(phone, site) -> None:  # noqa: ANN001
    phone.sign_in("ops", "ops")
    page = phone.page
    assert page.url.endswith("/ops")
    page.wait_for_selector("#chart-buckets svg.main-svg")
    charts = page.locator(".chart[data-figure]")
    assert charts.count() >= 6  # buckets, states, vintages, roll rates, score PSI, feature PSI
    for i in range(charts.count()):
        assert charts.nth(i).locator("svg").count() > 0, charts.nth(i).get_attribute("id")
    assert int(page.inner_text("#kpi-active")) > 0
    assert "stable" in page.inner_text("#score-psi") or "watch" in page.inner_text("#score-psi") \
        or "shifted" in page.inner_text("#score-psi")
    phone.shot("ops-dashboard")
    assert not phone.errors, phone.errors
    # plotly.js comes from this server, never from a CDN.
    scripts = page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
    assert scripts and all(s.startswith(site.base) for s in scripts), scripts
