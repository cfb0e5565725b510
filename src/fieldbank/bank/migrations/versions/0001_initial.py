"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-29 10:13:16.933796
"""
from alembic import op
import sqlalchemy as sa

# Frozen copy of the seed data at this revision (the chart of accounts may grow in later
# revisions; this one must not change when the code does).
ACCOUNTS = [
    ("CLEARING", "1000 Clearing (payment rails in flight)", "asset", False),
    ("LOANS_PRINCIPAL", "1100 Loans receivable - principal", "asset", True),
    ("INTEREST_RECEIVABLE", "1110 Interest receivable", "asset", True),
    ("FEES_RECEIVABLE", "1120 Fees and penalties receivable", "asset", True),
    ("LOSS_ALLOWANCE_current", "1190 Loss allowance - bucket current", "contra_asset", False),
    ("LOSS_ALLOWANCE_1-30", "1191 Loss allowance - bucket 1-30", "contra_asset", False),
    ("LOSS_ALLOWANCE_31-60", "1192 Loss allowance - bucket 31-60", "contra_asset", False),
    ("LOSS_ALLOWANCE_61-90", "1193 Loss allowance - bucket 61-90", "contra_asset", False),
    ("LOSS_ALLOWANCE_90+", "1194 Loss allowance - bucket 90+", "contra_asset", False),
    ("BORROWER_PAYMENT", "2000 Borrower payment accounts", "liability", True),
    ("OVERPAYMENT", "2100 Overpayments (borrower credit balances)", "liability", True),
    ("SUSPENSE", "2200 Suspense (unallocated receipts)", "liability", False),
    ("INTEREST_INCOME", "4000 Interest income", "income", False),
    ("FEE_INCOME", "4100 Fee and penalty income", "income", False),
    ("RECOVERIES", "4200 Recoveries on written-off loans", "income", False),
    ("WRITE_OFF_EXPENSE", "5000 Write-off expense", "expense", False),
    ("PROVISION_EXPENSE", "5100 Loss provision expense", "expense", False),
]
BUCKETS = ("current", "1-30", "31-60", "61-90", "90+")

SQLITE_TRIGGERS = [
    # A posted entry's line set is closed: no line may join an entry whose header exists.
    """CREATE TRIGGER journal_lines_closed BEFORE INSERT ON journal_lines
       WHEN EXISTS (SELECT 1 FROM journal_entries WHERE entry_id = NEW.entry_id)
       BEGIN SELECT RAISE(ABORT, 'journal entry already posted: lines are immutable'); END""",
    """CREATE TRIGGER journal_lines_nonzero BEFORE INSERT ON journal_lines
       WHEN NEW.amount_minor = 0
       BEGIN SELECT RAISE(ABORT, 'journal line amount must be non-zero'); END""",
    # The header is inserted last and checks its lines balance.
    """CREATE TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
       WHEN NEW.line_count < 2
         OR (SELECT count(*) FROM journal_lines WHERE entry_id = NEW.entry_id) <> NEW.line_count
         OR (SELECT coalesce(sum(amount_minor), 0) FROM journal_lines WHERE entry_id = NEW.entry_id) <> 0
       BEGIN SELECT RAISE(ABORT, 'unbalanced journal entry'); END""",
    """CREATE TRIGGER journal_lines_no_update BEFORE UPDATE ON journal_lines
       BEGIN SELECT RAISE(ABORT, 'journal lines are immutable: post a reversal'); END""",
    """CREATE TRIGGER journal_lines_no_delete BEFORE DELETE ON journal_lines
       BEGIN SELECT RAISE(ABORT, 'journal lines are immutable: post a reversal'); END""",
    """CREATE TRIGGER journal_entries_no_update BEFORE UPDATE ON journal_entries
       BEGIN SELECT RAISE(ABORT, 'journal entries are immutable: post a reversal'); END""",
    """CREATE TRIGGER journal_entries_no_delete BEFORE DELETE ON journal_entries
       BEGIN SELECT RAISE(ABORT, 'journal entries are immutable: post a reversal'); END""",
]

POSTGRES_TRIGGERS = [
    """CREATE FUNCTION fb_journal_lines_guard() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
         IF EXISTS (SELECT 1 FROM fb_new_lines n JOIN journal_entries e ON e.entry_id = n.entry_id) THEN
           RAISE EXCEPTION 'journal entry already posted: lines are immutable';
         END IF;
         IF EXISTS (SELECT 1 FROM fb_new_lines WHERE amount_minor = 0) THEN
           RAISE EXCEPTION 'journal line amount must be non-zero';
         END IF;
         RETURN NULL;
       END $$""",
    """CREATE TRIGGER journal_lines_closed AFTER INSERT ON journal_lines
       REFERENCING NEW TABLE AS fb_new_lines FOR EACH STATEMENT EXECUTE FUNCTION fb_journal_lines_guard()""",
    """CREATE FUNCTION fb_journal_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
       DECLARE total_minor numeric; n bigint;
       BEGIN
         SELECT coalesce(sum(amount_minor), 0), count(*) INTO total_minor, n
           FROM journal_lines WHERE entry_id = NEW.entry_id;
         IF n < 2 OR n <> NEW.line_count OR total_minor <> 0 THEN
           RAISE EXCEPTION 'unbalanced journal entry %: % lines (declared %), sum %',
             NEW.entry_id, n, NEW.line_count, total_minor;
         END IF;
         RETURN NULL;
       END $$""",
    # Deferred to COMMIT: whatever happens inside the transaction, an unbalanced entry cannot commit.
    """CREATE CONSTRAINT TRIGGER journal_entries_balanced AFTER INSERT ON journal_entries
       DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fb_journal_entry_balanced()""",
    """CREATE FUNCTION fb_journal_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN RAISE EXCEPTION '% is immutable: post a reversal', TG_TABLE_NAME; END $$""",
    """CREATE TRIGGER journal_lines_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON journal_lines
       FOR EACH STATEMENT EXECUTE FUNCTION fb_journal_immutable()""",
    """CREATE TRIGGER journal_entries_immutable BEFORE UPDATE OR DELETE OR TRUNCATE ON journal_entries
       FOR EACH STATEMENT EXECUTE FUNCTION fb_journal_immutable()""",
    # close-day rewrites every active loan's balance row and current installment nightly: free
    # space on each page lets PostgreSQL update in place (HOT) instead of touching every index.
    "ALTER TABLE loans SET (fillfactor = 80)",
    "ALTER TABLE installments SET (fillfactor = 85)",
]


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    op.create_table('accounts',
    sa.Column('account_code', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('per_loan', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('account_code')
    )
    op.create_table('allowance_balances',
    sa.Column('bucket', sa.String(length=8), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('bucket')
    )
    op.create_table('close_day_runs',
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('business_date')
    )
    op.create_table('close_day_steps',
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('step', sa.String(length=24), nullable=False),
    sa.Column('rows_affected', sa.BigInteger(), nullable=False),
    sa.Column('done_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('business_date', 'step')
    )
    op.create_table('disbursements',
    sa.Column('disbursement_id', sa.String(length=120), nullable=False),
    sa.Column('loan_id', sa.BigInteger(), nullable=False),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('reserve_entry_id', sa.String(length=120), nullable=False),
    sa.Column('final_entry_id', sa.String(length=120), nullable=True),
    sa.Column('failure_reason', sa.String(length=200), nullable=True),
    sa.PrimaryKeyConstraint('disbursement_id')
    )
    with op.batch_alter_table('disbursements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_disbursements_loan_id'), ['loan_id'], unique=False)

    op.create_table('idempotency_keys',
    sa.Column('key', sa.String(length=200), nullable=False),
    sa.Column('operation', sa.String(length=40), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('response_json', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('journal_entries',
    sa.Column('entry_id', sa.String(length=120), nullable=False),
    sa.Column('business_date', sa.Date(), nullable=False),
    sa.Column('kind', sa.String(length=24), nullable=False),
    sa.Column('loan_id', sa.BigInteger(), nullable=True),
    sa.Column('line_count', sa.Integer(), nullable=False),
    sa.Column('reverses_entry_id', sa.String(length=120), nullable=True),
    sa.Column('memo', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.PrimaryKeyConstraint('entry_id'),
    sa.UniqueConstraint('reverses_entry_id')
    )
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_journal_entries_business_date'), ['business_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_journal_entries_loan_id'), ['loan_id'], unique=False)

    op.create_table('payment_applications',
    sa.Column('entry_id', sa.String(length=120), nullable=False),
    sa.Column('loan_id', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('principal_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_minor', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('entry_id', 'loan_id', 'seq')
    )
    op.create_table('products',
    sa.Column('product_code', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('schedule_type', sa.String(length=20), nullable=False),
    sa.Column('apr_bps', sa.Integer(), nullable=False),
    sa.Column('term_months', sa.Integer(), nullable=False),
    sa.Column('day_count', sa.String(length=8), nullable=False),
    sa.Column('penalty_bps', sa.Integer(), nullable=False),
    sa.Column('late_fee_minor', sa.BigInteger(), nullable=False),
    sa.Column('late_fee_grace_days', sa.Integer(), nullable=False),
    sa.Column('grace_periods', sa.Integer(), nullable=False),
    sa.Column('harvest_months', sa.String(length=80), nullable=False),
    sa.Column('cycle_days', sa.Integer(), nullable=False),
    sa.Column('payment_due_days', sa.Integer(), nullable=False),
    sa.Column('min_payment_bps', sa.Integer(), nullable=False),
    sa.Column('allocation_order', sa.String(length=40), nullable=False),
    sa.PrimaryKeyConstraint('product_code')
    )
    op.create_table('journal_lines',
    sa.Column('entry_id', sa.String(length=120), nullable=False),
    sa.Column('line_no', sa.BigInteger(), nullable=False),
    sa.Column('account_code', sa.String(length=40), nullable=False),
    sa.Column('loan_id', sa.BigInteger(), nullable=True),
    sa.Column('amount_minor', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['account_code'], ['accounts.account_code'], ),
    sa.ForeignKeyConstraint(['entry_id'], ['journal_entries.entry_id'], initially='DEFERRED', deferrable=True),
    sa.PrimaryKeyConstraint('entry_id', 'line_no')
    )
    with op.batch_alter_table('journal_lines', schema=None) as batch_op:
        batch_op.create_index('ix_journal_lines_loan', ['loan_id'], unique=False)

    op.create_table('loans',
    sa.Column('loan_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('offer_id', sa.String(length=80), nullable=False),
    sa.Column('party_id', sa.String(length=80), nullable=False),
    sa.Column('product_code', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('apr_bps', sa.Integer(), nullable=False),
    sa.Column('penalty_bps', sa.Integer(), nullable=False),
    sa.Column('day_count', sa.String(length=8), nullable=False),
    sa.Column('late_fee_minor', sa.BigInteger(), nullable=False),
    sa.Column('late_fee_grace_days', sa.Integer(), nullable=False),
    sa.Column('cycle_days', sa.Integer(), nullable=False),
    sa.Column('payment_due_days', sa.Integer(), nullable=False),
    sa.Column('min_payment_bps', sa.Integer(), nullable=False),
    sa.Column('allocation_order', sa.String(length=40), nullable=False),
    sa.Column('limit_minor', sa.BigInteger(), nullable=False),
    sa.Column('opened_on', sa.Date(), nullable=False),
    sa.Column('maturity_on', sa.Date(), nullable=False),
    sa.Column('term_days', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('principal_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_minor', sa.BigInteger(), nullable=False),
    sa.Column('fees_minor', sa.BigInteger(), nullable=False),
    sa.Column('credit_minor', sa.BigInteger(), nullable=False),
    sa.Column('payment_account_minor', sa.BigInteger(), nullable=False),
    sa.Column('pending_disbursement_minor', sa.BigInteger(), nullable=False),
    sa.Column('disbursed_minor', sa.BigInteger(), nullable=False),
    sa.Column('recovered_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_carry', sa.BigInteger(), nullable=False),
    sa.Column('penalty_carry', sa.BigInteger(), nullable=False),
    sa.Column('last_accrual_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('billed_interest_minor', sa.BigInteger(), nullable=False),
    sa.Column('billed_principal_minor', sa.BigInteger(), nullable=False),
    sa.Column('overdue_principal_minor', sa.BigInteger(), nullable=False),
    sa.Column('oldest_unpaid_due_on', sa.Date(), nullable=True),
    sa.Column('dpd', sa.Integer(), nullable=False),
    sa.Column('max_dpd', sa.Integer(), nullable=False),
    sa.Column('bucket', sa.String(length=8), nullable=False),
    sa.Column('defaulted_on', sa.Date(), nullable=True),
    sa.Column('closed_on', sa.Date(), nullable=True),
    sa.Column('written_off_on', sa.Date(), nullable=True),
    sa.ForeignKeyConstraint(['product_code'], ['products.product_code'], ),
    sa.PrimaryKeyConstraint('loan_id'),
    sa.UniqueConstraint('offer_id')
    )
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loans_party_id'), ['party_id'], unique=False)
        batch_op.create_index('ix_loans_status_kind', ['status', 'kind'], unique=False)

    op.create_table('installments',
    sa.Column('loan_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('start_on', sa.Date(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('principal_due_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_due_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_accrued_minor', sa.BigInteger(), nullable=False),
    sa.Column('last_accrual_minor', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('principal_paid_minor', sa.BigInteger(), nullable=False),
    sa.Column('interest_paid_minor', sa.BigInteger(), nullable=False),
    sa.Column('late_fee_charged', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['loan_id'], ['loans.loan_id'], ),
    sa.PrimaryKeyConstraint('loan_id', 'seq')
    )
    with op.batch_alter_table('installments', schema=None) as batch_op:
        batch_op.create_index('ix_installments_due_on', ['due_on'], unique=False)
        batch_op.create_index('ix_installments_start_on', ['start_on'], unique=False)

    # ### end Alembic commands ###


    dialect = op.get_bind().dialect.name
    for statement in SQLITE_TRIGGERS if dialect == "sqlite" else POSTGRES_TRIGGERS:
        op.execute(statement)
    accounts = sa.table("accounts", sa.column("account_code"), sa.column("name"), sa.column("kind"),
                        sa.column("per_loan", sa.Boolean))
    op.bulk_insert(accounts, [dict(zip(("account_code", "name", "kind", "per_loan"), a)) for a in ACCOUNTS])
    allowances = sa.table("allowance_balances", sa.column("bucket"), sa.column("amount_minor"))
    op.bulk_insert(allowances, [{"bucket": b, "amount_minor": 0} for b in BUCKETS])


def downgrade() -> None:
    # ### commands auto generated by Alembic - please adjust! ###
    with op.batch_alter_table('installments', schema=None) as batch_op:
        batch_op.drop_index('ix_installments_due_on')
        batch_op.drop_index('ix_installments_start_on')

    op.drop_table('installments')
    with op.batch_alter_table('loans', schema=None) as batch_op:
        batch_op.drop_index('ix_loans_status_kind')
        batch_op.drop_index(batch_op.f('ix_loans_party_id'))

    op.drop_table('loans')
    with op.batch_alter_table('journal_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_journal_lines_loan')

    op.drop_table('journal_lines')
    op.drop_table('products')
    op.drop_table('payment_applications')
    with op.batch_alter_table('journal_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_journal_entries_loan_id'))
        batch_op.drop_index(batch_op.f('ix_journal_entries_business_date'))

    op.drop_table('journal_entries')
    op.drop_table('idempotency_keys')
    with op.batch_alter_table('disbursements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_disbursements_loan_id'))

    op.drop_table('disbursements')
    op.drop_table('close_day_steps')
    op.drop_table('close_day_runs')
    op.drop_table('allowance_balances')
    op.drop_table('accounts')
    if op.get_bind().dialect.name == "postgresql":
        for fn in ("fb_journal_lines_guard", "fb_journal_entry_balanced", "fb_journal_immutable"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}() CASCADE")
    # ### end Alembic commands ###
