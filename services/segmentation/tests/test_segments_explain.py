"""Property: for any definition (generated: every node kind, nested and negated), the
explanation's verdict is the evaluation's membership, and every composite node's result follows
from its children's."""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncSession

from vafa.kit.db import Database
from vafa.segmentation.segments import service

from .segments_fixtures import NOW, unique
from .test_segments_operators import CASES, make_world

LEAVES = [d for d, _ in CASES if not ({"all", "any", "not"} & d.keys())]

leaf = st.one_of(
    st.sampled_from(LEAVES),
    st.builds(
        lambda lo, span, salt: {"bucket": {"salt": salt, "from": lo, "to": min(99, lo + span)}},
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from(["a", "spring-test", "holdout"]),
    ),
    st.builds(
        lambda measure, op, v, within, negate: {
            "purchased": {"brand": "Acme"},
            "measure": measure,
            "op": op,
            "value": v,
            **({"within_days": within} if within else {}),
            "negate": negate,
        },
        st.sampled_from(["count", "quantity", "sum", "avg"]),
        st.sampled_from(["gte", "gt", "lte", "lt", "eq"]),
        st.sampled_from([0, 1, 2, 3, 6, 100_000, 200_000]),
        st.sampled_from([None, 2, 15, 30, 365]),
        st.booleans(),
    ),
)
definitions = st.recursive(
    leaf,
    lambda kids: st.one_of(
        st.lists(kids, max_size=3).map(lambda xs: {"all": xs}),
        st.lists(kids, max_size=3).map(lambda xs: {"any": xs}),
        kids.map(lambda x: {"not": x}),
    ),
    max_leaves=8,
)


def consistent(node: dict[str, Any]) -> None:
    kids = [k["result"] for k in node["children"]]
    if node["kind"] == "all":
        assert node["result"] is all(kids), node
    elif node["kind"] == "any":
        assert node["result"] is any(kids), node
    elif node["kind"] == "not":
        assert node["result"] is (not kids[0]), node
    for k in node["children"]:
        consistent(k)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(definition=definitions)
async def test_explanation_matches_the_verdict(db: Database, definition: dict[str, Any]) -> None:
    async with db.engine.connect() as conn:
        outer = await conn.begin()
        session = AsyncSession(bind=conn, join_transaction_mode="create_savepoint")
        try:
            world = await make_world(session)
            seg = await service.create_segment(
                session,
                key=unique("prop-"),
                name="p",
                description="",
                kind="dynamic",
                definition=definition,
                template=None,
                author="t",
                now=NOW,
            )
            rows, _ = await service.members(session, segment_id=seg.id, cursor=None, limit=1000)
            members = {r.customer_id for r in rows}
            for cid in world.values():
                x = await service.explain(session, segment_id=seg.id, customer_id=cid, now=NOW)
                assert x.verdict is (cid in members), (definition, cid)
                assert x.member is x.verdict
                assert x.tree is not None and x.tree.result is x.verdict
                consistent(_as_dict(x.tree))
        finally:
            await session.close()
            await outer.rollback()


def _as_dict(node: Any) -> dict[str, Any]:
    return {
        "kind": node.kind,
        "result": node.result,
        "children": [_as_dict(c) for c in node.children],
    }
