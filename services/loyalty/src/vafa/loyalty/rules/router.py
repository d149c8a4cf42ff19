from typing import Annotated

from fastapi import APIRouter, Query, Request

from vafa.kit.auth import Principal, StaffRead, require
from vafa.kit.db import SessionDep
from vafa.loyalty.models import RuleStatus
from vafa.loyalty.rules import service
from vafa.loyalty.rules.schemas import (
    DryRunCreate,
    DryRunRead,
    RuleCreate,
    RuleDetail,
    RuleRead,
    RuleUpdate,
    RuleVersionRead,
)

router = APIRouter(tags=["loyalty rules"])
Marketer = Annotated[Principal, require("marketer")]


async def _detail(session: SessionDep, rule_id: int) -> RuleDetail:
    rule = await service.get_rule(session, rule_id=rule_id)
    versions = await service.versions(session, rule_id=rule_id)
    return RuleDetail(
        **RuleRead.model_validate(rule).model_dump(),
        versions=[RuleVersionRead.model_validate(v) for v in versions],
    )


@router.get("/v1/loyalty/rules", response_model=list[RuleRead], summary="Earning rules")
async def list_rules(
    session: SessionDep, _: StaffRead, status: Annotated[RuleStatus | None, Query()] = None
) -> list[RuleRead]:
    rules = await service.list_rules(session, status=status)
    return [RuleRead.model_validate(r) for r in rules]


@router.post(
    "/v1/loyalty/rules",
    response_model=RuleDetail,
    status_code=201,
    summary="Create a draft earning rule",
)
async def create_rule(body: RuleCreate, session: SessionDep, _: Marketer) -> RuleDetail:
    rule = await service.create_rule(
        session,
        name=body.name,
        priority=body.priority,
        budget=body.budget,
        definition=body.definition,
    )
    await session.commit()
    return await _detail(session, rule.id)


@router.get(
    "/v1/loyalty/rules/{rule_id}",
    response_model=RuleDetail,
    summary="An earning rule with its published versions",
)
async def get_rule(rule_id: int, session: SessionDep, _: StaffRead) -> RuleDetail:
    return await _detail(session, rule_id)


@router.patch(
    "/v1/loyalty/rules/{rule_id}", response_model=RuleDetail, summary="Edit a rule's draft"
)
async def update_rule(
    rule_id: int, body: RuleUpdate, session: SessionDep, _: Marketer
) -> RuleDetail:
    await service.update_rule(
        session,
        rule_id=rule_id,
        name=body.name,
        priority=body.priority,
        budget=body.budget,
        clear_budget=body.clear_budget,
        definition=body.definition,
    )
    await session.commit()
    return await _detail(session, rule_id)


@router.post(
    "/v1/loyalty/rules/{rule_id}/publish",
    response_model=RuleDetail,
    summary="Publish the draft as a new immutable version, active from now",
)
async def publish_rule(rule_id: int, session: SessionDep, principal: Marketer) -> RuleDetail:
    await service.publish(session, rule_id=rule_id, author=principal.header_value())
    await session.commit()
    return await _detail(session, rule_id)


@router.post(
    "/v1/loyalty/rules/{rule_id}/archive",
    response_model=RuleDetail,
    summary="Stop a rule: its current version ends now",
)
async def archive_rule(rule_id: int, session: SessionDep, _: Marketer) -> RuleDetail:
    await service.archive(session, rule_id=rule_id)
    await session.commit()
    return await _detail(session, rule_id)


@router.post(
    "/v1/loyalty/rules/dry-run",
    response_model=DryRunRead,
    summary="Preview a draft rule's effect on past purchases before publishing it",
)
async def dry_run(
    body: DryRunCreate, session: SessionDep, request: Request, _: Marketer
) -> DryRunRead:
    result = await service.dry_run(
        session,
        definition=body.definition,
        rule_id=body.rule_id,
        priority=body.priority,
        default_rates=request.app.state.settings.points_per_unit,
        since=body.since,
        until=body.until,
    )
    return DryRunRead.model_validate(result)
