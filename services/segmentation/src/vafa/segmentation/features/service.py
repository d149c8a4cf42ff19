"""The feature store: orders and their lines from profile.purchases.v1, the order features
recomputed from them, loyalty's balances, the catalogue, and the reads of the features route.

Every write here is set-based: a polled batch costs a handful of statements however many
events it holds, and each function returns the customers whose features it changed, so the
caller re-evaluates exactly those. An order's moment is its `placed_at` (when the customer
bought); the 30/90/365-day windows, months, weekdays and intervals are measured on it."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

COUNTED = ("paid", "fulfilled")


def array_literal(values: Sequence[str]) -> str:
    """A Postgres text[] literal, so one row of an unnest can carry an array."""
    quoted = ['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]
    return "{" + ",".join(quoted) + "}"


# Creates the missing rows and locks the existing ones (a conflicting row is locked even
# though `WHERE false` leaves it as it is), all in customer id order: the consumers of the
# four topics write the same customers' rows at once, and one lock order means they queue
# behind each other instead of deadlocking.
_ENSURE = text(
    "INSERT INTO features (customer_id) "
    "SELECT DISTINCT unnest(CAST(:ids AS uuid[])) AS customer_id ORDER BY 1 "
    "ON CONFLICT (customer_id) DO UPDATE SET customer_id = EXCLUDED.customer_id WHERE false "
    "RETURNING customer_id"
)


async def ensure_rows(session: AsyncSession, customer_ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Creates the feature rows of customers named for the first time and locks the others,
    before anything writes them; returns the new ones (a new row is a change: "has no orders
    yet" segments may now admit them)."""
    if not customer_ids:
        return set()
    result = await session.execute(_ENSURE, {"ids": sorted(set(customer_ids))})
    return set(result.scalars())


# The order features of a set of customers from `orders`, in one statement. `a` aggregates the
# counted orders (paid or fulfilled, not cancelled) per customer; the update writes only rows
# that differ, and says per row whether a feature (not just the next window moment) changed.
_RECOMPUTE = text(
    """
WITH ids AS (SELECT DISTINCT unnest(CAST(:ids AS uuid[])) AS customer_id),
o AS (
  SELECT o.customer_id, o.placed_at AS at, o.currency, o.discounted,
         o.total_minor - LEAST(GREATEST(o.refunded_minor, 0), o.total_minor) AS net,
         cardinality(o.refund_ids) AS refunds,
         o.placed_at AT TIME ZONE CAST(:tz AS text) AS local_at
  FROM orders o
  WHERE o.customer_id = ANY(CAST(:ids AS uuid[])) AND o.status IN ('paid', 'fulfilled')
),
g AS (
  SELECT ids.customer_id,
    count(o.at) AS n,
    COALESCE(sum(o.net), 0) AS spent,
    min(o.at) AS first_at,
    max(o.at) AS last_at,
    count(o.at) FILTER (WHERE o.at > CAST(:now AS timestamptz) - interval '30 days') AS n30,
    COALESCE(sum(o.net) FILTER (
      WHERE o.at > CAST(:now AS timestamptz) - interval '30 days'), 0) AS s30,
    count(o.at) FILTER (WHERE o.at > CAST(:now AS timestamptz) - interval '90 days') AS n90,
    COALESCE(sum(o.net) FILTER (
      WHERE o.at > CAST(:now AS timestamptz) - interval '90 days'), 0) AS s90,
    count(o.at) FILTER (WHERE o.at > CAST(:now AS timestamptz) - interval '365 days') AS n365,
    COALESCE(sum(o.net) FILTER (
      WHERE o.at > CAST(:now AS timestamptz) - interval '365 days'), 0) AS s365,
    count(o.at) FILTER (WHERE o.discounted) AS nd,
    COALESCE(sum(o.refunds), 0) AS refunds,
    COALESCE(array_agg(DISTINCT CAST(extract(month FROM o.local_at) AS smallint))
      FILTER (WHERE o.at IS NOT NULL), '{}') AS months,
    COALESCE(array_agg(DISTINCT CAST(extract(isodow FROM o.local_at) AS smallint))
      FILTER (WHERE o.at IS NOT NULL), '{}') AS weekdays,
    (array_agg(o.currency ORDER BY o.at DESC) FILTER (WHERE o.at IS NOT NULL))[1] AS currency,
    -- The soonest moment an order leaves one of the windows (each is still inside it now).
    LEAST(
      min(o.at + interval '30 days') FILTER (
        WHERE o.at > CAST(:now AS timestamptz) - interval '30 days'),
      min(o.at + interval '90 days') FILTER (
        WHERE o.at > CAST(:now AS timestamptz) - interval '90 days'),
      min(o.at + interval '365 days') FILTER (
        WHERE o.at > CAST(:now AS timestamptz) - interval '365 days')
    ) AS leaves_at
  FROM ids LEFT JOIN o ON o.customer_id = ids.customer_id
  GROUP BY ids.customer_id
),
a AS (
  SELECT g.customer_id,
    COALESCE(g.currency, '') AS currency,
    CAST(g.n AS integer) AS orders_count,
    CAST(g.spent AS bigint) AS total_spent,
    CASE WHEN g.n > 0 THEN CAST(round(g.spent / g.n) AS bigint) ELSE 0 END AS avg_order_value,
    g.first_at AS first_order_at,
    g.last_at AS last_order_at,
    CAST(g.n30 AS integer) AS orders_30d, CAST(g.s30 AS bigint) AS spent_30d,
    CAST(g.n90 AS integer) AS orders_90d, CAST(g.s90 AS bigint) AS spent_90d,
    CAST(g.n365 AS integer) AS orders_365d, CAST(g.s365 AS bigint) AS spent_365d,
    CAST(g.nd AS integer) AS discount_orders,
    CASE WHEN g.n > 0 THEN CAST(g.nd AS float8) / g.n ELSE 0 END AS discount_share,
    CAST(g.refunds AS integer) AS refunds_count,
    g.months AS purchase_months,
    g.weekdays AS purchase_weekdays,
    CASE WHEN g.n >= 2
      THEN extract(epoch FROM g.last_at - g.first_at) / 86400.0 / (g.n - 1) END
      AS mean_interval_days,
    CASE WHEN g.n >= 2
      THEN g.last_at + (g.last_at - g.first_at) / (g.n - 1) END AS next_expected_at,
    COALESCE(
      to_char(g.first_at AT TIME ZONE CAST(:tz AS text), 'YYYY-MM'),
      to_char(f.registered_at AT TIME ZONE CAST(:tz AS text), 'YYYY-MM'),
      ''
    ) AS cohort,
    CASE WHEN f.removed THEN NULL ELSE LEAST(
      g.leaves_at,
      CAST(f.next_birthday + 1 AS timestamp) AT TIME ZONE CAST(:tz AS text),
      CAST(f.next_effective_date + 1 AS timestamp) AT TIME ZONE CAST(:tz AS text)
    ) END AS next_window_at
  FROM g JOIN features f ON f.customer_id = g.customer_id
),
d AS (
  SELECT a.*, (
    f.currency, f.orders_count, f.total_spent, f.avg_order_value, f.first_order_at,
    f.last_order_at, f.orders_30d, f.spent_30d, f.orders_90d, f.spent_90d, f.orders_365d,
    f.spent_365d, f.discount_orders, f.discount_share, f.refunds_count, f.purchase_months,
    f.purchase_weekdays, f.mean_interval_days, f.next_expected_at, f.cohort
  ) IS DISTINCT FROM (
    a.currency, a.orders_count, a.total_spent, a.avg_order_value, a.first_order_at,
    a.last_order_at, a.orders_30d, a.spent_30d, a.orders_90d, a.spent_90d, a.orders_365d,
    a.spent_365d, a.discount_orders, a.discount_share, a.refunds_count, a.purchase_months,
    a.purchase_weekdays, a.mean_interval_days, a.next_expected_at, a.cohort
  ) AS changed,
  f.next_window_at IS DISTINCT FROM a.next_window_at AS moved
  FROM a JOIN features f ON f.customer_id = a.customer_id
)
UPDATE features f SET
  currency = d.currency, orders_count = d.orders_count, total_spent = d.total_spent,
  avg_order_value = d.avg_order_value, first_order_at = d.first_order_at,
  last_order_at = d.last_order_at, orders_30d = d.orders_30d, spent_30d = d.spent_30d,
  orders_90d = d.orders_90d, spent_90d = d.spent_90d, orders_365d = d.orders_365d,
  spent_365d = d.spent_365d, discount_orders = d.discount_orders,
  discount_share = d.discount_share, refunds_count = d.refunds_count,
  purchase_months = d.purchase_months, purchase_weekdays = d.purchase_weekdays,
  mean_interval_days = d.mean_interval_days, next_expected_at = d.next_expected_at,
  cohort = d.cohort, next_window_at = d.next_window_at,
  updated_at = CASE WHEN d.changed THEN now() ELSE f.updated_at END
FROM d
WHERE f.customer_id = d.customer_id AND (d.changed OR d.moved)
RETURNING f.customer_id, d.changed
"""
)


async def recompute(
    session: AsyncSession, *, customer_ids: Collection[uuid.UUID], now: datetime, timezone: str
) -> set[uuid.UUID]:
    """Recomputes the order features (and the next window moment) of these customers from
    `orders`, relative to `now`, months and weekdays in `timezone`; one statement. Returns the
    customers whose features changed (a moved window moment alone is not a change)."""
    if not customer_ids:
        return set()
    result = await session.execute(
        _RECOMPUTE, {"ids": sorted(set(customer_ids)), "now": now, "tz": timezone}
    )
    return {cid for cid, changed in result if changed}


# --- profile.purchases.v1 ---------------------------------------------------------------


class Kind(StrEnum):
    placed = "placed"
    paid = "paid"
    fulfilled = "fulfilled"
    cancelled = "cancelled"
    refunded = "refunded"


@dataclass(frozen=True, slots=True)
class Line:
    line_id: str
    sku: str
    vendor: str
    quantity: int
    amount_minor: int


@dataclass(frozen=True, slots=True)
class Purchase:
    """One PurchaseAttributed, read (see handlers.read_purchase)."""

    kind: Kind
    customer_id: uuid.UUID
    order_ref: str
    at: datetime  # the event's time: when it was paid, fulfilled, refunded
    placed_at: datetime
    currency: str
    total_minor: int
    discount_minor: int
    discounted: bool
    lines: tuple[Line, ...] = ()
    refund_id: str = ""
    refund_minor: int = 0


@dataclass(slots=True)
class _OrderState:
    order_ref: str
    customer_id: uuid.UUID
    status: str
    placed_at: datetime
    paid_at: datetime | None
    currency: str
    total_minor: int
    discount_minor: int
    discounted: bool
    refunded_minor: int
    refund_ids: list[str] = field(default_factory=list)
    counted_before: bool = False

    def take(self, p: Purchase) -> None:
        self.placed_at = p.placed_at
        self.currency = p.currency
        self.total_minor = p.total_minor
        self.discount_minor = p.discount_minor
        self.discounted = p.discounted


# A purchase labelling its lines from `products` and a product update relabelling the lines
# already bought of it must not miss each other when they run at once (neither sees the
# other's uncommitted rows): both take a transaction lock per SKU first, shared for purchases,
# exclusive for the catalogue, in one order (no deadlock). The second to come waits, and then
# sees what the first committed.
_SKU_LOCK_SPACE = 0x5E6
_LOCK_SKUS = text(
    "SELECT count(pg_advisory_xact_lock(:space, q.k)) FROM ("
    "SELECT DISTINCT hashtext(s) AS k FROM unnest(CAST(:skus AS text[])) AS s ORDER BY k) AS q"
)
# The batch's orders, locked; the shared SKU locks of the lines it may add come first (a
# one-time filter, evaluated before the scan), so the later insert's snapshot sees any product
# update that committed while this waited.
_LOAD_ORDERS = text(
    "SELECT o.order_ref, o.customer_id, o.status, o.placed_at, o.paid_at, o.currency, "
    "o.total_minor, o.discount_minor, o.discounted, o.refunded_minor, o.refund_ids "
    "FROM orders o WHERE (SELECT count(pg_advisory_xact_lock_shared(:space, q.k)) FROM ("
    "SELECT DISTINCT hashtext(s) AS k FROM unnest(CAST(:skus AS text[])) AS s ORDER BY k) AS q"
    ") >= 0 AND o.order_ref = ANY(CAST(:refs AS text[])) ORDER BY o.order_ref FOR UPDATE OF o"
)
# The batch's writes in one statement: the orders (only those that differ), the lines of
# orders cancelled, and the lines of orders counted for the first time, labelled from the
# catalogue as known now (the line's vendor stands in for an unknown brand; a line already
# there is left as it is). The dropped and added orders are disjoint.
_WRITE_ORDERS = text(
    "WITH saved AS ("
    "INSERT INTO orders (order_ref, customer_id, status, placed_at, paid_at, currency, "
    "total_minor, discount_minor, discounted, refunded_minor, refund_ids) "
    "SELECT v.order_ref, v.customer_id, v.status, v.placed_at, v.paid_at, v.currency, "
    "v.total_minor, v.discount_minor, v.discounted, v.refunded_minor, "
    "CAST(v.refund_ids AS text[]) "
    "FROM unnest(CAST(:refs AS text[]), CAST(:customers AS uuid[]), CAST(:statuses AS text[]), "
    "CAST(:placed AS timestamptz[]), CAST(:paid AS timestamptz[]), CAST(:currencies AS text[]), "
    "CAST(:totals AS bigint[]), CAST(:discounts AS bigint[]), CAST(:discounted AS boolean[]), "
    "CAST(:refunded AS bigint[]), CAST(:refund_ids AS text[])) "
    "AS v(order_ref, customer_id, status, placed_at, paid_at, currency, total_minor, "
    "discount_minor, discounted, refunded_minor, refund_ids) "
    "ON CONFLICT (order_ref) DO UPDATE SET status = EXCLUDED.status, "
    "placed_at = EXCLUDED.placed_at, paid_at = EXCLUDED.paid_at, currency = EXCLUDED.currency, "
    "total_minor = EXCLUDED.total_minor, discount_minor = EXCLUDED.discount_minor, "
    "discounted = EXCLUDED.discounted, refunded_minor = EXCLUDED.refunded_minor, "
    "refund_ids = EXCLUDED.refund_ids, updated_at = now() "
    "WHERE (orders.status, orders.placed_at, orders.paid_at, orders.currency, "
    "orders.total_minor, orders.discount_minor, orders.discounted, orders.refunded_minor, "
    "orders.refund_ids) IS DISTINCT FROM (EXCLUDED.status, EXCLUDED.placed_at, EXCLUDED.paid_at, "
    "EXCLUDED.currency, EXCLUDED.total_minor, EXCLUDED.discount_minor, EXCLUDED.discounted, "
    "EXCLUDED.refunded_minor, EXCLUDED.refund_ids) RETURNING 1), "
    "dropped AS (DELETE FROM purchase_lines "
    "WHERE order_ref = ANY(CAST(:dropped AS text[])) RETURNING 1) "
    "INSERT INTO purchase_lines (order_ref, line_id, customer_id, purchased_at, sku, brand, "
    "category, tags, quantity, amount_minor, discounted) "
    "SELECT l.order_ref, l.line_id, l.customer_id, l.purchased_at, l.sku, "
    "COALESCE(NULLIF(p.brand, ''), l.vendor), COALESCE(p.category, ''), "
    "COALESCE(p.tags, '{}'), l.quantity, l.amount_minor, l.discounted "
    "FROM unnest(CAST(:l_refs AS text[]), CAST(:l_ids AS text[]), CAST(:l_customers AS uuid[]), "
    "CAST(:l_at AS timestamptz[]), CAST(:l_skus AS text[]), CAST(:l_vendors AS text[]), "
    "CAST(:l_quantities AS bigint[]), CAST(:l_amounts AS bigint[]), "
    "CAST(:l_discounted AS boolean[])) "
    "AS l(order_ref, line_id, customer_id, purchased_at, sku, vendor, quantity, amount_minor, "
    "discounted) "
    "LEFT JOIN products p ON p.sku = l.sku AND l.sku <> '' "
    "ON CONFLICT (order_ref, line_id) DO NOTHING"
)


async def apply_purchases(
    session: AsyncSession, purchases: Sequence[Purchase], *, now: datetime, timezone: str
) -> set[uuid.UUID]:
    """Applies PurchaseAttributed events in log order, as one unit of work of four statements
    (load and lock the orders; save them, drop the lines of cancelled ones and add the lines of
    newly counted ones; create or lock the feature rows; recompute them). Returns the
    customers whose features changed.

    Statuses only move forward (placed < paid < fulfilled < cancelled), so an old event
    redelivered after a newer one, or a whole batch replayed, changes nothing. PLACED records
    the order; PAID counts it; FULFILLED counts it when PAID never came; CANCELLED uncounts it
    for good; REFUNDED adds its amount once per refund id (a refund on an order not known yet
    implies it was paid). An order keeps the customer it was first recorded for: a merge moves
    it, and a late event under the merged id must not move it back."""
    if not purchases:
        return set()
    refs = sorted({p.order_ref for p in purchases})
    states: dict[str, _OrderState] = {}
    # The SKUs of every line the batch could add (a superset: shared locks are cheap).
    skus = sorted(
        {li.sku for p in purchases if p.kind is not Kind.cancelled for li in p.lines if li.sku}
    )
    loaded = await session.execute(
        _LOAD_ORDERS, {"refs": refs, "skus": skus, "space": _SKU_LOCK_SPACE}
    )
    for r in loaded.mappings():
        states[r["order_ref"]] = _OrderState(
            order_ref=r["order_ref"],
            customer_id=r["customer_id"],
            status=r["status"],
            placed_at=r["placed_at"],
            paid_at=r["paid_at"],
            currency=r["currency"],
            total_minor=r["total_minor"],
            discount_minor=r["discount_minor"],
            discounted=r["discounted"],
            refunded_minor=r["refunded_minor"],
            refund_ids=list(r["refund_ids"]),
            counted_before=r["status"] in COUNTED,
        )
    lines: dict[str, tuple[Line, ...]] = {}
    for p in purchases:
        st = states.get(p.order_ref)
        if st is None:
            st = states[p.order_ref] = _OrderState(
                order_ref=p.order_ref,
                customer_id=p.customer_id,
                status="placed",
                placed_at=p.placed_at,
                paid_at=None,
                currency=p.currency,
                total_minor=p.total_minor,
                discount_minor=p.discount_minor,
                discounted=p.discounted,
                refunded_minor=0,
            )
        if st.status == "cancelled":
            continue
        if p.kind is Kind.refunded:
            if st.status == "placed":
                st.status, st.paid_at = "paid", p.at
                lines[st.order_ref] = p.lines
            key = p.refund_id
            if key and key not in st.refund_ids:
                st.refund_ids.append(key)
                st.refunded_minor += max(p.refund_minor, 0)
            continue
        if p.kind is Kind.cancelled:
            st.status = "cancelled"
            lines.pop(st.order_ref, None)
            continue
        if p.kind is not Kind.placed or st.status == "placed":
            st.take(p)  # a late PLACED does not undo the amounts a later event brought
        if p.kind in (Kind.paid, Kind.fulfilled) and st.status == "placed":
            st.status, st.paid_at = "paid", p.at
            lines[st.order_ref] = p.lines
        if p.kind is Kind.fulfilled:
            st.status = "fulfilled"

    rows = list(states.values())
    dropped = [s.order_ref for s in rows if s.status == "cancelled" and s.counted_before]
    added = [
        (states[ref], i, line)
        for ref, ls in lines.items()
        if not states[ref].counted_before and states[ref].status in COUNTED
        for i, line in enumerate(ls)
    ]
    await session.execute(
        _WRITE_ORDERS,
        {
            "refs": [s.order_ref for s in rows],
            "customers": [s.customer_id for s in rows],
            "statuses": [s.status for s in rows],
            "placed": [s.placed_at for s in rows],
            "paid": [s.paid_at for s in rows],
            "currencies": [s.currency for s in rows],
            "totals": [s.total_minor for s in rows],
            "discounts": [s.discount_minor for s in rows],
            "discounted": [s.discounted for s in rows],
            "refunded": [s.refunded_minor for s in rows],
            "refund_ids": [array_literal(s.refund_ids) for s in rows],
            "dropped": dropped,
            "l_refs": [s.order_ref for s, _, _ in added],
            "l_ids": [line.line_id or str(i) for _, i, line in added],
            "l_customers": [s.customer_id for s, _, _ in added],
            "l_at": [s.placed_at for s, _, _ in added],
            "l_skus": [line.sku for _, _, line in added],
            "l_vendors": [line.vendor for _, _, line in added],
            "l_quantities": [line.quantity for _, _, line in added],
            "l_amounts": [line.amount_minor for _, _, line in added],
            "l_discounted": [s.discounted for s, _, _ in added],
        },
    )
    customers = {p.customer_id for p in purchases} | {s.customer_id for s in rows}
    created = await ensure_rows(session, customers)
    changed = await recompute(session, customer_ids=customers, now=now, timezone=timezone)
    return created | changed


# --- loyalty.events.v1 ------------------------------------------------------------------


@dataclass(slots=True)
class LoyaltyChange:
    """What a batch of loyalty events does to one customer: the last balance and tier seen,
    and how many referrals and coupon redemptions to add."""

    balance: int | None = None
    tier: str | None = None
    referrals: int = 0
    coupons: int = 0


_LOYALTY = text(
    "UPDATE features f SET points_balance = COALESCE(v.balance, f.points_balance), "
    "tier = COALESCE(v.tier, f.tier), referrals_made = f.referrals_made + v.referrals, "
    "coupons_redeemed = f.coupons_redeemed + v.coupons, updated_at = now() "
    "FROM unnest(CAST(:ids AS uuid[]), CAST(:balances AS bigint[]), CAST(:tiers AS text[]), "
    "CAST(:referrals AS integer[]), CAST(:coupons AS integer[])) "
    "AS v(customer_id, balance, tier, referrals, coupons) "
    "WHERE f.customer_id = v.customer_id AND (v.referrals <> 0 OR v.coupons <> 0 "
    "OR (f.points_balance, f.tier) IS DISTINCT FROM "
    "(COALESCE(v.balance, f.points_balance), COALESCE(v.tier, f.tier))) "
    "RETURNING f.customer_id"
)


async def apply_loyalty(
    session: AsyncSession, changes: dict[uuid.UUID, LoyaltyChange]
) -> set[uuid.UUID]:
    """One statement for the batch (after creating missing rows). The balance is the event's
    own (loyalty's ledger is the truth), so replays set the same value; the counters rely on
    the inbox for redeliveries."""
    if not changes:
        return set()
    created = await ensure_rows(session, changes)
    ids = sorted(changes)
    result = await session.execute(
        _LOYALTY,
        {
            "ids": ids,
            "balances": [changes[i].balance for i in ids],
            "tiers": [changes[i].tier for i in ids],
            "referrals": [changes[i].referrals for i in ids],
            "coupons": [changes[i].coupons for i in ids],
        },
    )
    return created | set(result.scalars())


# --- inventory.catalog.v1 ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProductRow:
    sku: str
    name: str
    brand: str
    category: str
    tags: list[str]
    updated_at: datetime


_UPSERT_PRODUCTS = text(
    "INSERT INTO products (sku, name, brand, category, tags, updated_at) "
    "SELECT v.sku, v.name, v.brand, v.category, CAST(v.tags AS text[]), v.updated_at "
    "FROM unnest(CAST(:skus AS text[]), CAST(:names AS text[]), CAST(:brands AS text[]), "
    "CAST(:categories AS text[]), CAST(:tags AS text[]), CAST(:updated AS timestamptz[])) "
    "AS v(sku, name, brand, category, tags, updated_at) "
    "ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, brand = EXCLUDED.brand, "
    "category = EXCLUDED.category, tags = EXCLUDED.tags, updated_at = EXCLUDED.updated_at "
    "WHERE EXCLUDED.updated_at >= products.updated_at AND "
    "(products.name, products.brand, products.category, products.tags) IS DISTINCT FROM "
    "(EXCLUDED.name, EXCLUDED.brand, EXCLUDED.category, EXCLUDED.tags) "
    "RETURNING sku"
)
# Lines already bought take the product's new brand/category/tags; an empty brand leaves the
# line's own (the vendor it was bought under).
_RELABEL_LINES = text(
    "UPDATE purchase_lines pl SET brand = COALESCE(NULLIF(p.brand, ''), pl.brand), "
    "category = p.category, tags = p.tags "
    "FROM products p WHERE p.sku = ANY(CAST(:skus AS text[])) AND pl.sku = p.sku "
    "AND (pl.brand, pl.category, pl.tags) IS DISTINCT FROM "
    "(COALESCE(NULLIF(p.brand, ''), pl.brand), p.category, p.tags) "
    "RETURNING pl.customer_id"
)


async def apply_products(session: AsyncSession, rows: Sequence[ProductRow]) -> set[uuid.UUID]:
    """Upserts the products (the newest `updated_at` wins, so an old event redelivered after a
    newer one changes nothing), relabels the lines bought of those that changed, and returns
    the customers who bought them: their purchase conditions may now read differently."""
    latest: dict[str, ProductRow] = {}
    for row in rows:
        have = latest.get(row.sku)
        if have is None or row.updated_at >= have.updated_at:
            latest[row.sku] = row
    if not latest:
        return set()
    rs = list(latest.values())
    await session.execute(_LOCK_SKUS, {"space": _SKU_LOCK_SPACE, "skus": sorted(latest)})
    updated = (
        await session.execute(
            _UPSERT_PRODUCTS,
            {
                "skus": [r.sku for r in rs],
                "names": [r.name for r in rs],
                "brands": [r.brand for r in rs],
                "categories": [r.category for r in rs],
                "tags": [array_literal(r.tags) for r in rs],
                "updated": [r.updated_at for r in rs],
            },
        )
    ).scalars()
    skus = sorted(set(updated))
    if not skus:
        return set()
    return set((await session.execute(_RELABEL_LINES, {"skus": skus})).scalars())


# --- reads ------------------------------------------------------------------------------

_BOUGHT = text(
    "SELECT 'category' AS dimension, category AS value, count(DISTINCT order_ref) AS orders, "
    "sum(quantity) AS quantity, sum(amount_minor) AS spend FROM purchase_lines "
    "WHERE customer_id = :id AND category <> '' GROUP BY category "
    "UNION ALL "
    "SELECT 'brand', brand, count(DISTINCT order_ref), sum(quantity), sum(amount_minor) "
    "FROM purchase_lines WHERE customer_id = :id AND brand <> '' GROUP BY brand "
    "UNION ALL "
    "SELECT 'tag', t.tag, count(DISTINCT pl.order_ref), sum(pl.quantity), sum(pl.amount_minor) "
    "FROM purchase_lines pl CROSS JOIN LATERAL unnest(pl.tags) AS t(tag) "
    "WHERE pl.customer_id = :id GROUP BY t.tag "
    "ORDER BY 1, 5 DESC, 2"
)


async def get_features(session: AsyncSession, *, customer_id: uuid.UUID) -> dict[str, Any] | None:
    row = (
        (
            await session.execute(
                text("SELECT * FROM features WHERE customer_id = :id"), {"id": customer_id}
            )
        )
        .mappings()
        .first()
    )
    return dict(row) if row is not None else None


async def bought(
    session: AsyncSession, *, customer_id: uuid.UUID
) -> dict[str, list[dict[str, Any]]]:
    """What the customer bought, from the lines of counted orders: per category, brand and tag,
    the distinct orders, the units and the spend (line totals, before refunds)."""
    out: dict[str, list[dict[str, Any]]] = {"category": [], "brand": [], "tag": []}
    for r in (await session.execute(_BOUGHT, {"id": customer_id})).mappings():
        out[r["dimension"]].append(
            {
                "value": r["value"],
                "orders": int(r["orders"]),
                "quantity": int(r["quantity"]),
                "spend": int(r["spend"]),
            }
        )
    return out
