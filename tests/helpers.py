from __future__ import annotations

from typing import Any

import httpx

from vafa.kit.testing.poll import eventually


async def customer_by_email(
    gateway: httpx.AsyncClient, email: str, *, within: float = 20
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await gateway.get("/v1/customers/lookup", params={"email": email})
        return r.json() if r.status_code == 200 else None

    return await eventually(probe, within=within, what=f"customer {email} in profile")


async def points_reach(
    gateway: httpx.AsyncClient, customer_id: str, expected: int, *, within: float = 20
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        r = await gateway.get(f"/v1/customers/{customer_id}/points")
        if r.status_code == 200 and r.json()["balance"] == expected:
            return r.json()
        return None

    return await eventually(probe, within=within, what=f"{customer_id} balance {expected}")
