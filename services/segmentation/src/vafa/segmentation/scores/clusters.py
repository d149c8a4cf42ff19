"""Discovery: k-means on standardised features proposes segments.

Population: customers with at least one paid order who are not removed (discovery among buyers;
leads would only form a "never bought" cluster), a uniform random sample of at most the cap.
Features are standardised (StandardScaler), clustered with KMeans (k-means++, several inits,
fixed random_state so a run is repeatable on the same sample); when k is not given, k in 2..8
with the best silhouette (on at most 5,000 of the sampled customers) wins.

Each cluster gets its size and share, feature means in real units, a z-score profile (the
cluster's mean minus everyone's, in standard deviations), a readable label from its most
distinctive features (|z| >= 0.5, at most three), and a suggested segment definition in the
segment language: `between` the members' quartiles for each distinctive feature (recency as
`in_last_days` / `not_in_last_days` on last_order_at)."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler
from sqlalchemy import Float, cast, extract, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.errors import NotFound, Problem
from vafa.segmentation.models import ClusterRun, Features

RANDOM_STATE = 0
N_INIT = 10
CANDIDATE_K = range(2, 9)
SILHOUETTE_SAMPLE = 5_000
DISTINCT_Z = 0.5
MIN_CUSTOMERS = 20

# (word when high, word when low) for labels.
WORDS: dict[str, tuple[str, str]] = {
    "recency_days": ("long since the last order", "bought recently"),
    "orders_count": ("frequent", "infrequent"),
    "total_spent": ("high spend", "low spend"),
    "avg_order_value": ("large baskets", "small baskets"),
    "discount_share": ("mostly on discount", "rarely on discount"),
    "referrals_made": ("brings friends", "no referrals"),
    "interactions_count": ("engaged", "quiet"),
    "points_balance": ("many points", "few points"),
    "coupons_redeemed": ("redeems coupons", "few coupons"),
    "orders_90d": ("active lately", "inactive lately"),
    "spent_90d": ("spending lately", "little spend lately"),
    "orders_365d": ("active this year", "inactive this year"),
    "spent_365d": ("high spend this year", "low spend this year"),
    "refunds_count": ("often refunds", "rarely refunds"),
}
FRACTIONAL = {"discount_share"}


def _column(name: str, now: datetime) -> Any:
    if name == "recency_days":
        return cast(extract("epoch", now - Features.last_order_at) / 86400.0, Float)
    return cast(getattr(Features, name), Float)


@dataclass(slots=True)
class Result:
    k: int
    inertia: float
    silhouette: dict[str, float] | None
    clusters: list[dict[str, Any]]


def label(z: dict[str, float]) -> str:
    ranked = sorted(z.items(), key=lambda kv: -abs(kv[1]))
    words = [WORDS[f][0 if v > 0 else 1] for f, v in ranked if abs(v) >= DISTINCT_Z][:3]
    return ", ".join(words) if words else "typical customers"


def definition(name_values: dict[str, NDArray[np.float64]], z: dict[str, float]) -> dict[str, Any]:
    """`between` the members' quartiles on the distinctive features (the most distinctive one
    when none stands out)."""
    chosen = [f for f, v in sorted(z.items(), key=lambda kv: -abs(kv[1])) if abs(v) >= DISTINCT_Z]
    if not chosen:
        chosen = [max(z, key=lambda f: abs(z[f]))]
    conditions: list[dict[str, Any]] = []
    for f in chosen[:3]:
        q1, q3 = np.percentile(name_values[f], [25, 75])
        if f == "recency_days":
            conditions.append(
                {"field": "last_order_at", "op": "in_last_days", "value": math.ceil(q3)}
            )
            if math.floor(q1) > 0:
                conditions.append(
                    {"field": "last_order_at", "op": "not_in_last_days", "value": math.floor(q1)}
                )
        elif f in FRACTIONAL:
            lo, hi = math.floor(q1 * 100) / 100, math.ceil(q3 * 100) / 100
            conditions.append({"field": f, "op": "between", "value": [lo, hi]})
        else:
            conditions.append(
                {"field": f, "op": "between", "value": [math.floor(q1), math.ceil(q3)]}
            )
    return {"all": conditions}


def cluster(x: NDArray[np.float64], names: list[str], k: int | None) -> Result:
    """CPU work (run it in a thread)."""
    z = StandardScaler().fit_transform(x)
    scores: dict[str, float] | None = None
    if k is None:
        scores = {}
        for candidate in CANDIDATE_K:
            if candidate >= len(z):
                break
            labels = KMeans(candidate, n_init=N_INIT, random_state=RANDOM_STATE).fit_predict(z)
            if len(set(labels)) < 2:
                continue
            scores[str(candidate)] = float(
                silhouette_score(
                    z,
                    labels,
                    sample_size=min(len(z), SILHOUETTE_SAMPLE),
                    random_state=RANDOM_STATE,
                )
            )
        k = int(max(scores, key=lambda c: scores[c])) if scores else 2
    model = KMeans(k, n_init=N_INIT, random_state=RANDOM_STATE).fit(z)
    out: list[dict[str, Any]] = []
    n = len(x)
    for i in range(k):
        members = model.labels_ == i
        if not members.any():
            continue
        zp = {f: round(float(z[members, j].mean()), 3) for j, f in enumerate(names)}
        values = {f: x[members, j] for j, f in enumerate(names)}
        out.append(
            {
                "size": int(members.sum()),
                "share": float(members.sum()) / n,
                "means": {f: float(values[f].mean()) for f in names},
                "z": zp,
                "label": label(zp),
                "definition": definition(values, zp),
            }
        )
    # Largest first, numbered in that order, so a run reads top-down.
    out.sort(key=lambda c: -c["size"])
    for index, c in enumerate(out):
        c["index"] = index
    return Result(k=k, inertia=float(model.inertia_), silhouette=scores, clusters=out)


async def run_clusters(
    session: AsyncSession,
    *,
    now: datetime,
    k: int | None,
    features: list[str],
    sample_size: int,
) -> ClusterRun:
    """Samples, clusters in a worker thread (the event loop stays free), stores the run; the
    caller commits."""
    names = list(dict.fromkeys(features))
    query = (
        select(*[_column(f, now) for f in names])
        .where(~Features.removed, Features.orders_count > 0, Features.last_order_at.is_not(None))
        .order_by(func.random())
        .limit(sample_size)
    )
    rows = (await session.execute(query)).all()
    if len(rows) < max(MIN_CUSTOMERS, (k or 2) * 2):
        raise Problem(
            409,
            f"Only {len(rows)} customers with orders to cluster; at least "
            f"{max(MIN_CUSTOMERS, (k or 2) * 2)} are needed.",
            type="insufficient-customers",
            customers=len(rows),
        )
    x = np.array([[0.0 if v is None else float(v) for v in r] for r in rows], dtype=np.float64)
    result = await asyncio.to_thread(cluster, x, names, k)
    run = ClusterRun(
        id=uuid.uuid4(),
        created_at=now,
        k=result.k,
        features=names,
        customers=len(rows),
        clusters=result.clusters,
        inertia=result.inertia,
        silhouette=result.silhouette,
    )
    session.add(run)
    await session.flush()
    return run


async def get_run(session: AsyncSession, *, run_id: uuid.UUID) -> ClusterRun:
    run = await session.get(ClusterRun, run_id)
    if run is None:
        raise NotFound(f"No cluster run {run_id}.")
    return run
