"""The borrower pages and the ops dashboard in a real browser (Debian's chromium via Playwright):
the borrower's whole journey (sign in, apply, approved with reasons, accept, draw, the bank
closes the day, repay, statement), a declined applicant who sees the reasons, a borrower who
cannot open another borrower's loan or offer (403), and the dashboard's charts. Each page's
screenshot is saved at a phone-size viewport.

One module on purpose: pytest-xdist's loadfile keeps it on one worker, so the demo bank behind
it (the `site` fixture) is built once."""

from __future__ import annotations

import csv
import datetime as dt
import io
import re

import httpx
import pytest

from fieldbank.config import load_settings
from fieldbank.web.demo_step import applicants, riskiest_parties

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
    # The demo's applications went through the decision service: approval rate and grades.
    assert page.inner_text("#kpi-approval").strip().startswith(tuple("0123456789"))
    assert page.locator("#chart-grades svg.main-svg").count() > 0 and page.locator("#grades tbody tr").count() >= 1
    assert "stable" in page.inner_text("#score-psi") or "watch" in page.inner_text("#score-psi") \
        or "shifted" in page.inner_text("#score-psi")
    phone.shot("ops-dashboard")
    assert not phone.errors, phone.errors
    # plotly.js comes from this server, never from a CDN.
    scripts = page.eval_on_selector_all("script[src]", "els => els.map(e => e.src)")
    assert scripts and all(s.startswith(site.base) for s in scripts), scripts


DECLINE_SEARCH = 200  # riskiest parties tried for a decline

@pytest.fixture(scope="module")
def applicant_ids(site) -> tuple[str, str]:  # noqa: ANN001
    """The safest party without a loan, as the demo's sign-in table picks it, and the riskiest one
    the server's policy declines: the riskiest parties ask the API for the loan the page will ask
    for until one is declined (a decline needs more than the highest PD: fraud flags, thin file
    and the other rules count too)."""
    borrowers = {r[0] for r in site.sql("SELECT DISTINCT party_id FROM loans")}
    settings = load_settings(data_dir=site.data_dir)
    (best, _), _ = applicants(settings, borrowers)
    seen: list[tuple] = []
    for rank, party in enumerate(riskiest_parties(settings, borrowers, n=DECLINE_SEARCH)):
        answer = httpx.post(f"{site.base}/v1/applications", headers={"Idempotency-Key": f"find-decline-{rank}"},
                            json={"party_id": party, "consent": True, "requested_amount_minor": 2_000_000,
                                  "term_days": 365, "purpose": "inventory"}, timeout=30)
        assert answer.status_code in (200, 201), answer.text
        decision = answer.json()
        if decision["outcome"] == "decline":
            return best, party
        seen.append((decision["outcome"], decision["grade"], decision.get("pd_12m")))
    raise AssertionError(f"none of the {DECLINE_SEARCH} riskiest parties is declined by the policy: {seen[:10]}")


def _apply(phone, amount: str) -> None:  # noqa: ANN001
    page = phone.page
    page.click("a[href='/me/apply']")
    phone.shot("apply-form")
    page.fill("#apply-form input[name=amount]", amount)
    page.select_option("#apply-form select[name=term_days]", "365")
    page.select_option("#apply-form select[name=purpose]", "inventory")
    page.check("#apply-form input[name=consent]")
    page.click("#apply-form button[type=submit]")
    page.wait_for_selector("#decision")


def test_journey_apply_accept_draw_close_day_repay_statement(phone, ops_phone, site, applicant_ids) -> None:  # noqa: ANN001
    party, _ = applicant_ids
    phone.sign_in("borrower", party)
    page = phone.page
    _apply(phone, "5000")
    decision = page.locator("#decision")
    assert decision.get_attribute("data-outcome") == "approve"
    for field in ("#offer-limit", "#offer-apr", "#offer-daily", "#offer-cost", "#offer-total"):
        assert page.inner_text(field).strip() not in ("", "–"), field
    assert page.locator("#reasons li").count() >= 1
    phone.shot("apply-approved")
    decision_id = page.get_attribute("#accept-form", "action").split("/")[3]
    # Accept: a credit line opens with the offer's limit and APR.
    page.click("#accept-form button[type=submit]")
    assert "Done: accepted" in page.inner_text("[role=status]")
    loan_id = int(page.url.split("/me/loans/")[1].split("?")[0])
    (offer_id, limit_minor, kind), = site.sql(
        "SELECT offer_id, limit_minor, kind FROM loans WHERE loan_id = :l", l=loan_id)
    assert offer_id == decision_id and kind == "revolving" and limit_minor > 0
    phone.shot("loan-accepted")
    # Draw 1,000.00 from the line.
    page.fill("#draw-form input[name=amount]", "1000")
    page.click("#draw-form button[type=submit]")
    assert "Done: draw" in page.inner_text("[role=status]")
    assert page.inner_text("#principal") == "1,000.00"
    phone.shot("loan-drawn")
    # The bank closes two business days from the ops dashboard: the line accrues interest
    # from the day after the draw.
    ops = ops_phone
    try:
        ops.sign_in("ops", "ops")
        (last_before,), = site.sql("SELECT max(business_date) FROM close_day_runs WHERE status = 'done'")
        for _ in range(2):
            ops.page.click("#close-day-form button[type=submit]")
            assert "Done: closed" in ops.page.inner_text("[role=status]")
        ops.shot("ops-closed-day")
        (last_after,), = site.sql("SELECT max(business_date) FROM close_day_runs WHERE status = 'done'")
        assert dt.date.fromisoformat(str(last_after)) == dt.date.fromisoformat(str(last_before)) + dt.timedelta(days=2)
        # The decision log shows this decision with its explanation.
        ops.goto(f"/ops/decisions/{decision_id}")
        assert ops.page.get_attribute("#decision", "data-outcome") == "approve"
        ops.shot("ops-decision")
        assert not ops.errors, ops.errors
    finally:
        ops.close()
    # Repay everything owed (interest included) from the loan page.
    page.reload()
    (interest,), = site.sql("SELECT interest_minor FROM loans WHERE loan_id = :l", l=loan_id)
    assert interest > 0
    due = page.input_value("#repay-form input[name=amount]")
    assert due == f"{(100_000 + interest) / 100:.2f}"
    page.click("#repay-form button[type=submit]")
    assert "Done: repay" in page.inner_text("[role=status]")
    assert page.inner_text("#due-now") == "0.00" and page.inner_text("#principal") == "0.00"
    phone.shot("loan-repaid")
    with page.expect_download() as download:
        page.click("#statement-link")
    rows = list(csv.DictReader(io.StringIO(download.value.path().read_text())))
    kinds = {r["kind"] for r in rows}
    assert {"draw_settle", "accrual", "repay"} <= kinds or {"draw_reserve", "accrual", "repay"} <= kinds, kinds
    principal = sum(int(r["amount_minor"]) for r in rows if r["account_code"] == "LOANS_PRINCIPAL")
    assert principal == 0  # drawn 1,000.00 and repaid it
    assert not phone.errors, phone.errors


def test_declined_applicant_sees_the_reasons(phone, site, applicant_ids) -> None:  # noqa: ANN001
    _, party = applicant_ids
    phone.sign_in("borrower", party)
    _apply(phone, "20000")
    page = phone.page
    assert page.get_attribute("#decision", "data-outcome") == "decline"
    reasons = page.locator("#reasons li").all_inner_texts()
    assert len(reasons) >= 2 and all(len(r) > 10 for r in reasons), reasons
    assert page.locator("#accept-form").count() == 0
    phone.shot("apply-declined")
    assert not site.sql("SELECT 1 FROM loans WHERE party_id = :p", p=party)
    assert not phone.errors, phone.errors


def test_borrower_cannot_accept_another_borrowers_offer(phone, site, applicant_ids) -> None:  # noqa: ANN001
    best, _ = applicant_ids
    rows = site.sql("SELECT decision_id FROM decisions WHERE party_id = :p", p=best)
    assert rows, "the journey test made a decision for this party first"
    (other, _), = site.sql("SELECT party_id, loan_id FROM loans WHERE party_id <> :p ORDER BY loan_id LIMIT 1", p=best)
    phone.sign_in("borrower", other)
    csrf = phone.page.eval_on_selector("form[action='/logout'] input[name=csrf]", "e => e.value")
    response = phone.page.request.post(f"{site.base}/me/decisions/{rows[0][0]}/accept",
                                       form={"csrf": csrf, "form_key": "abc123"})
    assert response.status == 403
