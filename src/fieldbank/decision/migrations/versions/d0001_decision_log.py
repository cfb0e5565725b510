"""decision log: decisions, decision_acceptances, decision_shadow_scores; append-only

Revision ID: d0001
Revises:
Create Date: 2026-11-29 13:00:00
"""
from alembic import op
import sqlalchemy as sa

revision = "d0001"
down_revision = None
branch_labels = None
depends_on = None

TABLES = ("decisions", "decision_acceptances", "decision_shadow_scores")


def upgrade() -> None:
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(40), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("party_id", sa.String(80)),
        sa.Column("phone_hash", sa.String(64)),
        sa.Column("device_hash", sa.String(64)),
        sa.Column("outcome", sa.String(8), nullable=False),
        sa.Column("grade", sa.String(16), nullable=False),
        sa.Column("pd_12m", sa.Float),
        sa.Column("limit_minor", sa.BigInteger, nullable=False),
        sa.Column("apr_bps", sa.Integer),
        sa.Column("daily_rate_ppm", sa.Integer),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("portrait_as_of", sa.Date),
        sa.Column("model_ref", sa.String(160)),
        sa.Column("challenger_ref", sa.String(160)),
        sa.Column("policy_name", sa.String(120)),
        sa.Column("policy_version", sa.String(12)),
        sa.Column("inputs_json", sa.Text, nullable=False),
        sa.Column("facts_json", sa.Text, nullable=False),
        sa.Column("rule_outcomes_json", sa.Text, nullable=False),
        sa.Column("steps_json", sa.Text, nullable=False),
        sa.Column("response_json", sa.Text, nullable=False),
        sa.CheckConstraint("outcome IN ('approve', 'decline', 'refer')", name="ck_decisions_outcome"),
        sa.CheckConstraint("limit_minor >= 0", name="ck_decisions_limit"),
        sa.CheckConstraint("outcome = 'approve' OR limit_minor = 0", name="ck_decisions_no_limit_unless_approved"),
    )
    op.create_index("ix_decisions_party_created", "decisions", ["party_id", "created_at"])
    op.create_index("ix_decisions_phone_created", "decisions", ["phone_hash", "created_at"])
    op.create_index("ix_decisions_device_created", "decisions", ["device_hash", "created_at"])
    op.create_index("ix_decisions_created", "decisions", ["created_at"])
    op.create_table(
        "decision_acceptances",
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.decision_id"), primary_key=True),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("loan_id", sa.BigInteger, nullable=False),
        sa.Column("response_json", sa.Text, nullable=False),
    )
    op.create_table(
        "decision_shadow_scores",
        sa.Column("decision_id", sa.String(40), sa.ForeignKey("decisions.decision_id"), primary_key=True),
        sa.Column("model_ref", sa.String(160), nullable=False),
        sa.Column("pd_12m", sa.Float, nullable=False),
        sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Append-only: the log is evidence; a correction is a new decision, never an edit.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("""CREATE FUNCTION fb_decision_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN RAISE EXCEPTION '% is append-only: no UPDATE or DELETE', TG_TABLE_NAME; END $$""")
        for table in TABLES:
            op.execute(f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
                           FOR EACH ROW EXECUTE FUNCTION fb_decision_log_append_only()""")
    else:
        for table in TABLES:
            for verb in ("UPDATE", "DELETE"):
                op.execute(f"""CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table}
                               BEGIN SELECT RAISE(ABORT, '{table} is append-only: no UPDATE or DELETE'); END""")


def downgrade() -> None:
    op.drop_table("decision_shadow_scores")
    op.drop_table("decision_acceptances")
    op.drop_table("decisions")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS fb_decision_log_append_only()")
