"""CLV: BG/NBD and Gamma-Gamma against the published CDNOW fits, a conditional expectation
checked by direct numerical integration of the posterior, and the whole path on the real
database: orders -> purchase history -> fits -> features.clv_* and clv_models -> the API."""

import asyncio
import csv
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from scipy import integrate
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.segmentation.scores.clv import bgnbd, gamma_gamma, service

from .scores_fixtures import add_customer, add_order, clear_scores

DATA = Path(__file__).parent / "data"
MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")
# The end of the CDNOW calibration period: T of a customer who first bought on 1997-01-01 is
# 272 days = 38.86 weeks, as in the published summary.
CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59, tzinfo=UTC)
PUBLISHED = bgnbd.BgNbdParams(r=0.243, alpha=4.414, a=0.793, b=2.426)


def summary() -> dict[str, np.ndarray]:
    with (DATA / "cdnow_customers_summary_with_transactions.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    return {k: np.array([float(r[k]) for r in rows]) for k in ("ID", "x", "t_x", "T", "zbar")}


def test_bgnbd_reproduces_the_published_cdnow_fit() -> None:
    s = summary()
    assert len(s["x"]) == 2357
    fit = bgnbd.fit(s["x"], s["t_x"], s["T"])
    p = fit.params
    assert fit.converged
    assert p.r == pytest.approx(0.243, abs=0.001)
    assert p.alpha == pytest.approx(4.414, abs=0.005)
    assert p.a == pytest.approx(0.793, abs=0.002)
    assert p.b == pytest.approx(2.426, abs=0.005)
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)


def test_bgnbd_fit_on_weighted_distinct_rows_is_the_same_fit() -> None:
    s = summary()
    rows = np.column_stack([s["x"], s["t_x"], s["T"]])
    distinct, counts = np.unique(rows, axis=0, return_counts=True)
    assert len(distinct) < len(rows)
    fit = bgnbd.fit(distinct[:, 0], distinct[:, 1], distinct[:, 2], counts.astype(float))
    assert fit.log_likelihood == pytest.approx(-9582.4, abs=0.1)
    assert fit.params.r == pytest.approx(0.243, abs=0.001)


def test_gamma_gamma_reproduces_the_published_cdnow_fit() -> None:
    s = summary()
    repeat = s["x"] > 0
    assert repeat.sum() == 946
    fit = gamma_gamma.fit(s["x"][repeat], s["zbar"][repeat])
    assert fit.converged
    assert fit.params.p == pytest.approx(6.25, abs=0.01)
    assert fit.params.q == pytest.approx(3.74, abs=0.01)
    assert fit.params.gamma == pytest.approx(15.44, abs=0.02)
    # The population mean spend per transaction, p*gamma/(q-1): about $35 on CDNOW.
    assert gamma_gamma.population_mean(fit.params) == pytest.approx(35.2, abs=0.1)


def _posterior_integrals(x: int, t_x: float, T: float, t: float) -> tuple[float, float]:
    """E[purchases in (T, T+t]] and P(alive) by integrating over lambda and p directly, no
    closed form: the likelihood of the history splits into 'still alive at T' and 'dropped out
    after the last purchase'; an alive customer (lambda, p) buys (1 - exp(-lambda p t)) / p.
    Plain math for the densities: scipy.stats' per-call overhead makes dblquad take minutes."""
    r, alpha, a, b = PUBLISHED.r, PUBLISHED.alpha, PUBLISHED.a, PUBLISHED.b
    log_cg = r * math.log(alpha) - math.lgamma(r)
    log_cb = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)

    def prior(lam: float, p: float) -> float:
        return math.exp(
            log_cg
            + (r - 1) * math.log(lam)
            - alpha * lam
            + log_cb
            + (a - 1) * math.log(p)
            + (b - 1) * math.log1p(-p)
        )

    def alive(lam: float, p: float) -> float:
        return (1 - p) ** x * lam**x * math.exp(-lam * T)

    def likelihood(lam: float, p: float) -> float:
        gone = p * (1 - p) ** (x - 1) * lam**x * math.exp(-lam * t_x) if x > 0 else 0.0
        return alive(lam, p) + gone

    def buys(lam: float, p: float) -> float:
        return -math.expm1(-lam * p * t) / p

    opts = {"epsabs": 1e-13, "epsrel": 1e-9}
    # Beyond lambda = 5 the posterior (decaying like exp(-lambda (alpha + t_x))) is nil.
    den = integrate.dblquad(lambda lam, p: likelihood(lam, p) * prior(lam, p), 0, 1, 0, 5, **opts)
    num = integrate.dblquad(
        lambda lam, p: alive(lam, p) * buys(lam, p) * prior(lam, p), 0, 1, 0, 5, **opts
    )
    live = integrate.dblquad(lambda lam, p: alive(lam, p) * prior(lam, p), 0, 1, 0, 5, **opts)
    return num[0] / den[0], live[0] / den[0]


def test_conditional_expectation_matches_the_paper_and_direct_integration() -> None:
    # The paper's worked customer: 2 repeat purchases, the last at 30.43 weeks, T = 38.86;
    # expected purchases over the next 39 weeks: 1.226.
    x, t_x, T = np.array([2.0]), np.array([30.43]), np.array([38.86])
    closed = float(bgnbd.conditional_expected_purchases(PUBLISHED, 39.0, x, t_x, T)[0])
    alive = float(bgnbd.probability_alive(PUBLISHED, x, t_x, T)[0])
    assert closed == pytest.approx(1.226, abs=0.0005)
    numeric, numeric_alive = _posterior_integrals(2, 30.43, 38.86, 39.0)
    assert closed == pytest.approx(numeric, rel=1e-6)
    assert alive == pytest.approx(numeric_alive, rel=1e-6)


def test_heavy_buyers_stay_finite() -> None:
    # Where ((a+T)/(a+T+t))^(r+x) * 2F1(...) overflows in the paper's form.
    x = np.array([0.0, 1.0, 60.0, 300.0])
    t_x = np.array([0.0, 2.0, 50.0, 52.0])
    T = np.array([1.0, 3.0, 52.0, 52.0])
    e = bgnbd.conditional_expected_purchases(PUBLISHED, 52.0, x, t_x, T)
    assert np.isfinite(e).all() and (e > 0).all()
    assert e[3] > e[2] > e[0]
    # A brand-new customer (x = 0, T -> 0) expects what the unconditional E[X(t)] says.
    fresh = bgnbd.conditional_expected_purchases(
        PUBLISHED, 39.0, np.array([0.0]), np.array([0.0]), np.array([1e-9])
    )
    assert float(fresh[0]) == pytest.approx(bgnbd.expected_purchases(PUBLISHED, 39.0), rel=1e-6)


async def load_cdnow(session: AsyncSession) -> dict[int, uuid.UUID]:
    """The raw CDNOW transactions as paid orders in cents, one features row per customer."""
    ids = {n: uuid.UUID(int=n) for n in range(1, 2358)}
    await session.execute(
        text("INSERT INTO features (customer_id) SELECT unnest(CAST(:ids AS uuid[]))"),
        {"ids": list(ids.values())},
    )
    rows = []
    for i, line in enumerate((DATA / "cdnow_sample.txt").read_text().splitlines()):
        _, cust, day, _, dollars = line.split()
        placed = datetime(int(day[:4]), int(day[4:6]), int(day[6:]), 12, tzinfo=UTC)
        rows.append(
            {
                "ref": f"cdnow-{i}",
                "c": ids[int(cust)],
                "p": placed,
                "t": round(float(dollars) * 100),
            }
        )
    await session.execute(
        text(
            "INSERT INTO orders (order_ref, customer_id, status, placed_at, paid_at, currency,"
            " total_minor) VALUES (:ref, :c, 'paid', :p, :p, 'USD', :t)"
        ),
        rows,
    )
    return ids


async def test_cdnow_orders_give_the_published_history_and_fit(session: AsyncSession) -> None:
    ids = await load_cdnow(session)
    currency, h = await service.load_history(session, now=CALIBRATION_END, timezone="UTC")
    assert currency == "USD" and len(h.x) == 2357
    s = summary()
    mine = dict(zip(h.customer_ids, zip(h.x, h.t_x / 7, h.T / 7, h.zbar, strict=True), strict=True))
    for n, x, t_x, T, zbar in zip(s["ID"], s["x"], s["t_x"], s["T"], s["zbar"], strict=True):
        got = mine[ids[int(n)]]
        assert got[0] == x
        assert got[1] == pytest.approx(t_x, abs=0.006)
        assert got[2] == pytest.approx(T, abs=0.006)
        assert got[3] / 100 == pytest.approx(zbar, abs=0.006)

    policy = service.ClvPolicy(horizon_days=273)  # the 39-week holdout of the papers
    model = await service.fit_clv(session, now=CALIBRATION_END, policy=policy)
    bg, gg = model.params["bgnbd"], model.params["gamma_gamma"]
    assert bg["r"] == pytest.approx(0.243, abs=0.001)
    assert bg["alpha"] == pytest.approx(4.414, abs=0.005)
    assert bg["a"] == pytest.approx(0.793, abs=0.002)
    assert bg["b"] == pytest.approx(2.426, abs=0.005)
    assert gg["p"] == pytest.approx(6.25, abs=0.01) and gg["q"] == pytest.approx(3.74, abs=0.01)
    assert gg["gamma"] / 100 == pytest.approx(15.44, abs=0.02)  # fitted in cents
    assert model.diagnostics["bgnbd"]["log_likelihood"] == pytest.approx(-9582.4, abs=0.1)
    assert (model.customers, model.repeat_customers, model.currency) == (2357, 946, "USD")
    assert model.diagnostics["written"] == 2357

    # Customer 1 of the sample is the paper's worked customer (x=2, t_x=30.43, T=38.86).
    one = (
        await session.execute(
            text(
                "SELECT clv_expected_purchases, clv_probability_alive, clv_value, clv_band,"
                " clv_order_value"
                " FROM features WHERE customer_id = :c"
            ),
            {"c": ids[1]},
        )
    ).one()
    assert one.clv_expected_purchases == pytest.approx(1.226, abs=0.001)
    assert one.clv_probability_alive == pytest.approx(0.7266, abs=0.0002)
    value = gamma_gamma.conditional_expected_value(
        gamma_gamma.GammaGammaParams(gg["p"], gg["q"], gg["gamma"]),
        np.array([2.0]),
        np.array([2235.0]),  # $22.35, the customer's published zbar
    )[0]
    assert one.clv_order_value == pytest.approx(value, abs=1)  # zbar here is rounded to cents
    # CLV from the unrounded purchases: within a cent of the rounded product.
    assert one.clv_value == pytest.approx(one.clv_expected_purchases * value, abs=1)

    bands = dict(
        (await session.execute(text("SELECT clv_band, count(*) FROM features GROUP BY 1"))).all()
    )
    assert bands == model.params["bands"]["counts"]
    # Ties (the many one-time buyers with equal histories) share a band, so the shares are
    # only near 20/30/50%.
    assert bands["high"] <= 0.2 * 2357 + 1 and bands["low"] >= 0.3 * 2357
    low = await session.execute(text("SELECT max(clv_value) FROM features WHERE clv_band = 'low'"))
    assert (
        low.scalar_one()
        < model.params["bands"]["medium_from"]
        <= model.params["bands"]["high_from"]
    )

    # Refit at the same instant: same numbers, nothing rewritten.
    again = await service.fit_clv(session, now=CALIBRATION_END, policy=policy)
    assert again.diagnostics["written"] == 0 and again.diagnostics["cleared"] == 0

    # Profile merged customer 1 away: their prediction is cleared, nobody else's moves much.
    await session.execute(
        text("UPDATE features SET removed = true WHERE customer_id = :c"), {"c": ids[1]}
    )
    third = await service.fit_clv(session, now=CALIBRATION_END, policy=policy)
    assert third.diagnostics["cleared"] == 1 and third.customers == 2356
    gone = await session.execute(
        text("SELECT clv_value, clv_band FROM features WHERE customer_id = :c"), {"c": ids[1]}
    )
    assert tuple(gone.one()) == (None, None)


async def test_only_paid_orders_count_and_one_day_is_one_purchase(session: AsyncSession) -> None:
    day = datetime(2026, 3, 1, 10, tzinfo=UTC)
    a = await add_customer(session)
    await add_order(session, a, day, 1000)
    await add_order(session, a, day + timedelta(hours=3), 500)  # same day: one purchase
    await add_order(session, a, day + timedelta(days=10), 4000, refunded_minor=1000)
    await add_order(session, a, day + timedelta(days=20), 9999, status="cancelled")
    await add_order(session, a, day + timedelta(days=21), 9999, status="placed")
    await add_order(session, a, day + timedelta(days=30), 2000, status="fulfilled")
    await add_order(session, a, day + timedelta(days=400), 7777)  # after "now"
    gone = await add_customer(session, removed=True)
    await add_order(session, gone, day, 1000)
    # Tehran is 3:30 ahead: 22:00 UTC on 1 March is 2 March there, a second purchase day.
    b = await add_customer(session)
    await add_order(session, b, datetime(2026, 3, 1, 10, tzinfo=UTC), 100)
    await add_order(session, b, datetime(2026, 3, 1, 22, tzinfo=UTC), 100)

    now = day + timedelta(days=40)
    _, h = await service.load_history(session, now=now, timezone="Asia/Tehran")
    got = {c: (h.x[i], h.t_x[i], h.T[i], h.repeat_value[i]) for i, c in enumerate(h.customer_ids)}
    assert gone not in got
    assert got[a] == (2.0, 30.0, 40.0, 3000.0 + 2000.0)
    assert got[b][:2] == (1.0, 1.0)
    _, utc = await service.load_history(session, now=now, timezone="UTC")
    assert dict(zip(utc.customer_ids, utc.x, strict=True))[b] == 0.0


def test_bands_follow_the_percentiles_and_ties_share_one() -> None:
    clv = np.array([0, 0, 0, 0, 10, 20, 30, 40, 50, 60], dtype=np.int64)
    names, edges = service.band(clv, service.ClvPolicy(high_percentile=80, low_percentile=50))
    assert names == ["low"] * 5 + ["medium"] * 3 + ["high"] * 2
    assert (edges["high_from"], edges["medium_from"]) == (50, 20)
    assert edges["counts"] == {"high": 2, "medium": 3, "low": 5}


async def test_too_little_history_is_refused(session: AsyncSession) -> None:
    c = await add_customer(session)
    await add_order(session, c, datetime(2026, 1, 1, tzinfo=UTC), 100)
    with pytest.raises(service.Problem) as err:
        await service.fit_clv(
            session, now=datetime(2026, 2, 1, tzinfo=UTC), policy=service.ClvPolicy()
        )
    assert err.value.status == 409 and err.value.extensions["customers"] == 1


async def seed_history(db: Database, today: datetime, customers: int = 60) -> None:
    rng = np.random.default_rng(7)
    async with db.sessionmaker() as s:
        for i in range(customers):
            c = await add_customer(s)
            first = today - timedelta(days=int(rng.integers(60, 700)))
            for k in range(int(rng.integers(1, 6)) if i % 3 else 1):
                when = first + timedelta(days=int(rng.integers(0, (today - first).days)) * (k > 0))
                await add_order(s, c, when, int(rng.integers(1_000, 50_000)))
        await s.commit()


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    await clear_scores(db)
    yield
    await clear_scores(db)


async def test_api_fit_and_read(client: httpx.AsyncClient, db: Database, clean: None) -> None:
    r = await client.get("/v1/segmentation/clv", headers=VIEWER)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    r = await client.post("/v1/segmentation/clv/fit", headers=MARKETER)
    assert r.status_code == 409 and r.json()["type"].endswith("insufficient-history")

    today = datetime.now(UTC)
    await seed_history(db, today)
    assert (await client.post("/v1/segmentation/clv/fit", headers=VIEWER)).status_code == 403
    r = await client.post("/v1/segmentation/clv/fit", headers=MARKETER)
    assert r.status_code == 200, r.text
    fitted = r.json()
    assert fitted["customers"] == 60 and fitted["horizon_days"] == 365
    assert fitted["bgnbd"]["r"] > 0 and fitted["gamma_gamma"]["p"] > 0
    assert fitted["diagnostics"]["bgnbd"]["converged"] is True
    assert sum(fitted["bands"]["counts"].values()) == 60
    r = await client.get("/v1/segmentation/clv", headers=VIEWER)
    assert r.status_code == 200 and r.json()["id"] == fitted["id"]
    async with db.sessionmaker() as s:
        n = (
            await s.execute(text("SELECT count(*) FROM features WHERE clv_value IS NOT NULL"))
        ).scalar_one()
    assert n == 60
    assert date.fromisoformat(fitted["fitted_at"][:10]) == today.date()


async def test_concurrent_fits_serialise(db: Database, clean: None) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    await seed_history(db, now)

    async def fit() -> dict[str, Any]:
        async with db.sessionmaker() as s:
            model = await service.fit_clv(s, now=now, policy=service.ClvPolicy())
            await s.commit()
            return model.diagnostics

    a, b = await asyncio.gather(fit(), fit())
    # The second waited for the first's commit: same data, same fit, nothing left to write.
    assert sorted([a["written"], b["written"]]) == [0, 60]
    assert a["bgnbd"]["log_likelihood"] == pytest.approx(b["bgnbd"]["log_likelihood"])
    async with db.sessionmaker() as s:
        models = (await s.execute(text("SELECT count(*) FROM clv_models"))).scalar_one()
    assert models == 2


async def test_a_fit_fills_a_clv_band_segment(
    client: httpx.AsyncClient, db: Database, clean: None
) -> None:
    """Through the real evaluation: {"clv_band": ["high"]} holds exactly the high band."""
    await seed_history(db, datetime.now(UTC))
    r = await client.post(
        "/v1/segments",
        json={"key": f"high-{uuid.uuid4().hex[:8]}", "name": "High value",
              "definition": {"clv_band": ["high"]}},
        headers=MARKETER,
    )  # fmt: skip
    assert r.status_code == 201, r.text
    segment_id = r.json()["id"]
    try:
        fit = await client.post("/v1/segmentation/clv/fit", headers=MARKETER)
        assert fit.status_code == 200, fit.text
        async with db.sessionmaker() as s:
            high = set(
                (
                    await s.execute(
                        text("SELECT customer_id FROM features WHERE clv_band = 'high'")
                    )
                ).scalars()
            )
            members = set(
                (
                    await s.execute(
                        text(
                            "SELECT customer_id FROM memberships"
                            " WHERE segment_id = :s AND exited_at IS NULL"
                        ),
                        {"s": segment_id},
                    )
                ).scalars()
            )
        assert high and members == high
        assert len(high) == fit.json()["bands"]["counts"]["high"]
    finally:
        async with db.sessionmaker() as s:
            await s.execute(text("DELETE FROM segments WHERE id = :s"), {"s": segment_id})
            await s.commit()
