"""`python -m vafa.gateway`: the gateway's API process (uvicorn, uvloop, httptools)."""

from __future__ import annotations

import uvicorn

from vafa.gateway.config import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    uvicorn.run(
        "vafa.gateway.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
