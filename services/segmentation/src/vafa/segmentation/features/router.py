import uuid

from fastapi import APIRouter

from vafa.kit.auth import StaffRead
from vafa.kit.db import SessionDep
from vafa.kit.errors import NotFound
from vafa.segmentation.features import service
from vafa.segmentation.features.schemas import BoughtRead, FeaturesRead, Money, PurchasesRead

router = APIRouter(tags=["features"])

MONEY = ("total_spent", "avg_order_value", "spent_30d", "spent_90d", "spent_365d")


@router.get(
    "/v1/customers/{customer_id}/features",
    response_model=FeaturesRead,
    summary="A customer's features: what segments test, and what they bought",
)
async def get_features(customer_id: uuid.UUID, session: SessionDep, _: StaffRead) -> FeaturesRead:
    row = await service.get_features(session, customer_id=customer_id)
    if row is None:
        raise NotFound(
            f"No features are known for customer {customer_id}.", customer_id=str(customer_id)
        )
    currency = row["currency"]
    for name in MONEY:
        row[name] = Money(amount_minor=row[name], currency=currency)
    if row["clv_value"] is not None:
        row["clv_value"] = Money(amount_minor=row["clv_value"], currency=currency)
    bought = await service.bought(session, customer_id=customer_id)

    def items(dimension: str) -> list[BoughtRead]:
        return [
            BoughtRead(
                value=b["value"],
                orders=b["orders"],
                quantity=b["quantity"],
                spend=Money(amount_minor=b["spend"], currency=currency),
            )
            for b in bought[dimension]
        ]

    return FeaturesRead(
        **row,
        purchases=PurchasesRead(
            categories=items("category"), brands=items("brand"), tags=items("tag")
        ),
    )
