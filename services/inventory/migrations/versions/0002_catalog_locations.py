"""catalogue, locations, stock per location, reservations, back-in-stock subscriptions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 17:40:00
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
        "products",
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("product_id", sa.Text(), server_default="", nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("brand", sa.Text(), server_default="", nullable=False),
        sa.Column("category", sa.Text(), server_default="", nullable=False),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False),
        sa.Column("price_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
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
        sa.CheckConstraint("price_minor >= 0", name=op.f("ck_products_price_not_negative")),
        sa.PrimaryKeyConstraint("sku", name=op.f("pk_products")),
    )
    op.create_index("ix_products_category", "products", ["category"], unique=False)

    op.create_table(
        "locations",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("priority", sa.Integer(), server_default="100", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("kind IN ('warehouse', 'store')", name=op.f("ck_locations_kind")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_locations")),
    )
    # The location the single-level API (PUT /v1/products/{sku}/stock) counts at, and where
    # the stock recorded before locations existed now lies.
    op.execute(
        "INSERT INTO locations (id, name, kind, priority) "
        "VALUES ('default', 'Main warehouse', 'warehouse', 100)"
    )

    # Before locations a sale of units not held went negative; from now on stock never does.
    op.execute("UPDATE stock_items SET on_hand = 0 WHERE on_hand < 0")
    op.add_column(
        "stock_items", sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False)
    )
    op.add_column(
        "stock_items",
        sa.Column("status", sa.Text(), server_default="out_of_stock", nullable=False),
    )
    op.execute(
        "UPDATE stock_items SET status = CASE WHEN on_hand <= 0 THEN 'out_of_stock' "
        "WHEN on_hand <= coalesce(low_stock_threshold, 5) THEN 'low_stock' ELSE 'in_stock' END"
    )
    op.create_check_constraint("on_hand_not_negative", "stock_items", "on_hand >= 0")
    op.create_check_constraint("reserved_not_negative", "stock_items", "reserved >= 0")

    op.create_table(
        "stock_levels",
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("location_id", sa.Text(), nullable=False),
        sa.Column("on_hand", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("reserved", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("on_hand >= 0", name=op.f("ck_stock_levels_on_hand_not_negative")),
        sa.CheckConstraint("reserved >= 0", name=op.f("ck_stock_levels_reserved_not_negative")),
        sa.ForeignKeyConstraint(
            ["location_id"], ["locations.id"], name=op.f("fk_stock_levels_location_id_locations")
        ),
        sa.ForeignKeyConstraint(
            ["sku"],
            ["stock_items.sku"],
            name=op.f("fk_stock_levels_sku_stock_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sku", "location_id", name=op.f("pk_stock_levels")),
    )
    op.execute(
        "INSERT INTO stock_levels (sku, location_id, on_hand) "
        "SELECT sku, 'default', on_hand FROM stock_items"
    )

    op.add_column(
        "stock_movements",
        sa.Column("location_id", sa.Text(), server_default="default", nullable=False),
    )
    op.add_column(
        "stock_movements",
        sa.Column("reserved_delta", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "stock_movements", sa.Column("note", sa.Text(), server_default="", nullable=False)
    )

    op.create_table(
        "reservations",
        sa.Column("order_ref", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), server_default="order", nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
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
            "state IN ('new', 'held', 'confirmed', 'released', 'expired')",
            name=op.f("ck_reservations_state"),
        ),
        sa.PrimaryKeyConstraint("order_ref", name=op.f("pk_reservations")),
    )
    op.create_index(
        "ix_reservations_held_expiry",
        "reservations",
        ["expires_at"],
        unique=False,
        postgresql_where=sa.text("state = 'held'"),
    )
    op.create_table(
        "reservation_lines",
        sa.Column("order_ref", sa.Text(), nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("requested", sa.BigInteger(), nullable=False),
        sa.Column("allocated", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_ref"],
            ["reservations.order_ref"],
            name=op.f("fk_reservation_lines_order_ref_reservations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("order_ref", "sku", name=op.f("pk_reservation_lines")),
    )
    op.create_table(
        "back_in_stock_subscriptions",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("sku", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_back_in_stock_subscriptions")),
    )
    op.create_index(
        "uq_back_in_stock_waiting",
        "back_in_stock_subscriptions",
        ["sku", "customer_id"],
        unique=True,
        postgresql_where=sa.text("notified_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_back_in_stock_waiting", table_name="back_in_stock_subscriptions")
    op.drop_table("back_in_stock_subscriptions")
    op.drop_table("reservation_lines")
    op.drop_index("ix_reservations_held_expiry", table_name="reservations")
    op.drop_table("reservations")
    op.drop_column("stock_movements", "note")
    op.drop_column("stock_movements", "reserved_delta")
    op.drop_column("stock_movements", "location_id")
    op.drop_table("stock_levels")
    op.drop_constraint("reserved_not_negative", "stock_items", type_="check")
    op.drop_constraint("on_hand_not_negative", "stock_items", type_="check")
    op.drop_column("stock_items", "status")
    op.drop_column("stock_items", "reserved")
    op.drop_table("locations")
    op.drop_index("ix_products_category", table_name="products")
    op.drop_table("products")
