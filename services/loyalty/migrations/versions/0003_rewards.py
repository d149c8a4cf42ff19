"""rewards: tiers, the rewards catalogue and coupons, referrals (issue 4, part B)

Revision ID: 0003_rewards
Revises: 0002_ledger
Create Date: 2026-11-22 17:31:44.217580
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003_rewards"
down_revision: str | None = "0002_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_accounts_merged_into",
        "accounts",
        ["merged_into"],
        unique=False,
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )
    op.create_table(
        "club_order_refunds",
        sa.Column("order_ref", sa.Text(), nullable=False),
        sa.Column("refund_id", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_ref", "refund_id", name=op.f("pk_club_order_refunds")),
    )
    op.create_table(
        "club_orders",
        sa.Column("order_ref", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("cancelled", sa.Boolean(), server_default="false", nullable=False),
        sa.PrimaryKeyConstraint("order_ref", name=op.f("pk_club_orders")),
    )
    op.create_index(
        "ix_club_orders_customer_paid", "club_orders", ["customer_id", "paid_at"], unique=False
    )
    op.create_table(
        "customer_contacts",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("phones", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("emails", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_contacts")),
    )
    op.create_table(
        "referral_codes",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_referral_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_referral_codes_code")),
    )
    op.create_table(
        "referrals",
        sa.Column("referred_id", sa.Uuid(), nullable=False),
        sa.Column("referrer_id", sa.Uuid(), nullable=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("order_ref", sa.Text(), nullable=True),
        sa.Column("referrer_points", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("referred_points", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('pending', 'completed', 'refused')", name=op.f("ck_referrals_status_known")
        ),
        sa.PrimaryKeyConstraint("referred_id", name=op.f("pk_referrals")),
    )
    op.create_index(
        "ix_referrals_referrer_completed",
        "referrals",
        ["referrer_id", "completed_at"],
        unique=False,
    )
    op.create_table(
        "rewards",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("percent_off", sa.Integer(), nullable=True),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("gift_sku", sa.Text(), nullable=True),
        sa.Column("min_order_minor", sa.BigInteger(), nullable=True),
        sa.Column("points_price", sa.BigInteger(), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=True),
        sa.Column("per_member_limit", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("coupon_valid_days", sa.Integer(), nullable=True),
        sa.Column("code_source", sa.Text(), server_default="generated", nullable=False),
        sa.Column("after_purchase", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "code_source IN ('generated', 'pool')", name=op.f("ck_rewards_code_source_known")
        ),
        sa.CheckConstraint(
            "kind <> 'fixed_discount' OR (amount_minor > 0 AND currency IS NOT NULL)",
            name=op.f("ck_rewards_amount_set"),
        ),
        sa.CheckConstraint(
            "kind <> 'gift_product' OR gift_sku IS NOT NULL", name=op.f("ck_rewards_gift_set")
        ),
        sa.CheckConstraint(
            "kind <> 'percent_discount' OR (percent_off BETWEEN 1 AND 100)",
            name=op.f("ck_rewards_percent_set"),
        ),
        sa.CheckConstraint(
            "kind IN ('percent_discount', 'fixed_discount', 'free_shipping', 'gift_product')",
            name=op.f("ck_rewards_kind_known"),
        ),
        sa.CheckConstraint(
            "per_member_limit IS NULL OR per_member_limit >= 1",
            name=op.f("ck_rewards_limit_positive"),
        ),
        sa.CheckConstraint("points_price >= 0", name=op.f("ck_rewards_price_not_negative")),
        sa.CheckConstraint(
            "stock IS NULL OR stock >= 0", name=op.f("ck_rewards_stock_not_negative")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rewards")),
    )
    op.create_table(
        "tiers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("measure", sa.Text(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=True),
        sa.Column("measure_window", sa.Text(), nullable=False),
        sa.Column(
            "earn_multiplier", sa.Numeric(precision=6, scale=3), server_default="1", nullable=False
        ),
        sa.Column("free_shipping", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("perks", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "measure = 'points' OR currency IS NOT NULL", name=op.f("ck_tiers_spend_has_currency")
        ),
        sa.CheckConstraint("measure IN ('points', 'spend')", name=op.f("ck_tiers_measure_known")),
        sa.CheckConstraint(
            "measure_window IN ('rolling_12_months', 'calendar_year', 'lifetime')",
            name=op.f("ck_tiers_window_known"),
        ),
        sa.CheckConstraint("earn_multiplier > 0", name=op.f("ck_tiers_multiplier_positive")),
        sa.CheckConstraint("threshold >= 0", name=op.f("ck_tiers_threshold_not_negative")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tiers")),
        sa.UniqueConstraint("code", name=op.f("uq_tiers_code")),
        sa.UniqueConstraint("threshold", name=op.f("uq_tiers_threshold")),
    )
    op.create_table(
        "redemptions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("idempotency_key", sa.Text(), nullable=False),
        sa.Column("points", sa.BigInteger(), nullable=False),
        sa.Column("order_ref", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("points >= 0", name=op.f("ck_redemptions_points_not_negative")),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_redemptions_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_redemptions")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_redemptions_idempotency_key")),
    )
    op.create_index(
        "ix_redemptions_customer_reward", "redemptions", ["customer_id", "reward_id"], unique=False
    )
    op.create_table(
        "reward_codes",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("redemption_id", sa.Uuid(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_reward_codes_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reward_codes")),
        sa.UniqueConstraint("code", name=op.f("uq_reward_codes_code")),
    )
    op.create_index(
        "ix_reward_codes_free",
        "reward_codes",
        ["reward_id", "id"],
        unique=False,
        postgresql_where=sa.text("redemption_id IS NULL"),
    )
    op.create_table(
        "coupons",
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("reward_id", sa.Uuid(), nullable=False),
        sa.Column("redemption_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column(
            "issued_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consumed_order_ref", sa.Text(), nullable=True),
        sa.Column("consumed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["redemption_id"], ["redemptions.id"], name=op.f("fk_coupons_redemption_id_redemptions")
        ),
        sa.ForeignKeyConstraint(
            ["reward_id"], ["rewards.id"], name=op.f("fk_coupons_reward_id_rewards")
        ),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_coupons")),
        sa.UniqueConstraint("redemption_id", name=op.f("uq_coupons_redemption_id")),
    )
    op.create_index("ix_coupons_customer_id", "coupons", ["customer_id"], unique=False)


def downgrade() -> None:
    op.drop_index(
        "ix_accounts_merged_into",
        table_name="accounts",
        postgresql_where=sa.text("merged_into IS NOT NULL"),
    )
    op.drop_index("ix_coupons_customer_id", table_name="coupons")
    op.drop_table("coupons")
    op.drop_index(
        "ix_reward_codes_free",
        table_name="reward_codes",
        postgresql_where=sa.text("redemption_id IS NULL"),
    )
    op.drop_table("reward_codes")
    op.drop_index("ix_redemptions_customer_reward", table_name="redemptions")
    op.drop_table("redemptions")
    op.drop_table("tiers")
    op.drop_table("rewards")
    op.drop_index("ix_referrals_referrer_completed", table_name="referrals")
    op.drop_table("referrals")
    op.drop_table("referral_codes")
    op.drop_table("customer_contacts")
    op.drop_index("ix_club_orders_customer_paid", table_name="club_orders")
    op.drop_table("club_orders")
    op.drop_table("club_order_refunds")
