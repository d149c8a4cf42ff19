"""Fits BG/NBD and Gamma-Gamma on the purchase history, writes each customer's prediction to
`features.clv_*` and the fit to `clv_models`.

The history, per customer, from `orders` that are paid or fulfilled (never cancelled or only
placed), in the shop's currency (the most frequent one), up to `now`, excluding removed
customers. Purchases are counted in days of the shop's time zone (two orders on one day are one
purchase, as in the CDNOW data): x = purchase days - 1, t_x = last - first purchase day,
T = today - first purchase day, all converted to weeks for the fit (the papers' unit, so alpha
is comparable). The value of a purchase day is what was paid that day net of refunds; zbar is
the mean over the repeat days (the first purchase is left out, as in the Gamma-Gamma paper).

Per customer: expected purchases over the horizon (days, a setting), P(alive), expected order
value, CLV = expected purchases x expected value (minor units, undiscounted), and a band by the
customer's CLV percentile among all predicted customers: "high" at or above
`clv_high_percentile`, "low" below `clv_low_percentile`, else "medium". The percentile of a
customer is the share of customers with a strictly lower CLV, so equal CLVs share a band."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.errors import Problem
from vafa.segmentation.config import Settings
from vafa.segmentation.models import ClvModel
from vafa.segmentation.scores.clv import bgnbd, gamma_gamma
from vafa.segmentation.scores.rfm import tune_batch
from vafa.segmentation.segments.evaluation import evaluate_segments

CLV_LOCK = 0x5EC_0F_0002
CLV_FIELDS = frozenset(
    {"clv_expected_purchases", "clv_probability_alive", "clv_value", "clv_order_value", "clv_band"}
)
# Below these the likelihood is too flat to say anything: the fit is refused, not guessed.
MIN_CUSTOMERS = 20
MIN_REPEAT_CUSTOMERS = 5
PAID = ("paid", "fulfilled")


@dataclass(frozen=True, slots=True)
class ClvPolicy:
    horizon_days: int = 365
    high_percentile: float = 80.0
    low_percentile: float = 50.0
    timezone: str = "UTC"

    @classmethod
    def of(cls, settings: Settings) -> ClvPolicy:
        return cls(
            horizon_days=settings.clv_horizon_days,
            high_percentile=settings.clv_high_percentile,
            low_percentile=settings.clv_low_percentile,
            timezone=settings.timezone,
        )


@dataclass(slots=True)
class History:
    """One entry per customer; times in days."""

    customer_ids: list[uuid.UUID]
    x: NDArray[np.float64]
    t_x: NDArray[np.float64]
    T: NDArray[np.float64]
    repeat_value: NDArray[np.float64]  # minor units, sum over the repeat days

    @property
    def zbar(self) -> NDArray[np.float64]:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.x > 0, self.repeat_value / np.maximum(self.x, 1), 0.0)


@dataclass(slots=True)
class Prediction:
    expected_purchases: NDArray[np.float64]
    probability_alive: NDArray[np.float64]
    expected_value: NDArray[np.float64]
    clv: NDArray[np.int64]
    bands: list[str]
    band_edges: dict[str, Any] = field(default_factory=dict)


_CURRENCY = text(
    "SELECT currency FROM orders WHERE status = ANY(CAST(:paid AS text[])) AND placed_at <= :now"
    " GROUP BY currency ORDER BY count(*) DESC, currency LIMIT 1"
)

# asyncpg's own placeholders: a million rows are fetched on the driver connection (in the
# session's transaction), about twice as fast as through SQLAlchemy rows.
HISTORY_SQL = """
WITH days AS (
    SELECT customer_id, (placed_at AT TIME ZONE $1::text)::date AS d,
           sum(total_minor - refunded_minor) AS v
    FROM orders
    WHERE status = ANY($2::text[]) AND currency = $3 AND placed_at <= $4
      AND customer_id NOT IN (SELECT customer_id FROM features WHERE removed)
    GROUP BY 1, 2
), marked AS (
    SELECT customer_id, d, v, min(d) OVER (PARTITION BY customer_id) AS d0 FROM days
)
SELECT customer_id, count(*) - 1 AS x, max(d) - min(d) AS t_x, $5::date - min(d) AS age,
       coalesce(sum(v) FILTER (WHERE d > d0), 0) AS repeat_value
FROM marked GROUP BY customer_id
"""


async def load_history(
    session: AsyncSession, *, now: datetime, timezone: str
) -> tuple[str, History]:
    currency = (
        await session.execute(_CURRENCY, {"paid": list(PAID), "now": now})
    ).scalar_one_or_none()
    today = now.astimezone(ZoneInfo(timezone)).date()
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    rows = await raw.driver_connection.fetch(  # type: ignore[union-attr]
        HISTORY_SQL, timezone, list(PAID), currency, now, today
    )
    n = len(rows)
    return currency or "", History(
        customer_ids=[r["customer_id"] for r in rows],
        x=np.fromiter((r["x"] for r in rows), np.float64, n),
        t_x=np.fromiter((r["t_x"] for r in rows), np.float64, n),
        T=np.fromiter((r["age"] for r in rows), np.float64, n),
        repeat_value=np.fromiter((r["repeat_value"] for r in rows), np.float64, n),
    )


@dataclass(slots=True)
class Fitted:
    bgnbd: bgnbd.Fit
    gamma_gamma: gamma_gamma.Fit | None
    seconds: float


def fit_models(h: History) -> Fitted:
    """CPU work (run it in a thread): both fits, BG/NBD on the distinct (x, t_x, T) with their
    counts, which on a real shop is far fewer rows than customers."""
    started = time.perf_counter()
    weeks = np.column_stack([h.x, h.t_x / 7.0, h.T / 7.0])
    distinct, counts = np.unique(weeks, axis=0, return_counts=True)
    bg = bgnbd.fit(distinct[:, 0], distinct[:, 1], distinct[:, 2], counts.astype(np.float64))
    zbar = h.zbar
    repeat = (h.x > 0) & (zbar > 0)
    gg = (
        gamma_gamma.fit(h.x[repeat], zbar[repeat]) if repeat.sum() >= MIN_REPEAT_CUSTOMERS else None
    )
    return Fitted(bgnbd=bg, gamma_gamma=gg, seconds=time.perf_counter() - started)


def predict(h: History, fitted: Fitted, policy: ClvPolicy) -> Prediction:
    horizon_weeks = policy.horizon_days / 7.0
    t_x, T = h.t_x / 7.0, h.T / 7.0
    purchases = bgnbd.conditional_expected_purchases(
        fitted.bgnbd.params, horizon_weeks, h.x, t_x, T
    )
    alive = bgnbd.probability_alive(fitted.bgnbd.params, h.x, t_x, T)
    zbar = h.zbar
    own = (h.x > 0) & (zbar > 0)
    if fitted.gamma_gamma is not None and fitted.gamma_gamma.params.q > 1:
        value = gamma_gamma.conditional_expected_value(
            fitted.gamma_gamma.params, np.where(own, h.x, 0.0), zbar
        )
    else:
        # No usable spend model: the customer's own repeat mean, else everyone's.
        fallback = float(zbar[own].mean()) if own.any() else 0.0
        value = np.where(own, zbar, fallback)
    clv = np.rint(np.nan_to_num(purchases * value, nan=0.0, posinf=0.0)).astype(np.int64)
    bands, edges = band(clv, policy)
    return Prediction(
        expected_purchases=np.round(purchases, 4),
        probability_alive=np.round(alive, 4),
        expected_value=value,
        clv=clv,
        bands=bands,
        band_edges=edges,
    )


def band(clv: NDArray[np.int64], policy: ClvPolicy) -> tuple[list[str], dict[str, Any]]:
    n = len(clv)
    below = np.searchsorted(np.sort(clv), clv, side="left") / max(n, 1) * 100.0
    names = np.where(
        below >= policy.high_percentile,
        "high",
        np.where(below < policy.low_percentile, "low", "medium"),
    )

    def lowest(name: str) -> int | None:
        chosen = clv[names == name]
        return int(chosen.min()) if len(chosen) else None

    edges = {
        "high_percentile": policy.high_percentile,
        "low_percentile": policy.low_percentile,
        "high_from": lowest("high"),
        "medium_from": lowest("medium"),
        "counts": {b: int((names == b).sum()) for b in ("high", "medium", "low")},
    }
    return [str(v) for v in names], edges


async def _write(
    session: AsyncSession, h: History, p: Prediction, now: datetime
) -> tuple[int, int]:
    """COPY into a temporary table, then one UPDATE ... FROM of the rows that changed and one
    that clears customers without a prediction any more."""
    await session.execute(text("DROP TABLE IF EXISTS pg_temp.clv_scores"))
    await session.execute(
        text(
            "CREATE TEMP TABLE clv_scores (customer_id uuid PRIMARY KEY, purchases float8,"
            " alive float8, value bigint, order_value bigint, band text) ON COMMIT DROP"
        )
    )
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    records = zip(
        h.customer_ids,
        p.expected_purchases.tolist(),
        p.probability_alive.tolist(),
        p.clv.tolist(),
        np.rint(np.nan_to_num(p.expected_value)).astype(np.int64).tolist(),
        p.bands,
        strict=True,
    )
    await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
        "clv_scores",
        records=records,
        columns=["customer_id", "purchases", "alive", "value", "order_value", "band"],
    )
    written = await session.execute(
        text(
            "UPDATE features AS f SET clv_expected_purchases = s.purchases,"
            " clv_probability_alive = s.alive, clv_value = s.value,"
            " clv_order_value = s.order_value, clv_band = s.band,"
            " updated_at = :now"
            " FROM clv_scores AS s WHERE f.customer_id = s.customer_id"
            " AND (f.clv_expected_purchases, f.clv_probability_alive, f.clv_value,"
            " f.clv_order_value, f.clv_band)"
            " IS DISTINCT FROM (s.purchases, s.alive, s.value, s.order_value, s.band)"
        ),
        {"now": now},
    )
    cleared = await session.execute(
        text(
            "UPDATE features AS f SET clv_expected_purchases = NULL,"
            " clv_probability_alive = NULL, clv_value = NULL, clv_order_value = NULL,"
            " clv_band = NULL, updated_at = :now"
            " WHERE f.clv_band IS NOT NULL"
            " AND NOT EXISTS (SELECT 1 FROM clv_scores s WHERE s.customer_id = f.customer_id)"
        ),
        {"now": now},
    )
    return int(written.rowcount), int(cleared.rowcount)  # type: ignore[attr-defined]


def _fit_diagnostics(fit: bgnbd.Fit | gamma_gamma.Fit | None) -> dict[str, Any] | None:
    if fit is None:
        return None
    return {
        "log_likelihood": fit.log_likelihood,
        "converged": fit.converged,
        "iterations": fit.iterations,
        "message": fit.message,
    }


async def fit_clv(session: AsyncSession, *, now: datetime, policy: ClvPolicy) -> ClvModel:
    """Fits, predicts and writes in the caller's transaction (the caller commits)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CLV_LOCK})
    await tune_batch(session)
    started = time.perf_counter()
    currency, h = await load_history(session, now=now, timezone=policy.timezone)
    loaded = time.perf_counter()
    repeat = int((h.x > 0).sum())
    if len(h.x) < MIN_CUSTOMERS or repeat < MIN_REPEAT_CUSTOMERS:
        raise Problem(
            409,
            f"Not enough purchase history to fit: {len(h.x)} customers and {repeat} repeat"
            f" customers; at least {MIN_CUSTOMERS} and {MIN_REPEAT_CUSTOMERS} are needed.",
            type="insufficient-history",
            customers=len(h.x),
            repeat_customers=repeat,
        )
    fitted = await asyncio.to_thread(fit_models, h)
    prediction = await asyncio.to_thread(predict, h, fitted, policy)
    predicted = time.perf_counter()
    written, cleared = await _write(session, h, prediction, now)
    bg = fitted.bgnbd.params
    gg = fitted.gamma_gamma.params if fitted.gamma_gamma else None
    model = ClvModel(
        fitted_at=now,
        params={
            "time_unit": "week",
            "bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b},
            "gamma_gamma": {"p": gg.p, "q": gg.q, "gamma": gg.gamma} if gg else None,
            "bands": prediction.band_edges,
        },
        customers=len(h.x),
        repeat_customers=repeat,
        horizon_days=policy.horizon_days,
        currency=currency,
        diagnostics={
            "bgnbd": _fit_diagnostics(fitted.bgnbd),
            "gamma_gamma": _fit_diagnostics(fitted.gamma_gamma),
            "load_seconds": round(loaded - started, 3),
            "fit_seconds": round(fitted.seconds, 3),
            "predict_seconds": round(predicted - loaded - fitted.seconds, 3),
            "write_seconds": round(time.perf_counter() - predicted, 3),
            "total_seconds": round(time.perf_counter() - started, 3),
            "written": written,
            "cleared": cleared,
            "mean_expected_purchases": float(prediction.expected_purchases.mean()),
            "mean_clv": float(prediction.clv.mean()),
        },
    )
    session.add(model)
    await session.flush()
    if written or cleared:
        await evaluate_segments(session, now=now, cause="evaluation", fields=CLV_FIELDS)
    return model


async def latest_model(session: AsyncSession) -> ClvModel | None:
    return (
        await session.execute(select(ClvModel).order_by(ClvModel.id.desc()).limit(1))
    ).scalar_one_or_none()
