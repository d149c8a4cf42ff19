"""Discovery on the real database: three planted kinds of buyer come back as three clusters with
readable labels and definitions that admit their own members; the API validates and stores."""

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import numpy as np
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.db import Database
from vafa.kit.testing.plugin import principal_headers
from vafa.segmentation.scores import clusters

from .scores_fixtures import add_customer, clear_scores

NOW = datetime(2026, 6, 1, tzinfo=UTC)
MARKETER = principal_headers("staff", "m", "marketer")
VIEWER = principal_headers("staff", "v", "viewer")


async def planted(session: AsyncSession, per_group: int = 40) -> dict[uuid.UUID, str]:
    rng = np.random.default_rng(11)
    kinds: dict[uuid.UUID, str] = {}
    for _ in range(per_group):
        for kind in ("vip", "bargain", "lapsed"):
            if kind == "vip":
                orders, spent = int(rng.integers(20, 31)), int(rng.integers(500_000, 800_000))
                days, discount = int(rng.integers(1, 20)), float(rng.uniform(0, 0.1))
            elif kind == "bargain":
                orders, spent = int(rng.integers(2, 5)), int(rng.integers(5_000, 15_000))
                days, discount = int(rng.integers(10, 60)), float(rng.uniform(0.8, 1.0))
            else:
                orders, spent = int(rng.integers(3, 6)), int(rng.integers(40_000, 60_000))
                days, discount = int(rng.integers(300, 400)), float(rng.uniform(0.2, 0.4))
            cid = await add_customer(
                session,
                orders_count=orders,
                total_spent=spent,
                avg_order_value=spent // orders,
                discount_share=discount,
                last_order_at=NOW - timedelta(days=days),
                interactions_count=2,
            )
            kinds[cid] = kind
    # Never bought, or removed: not clustered.
    await add_customer(session, interactions_count=50)
    await add_customer(session, orders_count=99, total_spent=10**8, last_order_at=NOW, removed=True)
    return kinds


def admits(definition: dict[str, Any], values: dict[str, float]) -> bool:
    for c in definition["all"]:
        if c["field"] == "last_order_at":
            days = values["recency_days"]
            ok = days <= c["value"] if c["op"] == "in_last_days" else days > c["value"]
        else:
            lo, hi = c["value"]
            ok = lo <= values[c["field"]] <= hi
        if not ok:
            return False
    return True


async def test_three_planted_groups_are_found_and_described(session: AsyncSession) -> None:
    kinds = await planted(session)
    run = await clusters.run_clusters(
        session,
        now=NOW,
        k=None,
        features=[
            "recency_days",
            "orders_count",
            "total_spent",
            "avg_order_value",
            "discount_share",
            "interactions_count",
        ],
        sample_size=10_000,
    )
    assert run.customers == 120  # the lead and the removed customer are left out
    assert run.k == 3
    assert run.silhouette is not None and max(run.silhouette, key=run.silhouette.__getitem__) == "3"
    assert sorted(c["size"] for c in run.clusters) == [40, 40, 40]
    assert sum(c["share"] for c in run.clusters) == pytest.approx(1.0)
    by_label = {c["label"]: c for c in run.clusters}
    vip = next(c for c in run.clusters if c["means"]["orders_count"] >= 20)
    bargain = next(c for c in run.clusters if c["means"]["discount_share"] >= 0.8)
    lapsed = next(c for c in run.clusters if c["means"]["recency_days"] >= 300)
    assert len({vip["index"], bargain["index"], lapsed["index"]}) == 3 and len(by_label) == 3
    assert "frequent" in vip["label"] and "high spend" in vip["label"]
    assert "mostly on discount" in bargain["label"]
    assert "long since the last order" in lapsed["label"]
    assert vip["z"]["orders_count"] > 1 and bargain["z"]["discount_share"] > 1
    assert vip["means"]["total_spent"] >= 500_000  # real units, not z-scores

    # Each suggested definition admits its own cluster's median customer, and no one from the
    # other two planted groups' centres.
    centre = {
        "vip": {"recency_days": 10, "orders_count": 25, "total_spent": 650_000,
                "avg_order_value": 26_000, "discount_share": 0.05, "interactions_count": 2},
        "bargain": {"recency_days": 35, "orders_count": 3, "total_spent": 10_000,
                    "avg_order_value": 3_333, "discount_share": 0.9, "interactions_count": 2},
        "lapsed": {"recency_days": 350, "orders_count": 4, "total_spent": 50_000,
                   "avg_order_value": 12_500, "discount_share": 0.3, "interactions_count": 2},
    }  # fmt: skip
    for name, c in (("vip", vip), ("bargain", bargain), ("lapsed", lapsed)):
        assert admits(c["definition"], centre[name]), (name, c["definition"])
        for other in set(centre) - {name}:
            assert not admits(c["definition"], centre[other]), (name, other)
    assert len(kinds) == 120


async def test_a_given_k_is_used_and_repeatable(session: AsyncSession) -> None:
    await planted(session, per_group=10)
    kw: dict[str, Any] = {"now": NOW, "k": 2, "features": ["orders_count", "total_spent"]}
    a = await clusters.run_clusters(session, sample_size=1_000, **kw)
    b = await clusters.run_clusters(session, sample_size=1_000, **kw)
    assert a.k == b.k == 2 and a.silhouette is None
    assert sorted(c["size"] for c in a.clusters) == sorted(c["size"] for c in b.clusters)
    assert a.inertia == pytest.approx(b.inertia)


@pytest.fixture
async def clean(db: Database) -> AsyncIterator[None]:
    await clear_scores(db)
    yield
    await clear_scores(db)


async def test_api(client: httpx.AsyncClient, db: Database, clean: None) -> None:
    r = await client.post("/v1/segmentation/clusters", json={}, headers=MARKETER)
    assert r.status_code == 409 and r.json()["customers"] == 0
    r = await client.post("/v1/segmentation/clusters", json={"k": 11}, headers=MARKETER)
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/k"
    r = await client.post(
        "/v1/segmentation/clusters", json={"features": ["shoe_size"]}, headers=MARKETER
    )
    assert r.status_code == 422 and r.json()["errors"][0]["pointer"] == "/body/features/0"
    async with db.sessionmaker() as s:
        await planted(s, per_group=15)
        await s.commit()
    r = await client.post("/v1/segmentation/clusters", json={"k": 3}, headers=VIEWER)
    assert r.status_code == 403
    r = await client.post(
        "/v1/segmentation/clusters", json={"k": 3, "sample_size": 30}, headers=MARKETER
    )
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["customers"] == 30 and run["k"] == 3 and len(run["clusters"]) == 3
    assert run["features"][0] == "recency_days"
    got = await client.get(f"/v1/segmentation/clusters/{run['id']}", headers=VIEWER)
    assert got.status_code == 200 and got.json() == run
    missing = await client.get(f"/v1/segmentation/clusters/{uuid.uuid4()}", headers=VIEWER)
    assert missing.status_code == 404
