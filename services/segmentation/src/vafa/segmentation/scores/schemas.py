import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field


class RfmSegmentRead(BaseModel):
    key: str = Field(description='The key segment definitions use: {"rfm": [key, ...]}')
    name: str
    description: str
    customers: int
    share: float = Field(description="Of the scored customers, 0-1.")
    mean_recency_days: float | None
    mean_orders: float | None
    mean_spend: float | None = Field(description="Minor units.")


class RfmEdge(BaseModel):
    score: int
    low: float
    high: float


class RfmEdges(BaseModel):
    recency: list[RfmEdge] = Field(description="Days since the last order; score 5 = fewest.")
    frequency: list[RfmEdge] = Field(description="Paid orders.")
    monetary: list[RfmEdge] = Field(description="Total spent, minor units.")


class RfmRead(BaseModel):
    customers: int = Field(description="Customers with scores (a paid order, not removed).")
    segments: list[RfmSegmentRead]
    edges: RfmEdges


class RfmRecomputeRead(RfmRead):
    computed_at: datetime
    changed: int = Field(description="Customers whose scores were written.")
    cleared: int = Field(description="Customers no longer scored.")


class BgNbdRead(BaseModel):
    r: float
    alpha: float = Field(description="In weeks.")
    a: float
    b: float


class GammaGammaRead(BaseModel):
    p: float
    q: float
    gamma: float = Field(description="In minor units of `currency`.")


class ClvBands(BaseModel):
    high_percentile: float
    low_percentile: float
    high_from: int | None = Field(description="Lowest CLV (minor units) in the high band.")
    medium_from: int | None = Field(description="Lowest CLV (minor units) in the medium band.")
    counts: dict[str, int]


class ClvModelRead(BaseModel):
    id: int
    fitted_at: datetime
    horizon_days: int
    currency: str
    customers: int
    repeat_customers: int
    bgnbd: BgNbdRead | None
    gamma_gamma: GammaGammaRead | None
    diagnostics: dict[str, Any]
    bands: ClvBands | None


ClusterFeature = Literal[
    "recency_days",
    "orders_count",
    "total_spent",
    "avg_order_value",
    "discount_share",
    "referrals_made",
    "interactions_count",
    "points_balance",
    "coupons_redeemed",
    "orders_90d",
    "spent_90d",
    "orders_365d",
    "spent_365d",
    "refunds_count",
]
DEFAULT_CLUSTER_FEATURES: list[ClusterFeature] = [
    "recency_days",
    "orders_count",
    "total_spent",
    "avg_order_value",
    "discount_share",
    "referrals_made",
    "interactions_count",
]


class ClusterCreate(BaseModel):
    k: int | None = Field(
        default=None, ge=2, le=10, description="Omitted: the best silhouette for k in 2..8."
    )
    features: list[ClusterFeature] = Field(
        default_factory=lambda: list(DEFAULT_CLUSTER_FEATURES), min_length=1, max_length=14
    )
    sample_size: int | None = Field(
        default=None, ge=20, le=1_000_000, description="At most this many customers, sampled."
    )


class ClusterRead(BaseModel):
    index: int
    label: str
    size: int
    share: float
    means: dict[str, float]
    z: dict[str, float] = Field(description="Cluster mean minus overall mean, in std units.")
    definition: dict[str, Any] = Field(description="A suggested segment definition.")


class ClusterRunRead(BaseModel):
    id: uuid.UUID
    created_at: datetime
    k: int
    features: list[str]
    customers: int
    inertia: float
    silhouette: dict[str, float] | None = None
    clusters: list[ClusterRead]


class ValueRow(BaseModel):
    group: str
    customers: int
    purchasers: int
    revenue: int = Field(description="Minor units.")
    mean_clv: float | None = Field(description="Minor units, over customers with a CLV.")


class ValueReport(BaseModel):
    by: Literal["cohort", "channel", "registration"]
    months: int | None = None
    rows: list[ValueRow]
