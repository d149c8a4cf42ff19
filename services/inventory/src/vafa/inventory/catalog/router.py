from typing import Annotated

from fastapi import APIRouter, Path, Request, Response

from vafa.inventory.catalog import csvimport, service
from vafa.inventory.catalog.schemas import (
    BulkResult,
    ImportReport,
    ProductBulk,
    ProductBulkItem,
    ProductRead,
    ProductUpsert,
    UpsertResult,
)
from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.kit.errors import Problem

router = APIRouter(prefix="/v1/products", tags=["catalogue"])

Sku = Annotated[str, Path(min_length=1, max_length=128, description="The shop's SKU.")]


@router.get("/{sku}", response_model=ProductRead, summary="A product as the catalogue knows it")
async def get_product(sku: Sku, session: SessionDep, _: StaffRead) -> ProductRead:
    return await service.get(session, sku)


@router.put(
    "/{sku}",
    response_model=ProductRead,
    summary="Create or update a product (201 when created; an unchanged upsert publishes nothing)",
)
async def put_product(
    sku: Sku, body: ProductUpsert, session: SessionDep, response: Response, _: StaffWrite
) -> ProductRead:
    [outcome] = await service.upsert_many(
        session, [ProductBulkItem(sku=sku.strip(), **body.model_dump())]
    )
    await session.commit()
    if outcome == "created":
        response.status_code = 201
    return await service.get(session, sku.strip())


@router.post(
    "/bulk",
    response_model=BulkResult,
    summary="Create or update up to 1,000 products at once (all or nothing)",
)
async def bulk_products(body: ProductBulk, session: SessionDep, _: StaffWrite) -> BulkResult:
    first: dict[str, int] = {}
    for i, p in enumerate(body.products):
        if p.sku in first:
            pointer = f"/body/products/{i}/sku"
            raise Problem(
                422,
                f"{pointer}: SKU {p.sku!r} is already at /body/products/{first[p.sku]}.",
                title="Your request is not valid",
                type="validation",
                errors=[{"pointer": pointer, "detail": "duplicate SKU", "type": "duplicate"}],
            )
        first[p.sku] = i
    outcomes = await service.upsert_many(session, body.products)
    await session.commit()
    return BulkResult(
        results=[
            UpsertResult(sku=p.sku, outcome=o) for p, o in zip(body.products, outcomes, strict=True)
        ]
    )


@router.post(
    "/import",
    response_model=ImportReport,
    summary="Import products from CSV: valid rows are upserted, the others reported by line",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "Header: sku,name,price,currency[,product_id,brand,category,tags,"
            "active]. Price in major units; tags separated by | ; or ،.",
        }
    },
)
async def import_products(request: Request, session: SessionDep, _: StaffWrite) -> ImportReport:
    parsed = csvimport.parse(await request.body())
    if parsed.rows == 0:
        raise Problem(422, "The file has a header but no rows.", type="csv-invalid")
    if not parsed.items:
        raise Problem(
            422,
            f"No row could be imported; the first error is on line {parsed.errors[0].row}.",
            title="The CSV cannot be imported",
            type="csv-invalid",
            errors=[e.model_dump() for e in parsed.errors],
        )
    outcomes = await service.upsert_many(session, [item for _, item in parsed.items])
    await session.commit()
    return ImportReport(
        rows=parsed.rows,
        created=outcomes.count("created"),
        updated=outcomes.count("updated"),
        unchanged=outcomes.count("unchanged"),
        errors=parsed.errors,
    )
