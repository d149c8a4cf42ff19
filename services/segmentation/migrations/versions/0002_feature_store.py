"""feature store, segments, memberships, scores

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 20:04:03.241954
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "cluster_runs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("k", sa.Integer(), nullable=False),
        sa.Column("features", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("clusters", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("inertia", sa.Double(), nullable=False),
        sa.Column("silhouette", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cluster_runs")),
    )
    op.create_table(
        "clv_models",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column(
            "fitted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("params", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("repeat_customers", sa.Integer(), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("currency", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "diagnostics",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clv_models")),
    )
    op.create_table(
        "features",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), server_default="lead", nullable=False),
        sa.Column("lifecycle_stage", sa.Text(), server_default="", nullable=False),
        sa.Column("gender", sa.Text(), server_default="", nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("next_birthday", sa.Date(), nullable=True),
        sa.Column("next_effective_date", sa.Date(), nullable=True),
        sa.Column(
            "effective_dates",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="[]",
            nullable=False,
        ),
        sa.Column("country_code", sa.Text(), server_default="", nullable=False),
        sa.Column("province", sa.Text(), server_default="", nullable=False),
        sa.Column("city", sa.Text(), server_default="", nullable=False),
        sa.Column("education", sa.Text(), server_default="", nullable=False),
        sa.Column("acquisition_channel", sa.Text(), server_default="", nullable=False),
        sa.Column("acquisition_campaign", sa.Text(), server_default="", nullable=False),
        sa.Column("referred_by_code", sa.Text(), server_default="", nullable=False),
        sa.Column("club_status", sa.Text(), server_default="", nullable=False),
        sa.Column("household_id", sa.Text(), server_default="", nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column(
            "custom_fields",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("consent_sms", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("consent_email", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("consent_phone", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("consent_push", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cohort", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "interactions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("interactions_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("last_interaction_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("currency", sa.Text(), server_default="", nullable=False),
        sa.Column("orders_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_spent", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("avg_order_value", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_order_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("orders_30d", sa.Integer(), server_default="0", nullable=False),
        sa.Column("spent_30d", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("orders_90d", sa.Integer(), server_default="0", nullable=False),
        sa.Column("spent_90d", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("orders_365d", sa.Integer(), server_default="0", nullable=False),
        sa.Column("spent_365d", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("discount_orders", sa.Integer(), server_default="0", nullable=False),
        sa.Column("discount_share", sa.Double(), server_default="0", nullable=False),
        sa.Column("refunds_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "purchase_months",
            postgresql.ARRAY(sa.SmallInteger()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column(
            "purchase_weekdays",
            postgresql.ARRAY(sa.SmallInteger()),
            server_default="{}",
            nullable=False,
        ),
        sa.Column("mean_interval_days", sa.Double(), nullable=True),
        sa.Column("next_expected_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("points_balance", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("tier", sa.Text(), server_default="", nullable=False),
        sa.Column("referrals_made", sa.Integer(), server_default="0", nullable=False),
        sa.Column("coupons_redeemed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rfm_r", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_f", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_m", sa.SmallInteger(), nullable=True),
        sa.Column("rfm_segment", sa.Text(), nullable=True),
        sa.Column("clv_expected_purchases", sa.Double(), nullable=True),
        sa.Column("clv_probability_alive", sa.Double(), nullable=True),
        sa.Column("clv_value", sa.BigInteger(), nullable=True),
        sa.Column("clv_order_value", sa.BigInteger(), nullable=True),
        sa.Column("clv_band", sa.Text(), nullable=True),
        sa.Column("next_window_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_features")),
    )
    op.create_index(
        "ix_features_next_window_at",
        "features",
        ["next_window_at"],
        unique=False,
        postgresql_where=sa.text("next_window_at IS NOT NULL"),
    )
    op.create_table(
        "identities",
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("value", name=op.f("pk_identities")),
    )
    op.create_index("ix_identities_customer_id", "identities", ["customer_id"], unique=False)
    op.create_table(
        "orders",
        sa.Column("order_ref", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("placed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.Column("discount_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("discounted", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("refunded_minor", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("refund_ids", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("order_ref", name=op.f("pk_orders")),
    )
    op.create_index(
        "ix_orders_customer_id_placed_at", "orders", ["customer_id", "placed_at"], unique=False
    )
    op.create_table(
        "products",
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), server_default="", nullable=False),
        sa.Column("brand", sa.Text(), server_default="", nullable=False),
        sa.Column("category", sa.Text(), server_default="", nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_products")),
    )
    op.create_table(
        "purchase_lines",
        sa.Column("order_ref", sa.Text(), nullable=False),
        sa.Column("line_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("purchased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sku", sa.Text(), server_default="", nullable=False),
        sa.Column("brand", sa.Text(), server_default="", nullable=False),
        sa.Column("category", sa.Text(), server_default="", nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("quantity", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("discounted", sa.Boolean(), server_default="false", nullable=False),
        sa.PrimaryKeyConstraint("order_ref", "line_id", name=op.f("pk_purchase_lines")),
    )
    op.create_index("ix_purchase_lines_brand", "purchase_lines", ["brand"], unique=False)
    op.create_index("ix_purchase_lines_category", "purchase_lines", ["category"], unique=False)
    op.create_index(
        "ix_purchase_lines_customer_id_purchased_at",
        "purchase_lines",
        ["customer_id", "purchased_at"],
        unique=False,
    )
    op.create_index("ix_purchase_lines_sku", "purchase_lines", ["sku"], unique=False)
    op.create_index(
        "ix_purchase_lines_tags", "purchase_lines", ["tags"], unique=False, postgresql_using="gin"
    )
    op.create_table(
        "rechecks",
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_rechecks")),
    )
    op.create_index("ix_rechecks_due_at", "rechecks", ["due_at"], unique=False)
    op.create_table(
        "segments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("template", sa.Text(), nullable=True),
        sa.Column("archived", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("member_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Text(), server_default="", nullable=False),
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
            "kind = 'static' OR definition IS NOT NULL",
            name=op.f("ck_segments_dynamic_has_definition"),
        ),
        sa.CheckConstraint("kind IN ('dynamic', 'static')", name=op.f("ck_segments_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_segments")),
        sa.UniqueConstraint("key", name=op.f("uq_segments_key")),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.Uuid(), nullable=False),
        sa.Column("segment_version", sa.Integer(), nullable=False),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("entered_cause", sa.Text(), nullable=False),
        sa.Column("exited_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("exited_cause", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
            name=op.f("fk_memberships_segment_id_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_memberships")),
    )
    op.create_index("ix_memberships_customer_id", "memberships", ["customer_id"], unique=False)
    op.create_index(
        "uq_memberships_open",
        "memberships",
        ["segment_id", "customer_id"],
        unique=True,
        postgresql_where=sa.text("exited_at IS NULL"),
    )
    op.create_table(
        "segment_versions",
        sa.Column("segment_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("definition", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("author", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["segment_id"],
            ["segments.id"],
            name=op.f("fk_segment_versions_segment_id_segments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("segment_id", "version", name=op.f("pk_segment_versions")),
    )


def downgrade() -> None:
    op.drop_table("segment_versions")
    op.drop_index(
        "uq_memberships_open",
        table_name="memberships",
        postgresql_where=sa.text("exited_at IS NULL"),
    )
    op.drop_index("ix_memberships_customer_id", table_name="memberships")
    op.drop_table("memberships")
    op.drop_table("segments")
    op.drop_index("ix_rechecks_due_at", table_name="rechecks")
    op.drop_table("rechecks")
    op.drop_index("ix_purchase_lines_tags", table_name="purchase_lines", postgresql_using="gin")
    op.drop_index("ix_purchase_lines_sku", table_name="purchase_lines")
    op.drop_index("ix_purchase_lines_customer_id_purchased_at", table_name="purchase_lines")
    op.drop_index("ix_purchase_lines_category", table_name="purchase_lines")
    op.drop_index("ix_purchase_lines_brand", table_name="purchase_lines")
    op.drop_table("purchase_lines")
    op.drop_table("products")
    op.drop_index("ix_orders_customer_id_placed_at", table_name="orders")
    op.drop_table("orders")
    op.drop_index("ix_identities_customer_id", table_name="identities")
    op.drop_table("identities")
    op.drop_index(
        "ix_features_next_window_at",
        table_name="features",
        postgresql_where=sa.text("next_window_at IS NOT NULL"),
    )
    op.drop_table("features")
    op.drop_table("clv_models")
    op.drop_table("cluster_runs")
