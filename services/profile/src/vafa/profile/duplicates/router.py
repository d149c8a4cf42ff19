import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from sqlalchemy import select

from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.kit.errors import Conflict
from vafa.profile.customers.identities import IdentityKind
from vafa.profile.customers.router import CustomerId, invalid
from vafa.profile.duplicates import merge as merges
from vafa.profile.duplicates import service
from vafa.profile.duplicates.schemas import (
    CandidateMerge,
    CandidatePage,
    CandidateRead,
    CandidateStatus,
    FileBrief,
    MergeCreate,
    MergeRead,
    ScanRequest,
)
from vafa.profile.models import Customer, CustomerIdentity, DuplicateCandidate

router = APIRouter(tags=["customers"])

# Merging rewrites two files: marketers, agents at the desk, admins.
Merger = Annotated[Principal, require("marketer", "agent")]
CandidateId = Annotated[int, Path(description="The candidate id.")]
MergeId = Annotated[uuid.UUID, Path(description="The merge id.")]


async def _briefs(session: SessionDep, ids: set[uuid.UUID]) -> dict[uuid.UUID, FileBrief]:
    customers = (await session.scalars(select(Customer).where(Customer.id.in_(ids)))).all()
    identities = (
        await session.execute(
            select(CustomerIdentity.customer_id, CustomerIdentity.kind, CustomerIdentity.value)
            .where(CustomerIdentity.customer_id.in_(ids))
            .order_by(CustomerIdentity.id)
        )
    ).all()
    out = {}
    for c in customers:
        mine = [(k, v) for cid, k, v in identities if cid == c.id]
        out[c.id] = FileBrief(
            id=c.id,
            first_name=c.first_name,
            last_name=c.last_name,
            emails=[v for k, v in mine if k == IdentityKind.email.value],
            phones=[v for k, v in mine if k == IdentityKind.phone.value],
            created_at=c.created_at,
        )
    return out


async def _read(session: SessionDep, rows: list[DuplicateCandidate]) -> list[CandidateRead]:
    briefs = await _briefs(session, {r.customer_a for r in rows} | {r.customer_b for r in rows})
    return [
        CandidateRead(
            id=r.id,
            reason=r.reason,
            score=r.score,
            details=r.details,
            status=CandidateStatus(r.status),
            customer_a=briefs[r.customer_a],
            customer_b=briefs[r.customer_b],
            created_at=r.created_at,
            resolved_by=r.resolved_by,
            resolved_at=r.resolved_at,
        )
        for r in rows
    ]


@router.get(
    "/v1/duplicates",
    response_model=CandidatePage,
    summary="The duplicate review queue",
    description="Exact duplicates (one order named identities of two files) and suggested "
    "near-duplicates (folded names alike, phones alike), oldest first.",
)
async def list_duplicates(
    session: SessionDep,
    _: StaffRead,
    status: CandidateStatus = CandidateStatus.open,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> CandidatePage:
    try:
        rows, next_cursor = await service.list_candidates(
            session, status=status.value, limit=limit, cursor=cursor
        )
    except ValueError as exc:
        raise invalid("query", "cursor", message=str(exc)) from exc
    return CandidatePage(items=await _read(session, rows), next_cursor=next_cursor)


@router.post(
    "/v1/duplicates/scan",
    response_model=list[CandidateRead],
    summary="Look for near-duplicates of one file now",
    description="Returns the candidates queued by this scan (pairs already queued, dismissed "
    "ones included, are not queued again).",
)
async def scan(
    body: ScanRequest, session: SessionDep, request: Request, _: Merger
) -> list[CandidateRead]:
    ids = await service.scan(
        session,
        customer_id=body.customer_id,
        threshold=request.app.state.settings.duplicate_name_similarity,
    )
    await session.commit()
    rows = [await service.get_candidate(session, i) for i in ids]
    return await _read(session, rows)


@router.post(
    "/v1/duplicates/{candidate_id}/dismiss",
    response_model=CandidateRead,
    summary="Not the same person: drop the pair from the queue",
)
async def dismiss(candidate_id: CandidateId, session: SessionDep, staff: Merger) -> CandidateRead:
    row = await service.dismiss(session, candidate_id=candidate_id, by=staff.header_value())
    await session.commit()
    return (await _read(session, [row]))[0]


def _merge_read(record: object) -> MergeRead:
    return MergeRead.model_validate(record)


@router.post(
    "/v1/duplicates/{candidate_id}/merge",
    response_model=MergeRead,
    status_code=201,
    summary="Merge the pair (the older file survives unless told otherwise)",
)
async def merge_candidate(
    candidate_id: CandidateId, body: CandidateMerge, session: SessionDep, staff: Merger
) -> MergeRead:
    row = await service.get_candidate(session, candidate_id, lock=True)
    if row.status != "open":
        raise Conflict(f"This pair is {row.status} already.", id=candidate_id)
    pair = (row.customer_a, row.customer_b)
    survivor = body.survivor_id
    if survivor is None:
        briefs = await _briefs(session, set(pair))
        survivor = min(pair, key=lambda c: (briefs[c].created_at, str(c)))
    elif survivor not in pair:
        raise invalid("body", "survivor_id", message="must be one of the pair")
    merged = pair[1] if survivor == pair[0] else pair[0]
    record = await merges.merge(
        session, survivor_id=survivor, merged_id=merged, by=staff.header_value()
    )
    await session.commit()
    return _merge_read(record)


@router.post(
    "/v1/customers/{customer_id}/merge",
    response_model=MergeRead,
    status_code=201,
    summary="Merge another file into this one",
    description="Field-level survivorship (see the service README), recorded in the ledger "
    "with before-images of both files; publishes CustomerMerged. The merged id then answers "
    "404 type customer-merged with `merged_into`.",
)
async def merge_into(
    customer_id: CustomerId, body: MergeCreate, session: SessionDep, staff: Merger
) -> MergeRead:
    record = await merges.merge(
        session, survivor_id=customer_id, merged_id=body.merged_id, by=staff.header_value()
    )
    await session.commit()
    return _merge_read(record)


@router.get("/v1/merges/{merge_id}", response_model=MergeRead, summary="A merge in the ledger")
async def get_merge(merge_id: MergeId, session: SessionDep, _: StaffRead) -> MergeRead:
    return _merge_read(await merges.get_merge(session, merge_id))


@router.post(
    "/v1/merges/{merge_id}/unmerge",
    response_model=MergeRead,
    summary="Undo a merge: both files restored as they were",
    description="Publishes CustomerUnmerged and CustomerUpdated for both files.",
)
async def unmerge(merge_id: MergeId, session: SessionDep, staff: Merger) -> MergeRead:
    record = await merges.unmerge(session, merge_id=merge_id, by=staff.header_value())
    await session.commit()
    return _merge_read(record)
