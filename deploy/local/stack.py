"""Runs the Vafa stack on this machine: every service's api and worker and the gateway, as
background processes under supervisord, after creating topics and migrating databases.

    python deploy/local/stack.py up [--restart]   start (or, with --restart, reload code)
    python deploy/local/stack.py down             stop the app processes
    python deploy/local/stack.py status           one line per process
    python deploy/local/stack.py ctl ARGS...      supervisorctl, e.g. `ctl signal KILL loyalty-worker`

The infrastructure (PostgreSQL, Kafka) is deploy/local/infra.sh's business; `make run` calls
both. Secrets for local use are generated once into .local/vafa.env and shown in the summary.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("VAFA_STATE_DIR", ROOT / ".local"))
ENV_FILE = STATE / "vafa.env"
RUN = STATE / "run"
LOGS = STATE / "logs"
CONF = STATE / "supervisord.conf"
PY = Path(sys.executable)

SERVICES = {
    "profile": 8101,
    "loyalty": 8102,
    "segmentation": 8103,
    "messaging": 8104,
    "ticketing": 8105,
    "inventory": 8106,
}


def ensure_env() -> dict[str, str]:
    """Local secrets, generated once. Real deployments set these from a secret store."""
    STATE.mkdir(parents=True, exist_ok=True)
    values: dict[str, str] = {}
    if ENV_FILE.exists():
        for line in ENV_FILE.read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                k, v = line.split("=", 1)
                values[k] = v
    defaults = {
        "VAFA_ADMIN_API_KEY": "vafa_admin_" + secrets.token_urlsafe(24),
        "VAFA_JWT_SECRET": secrets.token_urlsafe(32),
        "VAFA_INTERNAL_TOKEN": secrets.token_urlsafe(32),
        "VAFA_SHOPIFY_WEBHOOK_SECRET": secrets.token_hex(24),
        "VAFA_WOOCOMMERCE_WEBHOOK_SECRET": secrets.token_hex(24),
        "VAFA_STANDARD_WEBHOOK_SECRET": "whsec_"
        + base64.b64encode(secrets.token_bytes(24)).decode(),
    }
    changed = False
    for k, v in defaults.items():
        if k not in values:
            values[k] = v
            changed = True
    if changed:
        ENV_FILE.write_text(
            "# Local secrets for `make run`, generated once; delete the file to rotate.\n"
            + "".join(f"{k}={v}\n" for k, v in sorted(values.items()))
        )
        ENV_FILE.chmod(0o600)
    return values


def migrate() -> None:
    from vafa.kit.kafka import ensure_topics
    from vafa.kit.migrations import upgrade
    from vafa.kit.settings import KafkaSettings

    created = asyncio.run(ensure_topics(KafkaSettings()))
    if created:
        print(f"  topics created: {len(created)}")
    for name in SERVICES:
        url = os.environ.get(
            f"VAFA_{name.upper()}_DATABASE_URL",
            f"postgresql+asyncpg://vafa:vafa@127.0.0.1:55432/vafa_{name}",
        )
        upgrade(ROOT / "services" / name, url)
    print("  databases migrated")


def programs() -> dict[str, list[str]]:
    progs = {"gateway": [str(PY), "-m", "vafa.gateway"]}
    for name in SERVICES:
        progs[f"{name}-api"] = [str(PY), "-m", f"vafa.{name}", "api"]
        progs[f"{name}-worker"] = [str(PY), "-m", f"vafa.{name}", "worker"]
    return progs


def write_conf() -> None:
    RUN.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    parts = [
        f"""[supervisord]
logfile={LOGS}/supervisord.log
pidfile={RUN}/supervisord.pid
childlogdir={LOGS}
directory={ROOT}

[unix_http_server]
file={RUN}/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{RUN}/supervisor.sock
"""
    ]
    for name, cmd in programs().items():
        parts.append(
            f"""
[program:{name}]
command={" ".join(cmd)}
directory={ROOT}
autostart=true
autorestart=true
startsecs=2
startretries=10
stopsignal=TERM
stopwaitsecs=20
killasgroup=true
redirect_stderr=true
stdout_logfile={LOGS}/{name}.log
stdout_logfile_maxbytes=20MB
stdout_logfile_backups=2
"""
        )
    CONF.write_text("".join(parts))


def supervisord_running() -> bool:
    pidfile = RUN / "supervisord.pid"
    if not pidfile.exists():
        return False
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (ValueError, ProcessLookupError, PermissionError):
        return False


def ctl(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PY.parent / "supervisorctl"), "-c", str(CONF), *args],
        text=True,
        capture_output=True,
        check=check,
    )


def wait_ready(timeout: float = 120.0) -> None:
    urls = {f"{n}-api": f"http://127.0.0.1:{p}/readyz" for n, p in SERVICES.items()}
    urls["gateway"] = f"http://127.0.0.1:{os.environ.get('VAFA_GATEWAY_PORT', '8000')}/readyz"
    pending = dict(urls)
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        for name, url in list(pending.items()):
            try:
                with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback only
                    if r.status == 200:
                        del pending[name]
            except OSError:
                pass
        if pending:
            time.sleep(0.5)
    if pending:
        print(ctl("status").stdout)
        names = ", ".join(pending)
        sys.exit(f"not ready after {timeout:.0f}s: {names}. Logs: {LOGS}/<name>.log")


def up(restart: bool) -> None:
    env = ensure_env()
    os.environ.update({k: v for k, v in env.items() if k not in os.environ})
    migrate()
    write_conf()
    if supervisord_running():
        ctl("reread")
        ctl("update")
        if restart:
            ctl("restart", "all")
            print("  app processes restarted")
        else:
            ctl("start", "all")
            print("  app processes already running")
    else:
        subprocess.run(
            [str(PY.parent / "supervisord"), "-c", str(CONF)], check=True, env=os.environ.copy()
        )
        print("  app processes started")
    wait_ready()
    summary(env)


def summary(env: dict[str, str]) -> None:
    port = os.environ.get("VAFA_GATEWAY_PORT", "8000")
    print(
        f"""
Vafa is running.
  API and docs     http://127.0.0.1:{port}/docs   (OpenAPI: /openapi.json)
  Admin API key    {env["VAFA_ADMIN_API_KEY"]}
  Webhooks         POST http://127.0.0.1:{port}/v1/webhooks/shopify | woocommerce | standard
                   secrets in {ENV_FILE}
  Try it           make demo    (signed Persian and Armenian shop orders, then what came of them)
                   curl -H "Authorization: Bearer $VAFA_ADMIN_API_KEY" \\
                        "http://127.0.0.1:{port}/v1/customers/lookup?email=..."
  Processes        python deploy/local/stack.py status   (logs in {LOGS})
  Stop             make stop
"""
    )


def main() -> None:
    cmd = sys.argv[1:] or ["status"]
    if cmd[0] == "up":
        up(restart="--restart" in cmd)
    elif cmd[0] == "down":
        if supervisord_running():
            ctl("shutdown")
            for _ in range(120):
                if not supervisord_running():
                    break
                time.sleep(0.25)
        print("app processes stopped")
    elif cmd[0] == "status":
        if not supervisord_running():
            print("app processes: not running")
            sys.exit(3)
        out = ctl("status")
        print(out.stdout, end="")
        sys.exit(0 if out.returncode == 0 else 3)
    elif cmd[0] == "ctl":
        out = ctl(*cmd[1:])
        print(out.stdout, end="", file=sys.stdout if out.returncode == 0 else sys.stderr)
        sys.exit(out.returncode)
    elif cmd[0] == "env":
        ensure_env()
        print(ENV_FILE)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
