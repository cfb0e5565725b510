"""The demo's last step: compute the drift, print the URLs and demo sign-ins, serve the pages."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from fieldbank.config import Settings
from fieldbank.web import auth

OPS_USER = "ops"


@dataclass(frozen=True)
class DemoLogin:
    role: str
    subject: str
    code: str
    note: str

    def url(self, base: str) -> str:
        return f"{base}/login?{urlencode({'role': self.role, 'user': self.subject, 'code': self.code})}"


def demo_logins(settings: Settings, engine) -> list[DemoLogin]:  # noqa: ANN001
    """Staff, a borrower in good standing, a late borrower (when there is one), and two
    applicants without a loan: the safest and the riskiest by the champion's score."""
    secret = auth.load_secret(settings.data_dir)
    logins = [DemoLogin("ops", OPS_USER, auth.access_code(secret, "ops", OPS_USER), "operations dashboard")]
    with engine.connect() as conn:
        good = conn.execute(text("SELECT party_id, loan_id FROM loans WHERE status = 'active' AND dpd = 0 "
                                 "ORDER BY loan_id LIMIT 1")).first()
        late = conn.execute(text("SELECT party_id, loan_id, dpd FROM loans WHERE status = 'active' AND dpd > 0 "
                                 "ORDER BY dpd DESC, loan_id LIMIT 1")).first()
        borrowers = {r[0] for r in conn.execute(text("SELECT DISTINCT party_id FROM loans"))}
    if good:
        logins.append(DemoLogin("borrower", good.party_id, auth.access_code(secret, "borrower", good.party_id),
                                f"borrower paying on time (loan {good.loan_id})"))
    if late:
        logins.append(DemoLogin("borrower", late.party_id, auth.access_code(secret, "borrower", late.party_id),
                                f"borrower {late.dpd} days late (loan {late.loan_id})"))
    for party_id, note in applicants(settings, borrowers):
        logins.append(DemoLogin("borrower", party_id, auth.access_code(secret, "borrower", party_id), note))
    return logins


def _by_pd(settings: Settings, exclude: set[str]):  # noqa: ANN202
    """The newest portrait's parties outside `exclude`, scored by the champion, safest first
    (None without a champion or a portrait)."""
    import pyarrow.parquet as pq

    from fieldbank.portrait.pipeline import portrait_path
    from fieldbank.risk.scoring import load_models, newest_portrait_date, resolve_model, score_frame

    try:
        folder = resolve_model(settings.models_dir)
        day = newest_portrait_date(settings.data_dir)
    except (LookupError, FileNotFoundError, ValueError):
        return None
    frame = pq.read_table(portrait_path(settings.data_dir, day)).to_pandas()
    frame = frame[~frame["party_id"].isin(exclude)]
    if frame.empty:
        return None
    pd_, _ = score_frame(load_models(str(folder)), frame)
    return frame.assign(pd=pd_).sort_values(["pd", "party_id"])[["party_id", "pd"]]


def applicants(settings: Settings, exclude: set[str]) -> list[tuple[str, str]]:
    """The lowest- and highest-PD parties of the newest portrait that have no loan with us."""
    frame = _by_pd(settings, exclude)
    if frame is None:
        return []
    best, worst = frame.iloc[0], frame.iloc[-1]
    return [(best["party_id"], f"new applicant, low risk (PD {best['pd']:.2%}): apply"),
            (worst["party_id"], f"new applicant, high risk (PD {worst['pd']:.2%}): apply, see the reasons")]


def riskiest_parties(settings: Settings, exclude: set[str], n: int) -> list[str]:
    """Up to `n` parties without a loan with us, riskiest first."""
    frame = _by_pd(settings, exclude)
    return [] if frame is None else frame["party_id"].iloc[::-1].head(n).tolist()


DEMO_APPLICATIONS = 100
DEMO_TERMS_DAYS = (180, 365)


def submit_demo_applications(app, settings: Settings, exclude: set[str], n: int = DEMO_APPLICATIONS,  # noqa: ANN001
                             seed: int = 7) -> dict[str, int]:
    """A seeded sample of parties without a loan apply through the decision service, so the
    dashboard's approval rate and grades have data. Returns counts per outcome."""
    import numpy as np
    import pyarrow.parquet as pq

    from fieldbank.decision.schemas import ApplicationIn
    from fieldbank.portrait.pipeline import portrait_path
    from fieldbank.risk.scoring import newest_portrait_date

    try:
        day = newest_portrait_date(settings.data_dir)
    except LookupError:
        return {}
    parties = sorted(set(pq.read_table(portrait_path(settings.data_dir, day), columns=["party_id"])["party_id"]
                         .to_pylist()) - exclude)
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(parties), size=min(n, len(parties)), replace=False)
    outcomes: dict[str, int] = {}
    for i in sorted(picked):
        application = ApplicationIn(party_id=parties[i], consent=True,
                                    requested_amount_minor=int(rng.integers(50, 500)) * 10_000,
                                    term_days=int(rng.choice(DEMO_TERMS_DAYS)), purpose="working_capital")
        decision = app.state.decisions.apply(application, idempotency_key=f"demo-web-apply-{parties[i]}")
        outcomes[decision.outcome] = outcomes.get(decision.outcome, 0) + 1
    return outcomes


def serve_demo(settings: Settings, console: Console, *, host: str = "127.0.0.1", port: int = 8000,
               serve: bool = True) -> list[DemoLogin]:
    """Compute the drift, print the sign-ins, then (unless serve is False) run the server."""
    from fieldbank.api.app import create_app
    from fieldbank.monitor.drift import load_or_compute_drift

    drift = load_or_compute_drift(settings)
    if drift:
        console.print(f"drift of {drift['model']}: score PSI {drift['score']['psi']:.3f} ({drift['score']['status']}), "
                      f"{drift['features_shifted']} of {len(drift['features'])} features shifted")
    app = create_app(settings)
    logins = demo_logins(settings, app.state.bank.engine)
    outcomes = submit_demo_applications(app, settings, exclude={login.subject for login in logins})
    console.print(f"{sum(outcomes.values())} demo applications through the decision service: {outcomes}")
    base = f"http://{host}:{port}"
    table = Table(title=f"demo sign-ins (no password; the access code is the key) on {base}")
    for col in ("role", "ID", "access code", "who", "sign-in link"):
        table.add_column(col, overflow="fold")
    for login in logins:
        table.add_row(login.role, login.subject, login.code, login.note, login.url(base))
    console.print(table)
    console.print(f"borrower pages {base}/me · operations dashboard {base}/ops · API docs {base}/docs")
    if serve:
        import uvicorn

        console.print(f"[green]serving[/green] on {base} (Ctrl-C to stop)")
        uvicorn.run(app, host=host, port=port, log_level="warning")
    return logins
