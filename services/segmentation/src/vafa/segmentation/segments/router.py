import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from vafa.kit.auth import StaffRead, StaffWrite
from vafa.kit.db import SessionDep
from vafa.kit.errors import Problem
from vafa.segmentation.segments import language as L
from vafa.segmentation.segments import service, templates
from vafa.segmentation.segments.schemas import (
    CustomerMembershipRead,
    CustomerSegmentsRead,
    EvaluationRead,
    ExplanationRead,
    FieldCatalogue,
    FieldRead,
    ImportRead,
    MembershipPage,
    MembershipRead,
    PreviewCreate,
    PreviewRead,
    SegmentCreate,
    SegmentDetail,
    SegmentRead,
    SegmentUpdate,
    SegmentVersionRead,
    TemplateRead,
)

router = APIRouter(tags=["segments"])


def _now() -> datetime:
    return datetime.now(UTC)


async def _detail(session: SessionDep, segment_id: uuid.UUID) -> SegmentDetail:
    seg = await service.get_segment(session, segment_id=segment_id)
    versions = await service.versions(session, segment_id=segment_id)
    return SegmentDetail(
        **SegmentRead.model_validate(seg).model_dump(),
        versions=[SegmentVersionRead.model_validate(v) for v in versions],
    )


# Fixed paths first: /v1/segments/{segment_id} would claim them otherwise.


@router.get(
    "/v1/segments/fields",
    response_model=FieldCatalogue,
    summary="The features a definition can test, with their types and operators",
)
async def fields(_: StaffRead) -> FieldCatalogue:
    specs = [*L.FIELDS.values(), *L.FAMILIES.values()]
    return FieldCatalogue(
        fields=[
            FieldRead(
                name=s.name,
                type=s.type,
                operators=list(s.ops),
                nullable=s.nullable,
                description=s.description,
            )
            for s in specs
        ],
        rfm_segments=list(L.RFM_SEGMENTS),
        clv_bands=list(L.CLV_BANDS),
        purchased_measures=["count", "quantity", "sum", "avg"],
        purchased_operators=["gte", "gt", "lte", "lt", "eq", "between"],
    )


@router.post(
    "/v1/segments/preview",
    response_model=PreviewRead,
    summary="How many customers a definition matches now, with a sample; nothing is saved",
)
async def preview(body: PreviewCreate, session: SessionDep, _: StaffRead) -> PreviewRead:
    result = await service.preview(
        session, definition=body.definition, now=_now(), sample=body.sample
    )
    return PreviewRead(count=result.count, sample=result.sample)


@router.get("/v1/segments", response_model=list[SegmentRead], summary="Segments")
async def list_segments(
    session: SessionDep, _: StaffRead, archived: Annotated[bool, Query()] = False
) -> list[SegmentRead]:
    return [
        SegmentRead.model_validate(s)
        for s in await service.list_segments(session, archived=archived)
    ]


@router.post(
    "/v1/segments",
    response_model=SegmentDetail,
    status_code=201,
    summary="Create a segment (dynamic: evaluated at once; static: upload its members)",
)
async def create_segment(
    body: SegmentCreate, session: SessionDep, principal: StaffWrite
) -> SegmentDetail:
    definition = body.definition
    pointer = "/body/definition"
    if body.template is not None:
        if body.definition is not None or body.kind != "dynamic":
            raise _invalid("/body/template", "a template makes a dynamic segment's definition")
        definition = templates.build(body.template, body.parameters)
        pointer = "/body/parameters"
    elif body.parameters is not None:
        raise _invalid("/body/parameters", "parameters go with a template")
    if body.kind == "dynamic" and definition is None:
        raise _invalid("/body/definition", "a dynamic segment needs a definition or a template")
    if body.kind == "static" and definition is not None:
        raise _invalid("/body/definition", "a static segment has no definition")
    seg = await service.create_segment(
        session,
        key=body.key,
        name=body.name,
        description=body.description,
        kind=body.kind,
        definition=definition,
        template=body.template,
        author=principal.header_value(),
        now=_now(),
        pointer=pointer,
    )
    await session.commit()
    return await _detail(session, seg.id)


def _invalid(pointer: str, detail: str) -> Problem:
    return Problem(
        422,
        f"{pointer}: {detail}",
        title="Your request is not valid",
        type="validation",
        errors=[{"pointer": pointer, "detail": detail}],
    )


@router.get(
    "/v1/segments/{segment_id}",
    response_model=SegmentDetail,
    summary="A segment with its definition versions",
)
async def get_segment(segment_id: uuid.UUID, session: SessionDep, _: StaffRead) -> SegmentDetail:
    return await _detail(session, segment_id)


@router.patch(
    "/v1/segments/{segment_id}",
    response_model=SegmentDetail,
    summary="Rename, describe or redefine a segment (a new definition: new version, re-evaluated)",
)
async def update_segment(
    segment_id: uuid.UUID, body: SegmentUpdate, session: SessionDep, principal: StaffWrite
) -> SegmentDetail:
    await service.update_segment(
        session,
        segment_id=segment_id,
        name=body.name,
        description=body.description,
        definition=body.definition,
        author=principal.header_value(),
        now=_now(),
    )
    await session.commit()
    return await _detail(session, segment_id)


@router.delete(
    "/v1/segments/{segment_id}",
    response_model=SegmentDetail,
    summary="Archive a segment: every member exits (409 while another segment refers to it)",
)
async def archive_segment(
    segment_id: uuid.UUID, session: SessionDep, _: StaffWrite
) -> SegmentDetail:
    await service.archive_segment(session, segment_id=segment_id, now=_now())
    await session.commit()
    return await _detail(session, segment_id)


@router.post(
    "/v1/segments/{segment_id}/evaluate",
    response_model=EvaluationRead,
    summary="Evaluate a dynamic segment in full now",
)
async def evaluate(segment_id: uuid.UUID, session: SessionDep, _: StaffWrite) -> EvaluationRead:
    seg, entered, exited = await service.evaluate(session, segment_id=segment_id, now=_now())
    await session.commit()
    return EvaluationRead(segment=SegmentRead.model_validate(seg), entered=entered, exited=exited)


@router.get(
    "/v1/segments/{segment_id}/members",
    response_model=MembershipPage,
    summary="Current members, longest-standing first (cursor pages)",
)
async def members(
    segment_id: uuid.UUID,
    session: SessionDep,
    _: StaffRead,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MembershipPage:
    rows, nxt = await service.members(session, segment_id=segment_id, cursor=cursor, limit=limit)
    return MembershipPage(items=[MembershipRead.model_validate(r) for r in rows], next_cursor=nxt)


@router.get(
    "/v1/segments/{segment_id}/history",
    response_model=MembershipPage,
    summary="Every stay in the segment, newest first: entries, and exits once closed",
)
async def history(
    segment_id: uuid.UUID,
    session: SessionDep,
    _: StaffRead,
    customer_id: Annotated[uuid.UUID | None, Query()] = None,
    cursor: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MembershipPage:
    rows, nxt = await service.history(
        session, segment_id=segment_id, customer_id=customer_id, cursor=cursor, limit=limit
    )
    return MembershipPage(items=[MembershipRead.model_validate(r) for r in rows], next_cursor=nxt)


@router.get(
    "/v1/segments/{segment_id}/explain/{customer_id}",
    response_model=ExplanationRead,
    summary="Why a customer is or is not in a segment, condition by condition",
)
async def explain(
    segment_id: uuid.UUID, customer_id: uuid.UUID, session: SessionDep, _: StaffRead
) -> ExplanationRead:
    result = await service.explain(
        session, segment_id=segment_id, customer_id=customer_id, now=_now()
    )
    return ExplanationRead.model_validate(result)


@router.post(
    "/v1/segments/{segment_id}/members/import",
    response_model=ImportRead,
    summary="Upload a static segment's members as CSV (customer_id, email or phone column)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}}},
        }
    },
)
async def import_members(
    segment_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    _: StaffWrite,
    mode: Annotated[Literal["add", "replace"], Query()] = "add",
) -> ImportRead:
    result = await service.import_members(
        session,
        segment_id=segment_id,
        content=await request.body(),
        mode=mode,
        region=request.app.state.settings.phone_region,
        now=_now(),
    )
    await session.commit()
    return ImportRead.model_validate(result)


@router.delete(
    "/v1/segments/{segment_id}/members/{customer_id}",
    status_code=204,
    summary="Take a customer out of a static segment",
)
async def remove_member(
    segment_id: uuid.UUID, customer_id: uuid.UUID, session: SessionDep, _: StaffWrite
) -> Response:
    await service.remove_member(session, segment_id=segment_id, customer_id=customer_id, now=_now())
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/v1/customers/{customer_id}/segments",
    response_model=CustomerSegmentsRead,
    summary="The segments a customer is in, and was in",
)
async def customer_segments(
    customer_id: uuid.UUID, session: SessionDep, _: StaffRead
) -> CustomerSegmentsRead:
    rows = await service.customer_segments(session, customer_id=customer_id)
    items = [
        CustomerMembershipRead(
            **MembershipRead.model_validate(m).model_dump(),
            segment_id=s.id,
            segment_key=s.key,
            segment_name=s.name,
        )
        for m, s in rows
    ]
    return CustomerSegmentsRead(
        customer_id=customer_id,
        current=[i for i in items if i.exited_at is None],
        past=[i for i in items if i.exited_at is not None],
    )


@router.get(
    "/v1/segment-templates",
    response_model=list[TemplateRead],
    summary="Ready-made segments; POST /v1/segments with template and parameters",
)
async def list_templates(_: StaffRead) -> list[TemplateRead]:
    return [
        TemplateRead(
            key=t.key,
            name=t.name,
            description=t.description,
            parameters=t.parameters.model_json_schema(),
            example=dict(t.example),
            example_definition=templates.build(t.key, t.example),
        )
        for t in templates.TEMPLATES.values()
    ]
