"""compose.yaml, checked without Docker: against the Compose Specification's schema, and against
the code (settings it sets exist, roles it runs are commands, each role's NATS user, the NATS
config it mounts, the proxy's upstreams, what waits for what)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import referencing
import yaml
from jsonschema import Draft7Validator

from agenttasks.cli import build_parser
from agenttasks.servers.nats import nats_server_binary, password_env
from agenttasks.servers.secrets import ROLES
from agenttasks.settings import NATS_ROLES, Settings

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
COMPOSE = ROOT / "compose.yaml"
SCHEMA = HERE / "compose-spec.json"
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"
ENV_EXAMPLE = ROOT / "deploy" / "env.example"

# The NATS user each command connects as (roles.py: settings.nats_url_for(...)).
NATS_USER = {
    "api": ["api"],
    "relay": ["relay"],
    "project": ["projector"],
    "worker": ["worker"],
    "deliver": ["deliverer"],
    "maintain": [],  # Postgres only
    "migrate": ["relay", "worker"],
}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?[-?](?P<rest>[^}]*))?\}")


def raw() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def interpolated(environment: Mapping[str, str]) -> dict[str, Any]:
    """compose.yaml as compose sees it with `.env` = `environment` (defaults filled in)."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group("name")
        if name in environment:
            return environment[name]
        assert ":?" not in match.group(0), f"{name} is required and missing"
        return match.group("rest") or ""

    loaded = yaml.safe_load(INTERPOLATION.sub(substitute, COMPOSE.read_text()))
    assert isinstance(loaded, dict)
    return loaded


def example_env() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {name.strip(): value.strip() for name, value in pairs}


def commands() -> set[str]:
    parser = build_parser()
    subparsers = parser._subparsers
    assert subparsers is not None
    return set(subparsers._group_actions[0].choices or ())


def our_services(compose: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, service in compose["services"].items():
        if "agenttasks" in str(service.get("image", "")):
            yield name, service


class Recording(Mapping[str, str]):
    """An environment that notes every name Settings.from_env asks for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        self.asked.add(key)
        return self._values.get(key, default)

    def __contains__(self, key: object) -> bool:
        self.asked.add(str(key))
        return key in self._values

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("from_env must ask for names, not list the environment")

    def __len__(self) -> int:
        return len(self._values)


def test_the_vendored_schema_is_the_recorded_one() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (HERE / "compose-spec.SOURCE.md").read_text()


def test_compose_yaml_validates_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    # No retrieval of any remote $ref (NOTES: jsonschema's default registry would fetch it).
    validator = Draft7Validator(schema, registry=referencing.Registry())
    for document in (raw(), interpolated(example_env())):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def test_the_example_env_names_every_required_variable() -> None:
    required = {
        m.group("name") for m in INTERPOLATION.finditer(COMPOSE.read_text()) if ":?" in m.group(0)
    }
    assert required <= set(example_env()), required - set(example_env())
    interpolated(example_env())  # nothing required is missing


def test_every_role_it_runs_is_a_command_and_waits_for_migrate() -> None:
    compose = interpolated(example_env())
    known = commands()
    ran = set()
    for name, service in our_services(compose):
        command = service["command"]
        assert command[0] in known, f"{name} runs {command[0]!r}, not an agenttasks command"
        ran.add(command[0])
        if command[0] != "migrate":
            assert service["depends_on"]["migrate"] == {
                "condition": "service_completed_successfully"
            }, name
    assert {"migrate", "api", "relay", "project", "worker", "deliver", "maintain"} <= ran
    migrate = compose["services"]["migrate"]["depends_on"]
    assert migrate.pop("postgres") == {"condition": "service_healthy"}
    nats_nodes = nats_services(compose)
    assert set(migrate) == set(nats_nodes)
    assert all(v == {"condition": "service_healthy"} for v in migrate.values())


def test_two_of_every_replicated_role() -> None:
    compose = interpolated(example_env())
    count: dict[str, int] = {}
    for _, service in our_services(compose):
        role = service["command"][0]
        count[role] = count.get(role, 0) + service.get("deploy", {}).get("replicas", 1)
    assert count["migrate"] == 1
    for role in ("api", "relay", "project", "worker", "deliver", "maintain"):
        assert count[role] == 2, role


def test_every_agenttasks_variable_it_sets_is_a_setting_and_each_role_its_nats_user() -> None:
    env = example_env()
    compose = interpolated(env)
    for name, service in our_services(compose):
        environment = {
            k: str(v) for k, v in service.get("environment", {}).items() if v is not None
        }
        assert len(environment) == len(service.get("environment", {})), "no passthrough"
        recording = Recording(environment)
        settings = Settings.from_env(recording)  # refuses a bad value, by its name
        for variable in environment:
            assert variable.startswith(("AGENTTASKS_", "OPENAI_")), (name, variable)
            assert variable in recording.asked, f"{name} sets {variable}: no such setting"
        role = service["command"][0]
        for user in NATS_USER[role]:
            password = env[f"AGENTTASKS_NATS_{user.upper()}_PASSWORD"]
            servers = settings.nats_url_for(user).split(",")
            assert len(servers) == len(nats_services(compose)), (name, "every node listed")
            for url in servers:
                assert url.startswith(f"nats://{user}:{password}@nats-"), (name, url)
        assert settings.database_url is not None
        assert settings.jwt_secret is not None
        if role in ("relay", "migrate"):
            assert settings.stream_replicas == len(nats_services(compose)) == 3


def test_the_settings_role_list_is_the_servers() -> None:
    assert NATS_ROLES == ROLES


def nats_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if str(service.get("image", "")).startswith("nats:")
    }


def test_the_nats_config_it_mounts_passes_nats_server_t(tmp_path: Path) -> None:
    compose = interpolated(example_env())
    nodes = nats_services(compose)
    assert set(nodes) == {"nats-1", "nats-2", "nats-3"}
    for name, service in nodes.items():
        root = tmp_path / name  # the container's file system, as far as the config needs it
        for volume in service["volumes"]:
            source, target, *_ = volume.split(":")
            if source.startswith("./"):
                destination = root / target.lstrip("/")
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(ROOT / source, destination)
        assert service["command"][:1] == ["--config"]
        config = root / service["command"][1].lstrip("/")
        environment = {k: str(v) for k, v in service["environment"].items()}
        assert environment["NATS_SERVER_NAME"] == name
        assert set(password_env(dict.fromkeys(ROLES, "x"))) <= set(environment)
        result = subprocess.run(
            [nats_server_binary(), "-c", str(config), "-t"],
            env={"PATH": os.environ.get("PATH", ""), **environment},
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0, result.stderr or result.stdout
        text = config.read_text()
        assert "http_port: 8222" in text
        healthcheck = " ".join(service["healthcheck"]["test"])
        assert "http://127.0.0.1:8222/healthz?js-enabled-only=true" in healthcheck
        assert f"nats-route://{name}:6222" in text, "every node is in the routes"


def test_the_proxy_config_names_the_api_services() -> None:
    compose = interpolated(example_env())
    apis = {
        name: service for name, service in our_services(compose) if service["command"][0] == "api"
    }
    proxy = compose["services"]["proxy"]
    [mount] = [v for v in proxy["volumes"] if v.endswith(":/etc/nginx/nginx.conf:ro")]
    text = (ROOT / mount.split(":")[0]).read_text()
    upstreams = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", text, re.MULTILINE))
    expected = {
        f"{name}:{service['environment']['AGENTTASKS_PORT']}" for name, service in apis.items()
    }
    assert upstreams == expected
    assert set(proxy["depends_on"]) == set(apis)
    for directive in ("proxy_buffering off;", "proxy_read_timeout 1h;", "proxy_http_version 1.1;"):
        assert directive in text, directive
    for service in apis.values():
        assert service["environment"]["AGENTTASKS_HOST"] == "0.0.0.0"


def test_the_dockerfile_runs_agenttasks_as_a_non_root_user_from_two_stages() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert len(stages) == 2, "build stage, then a clean runtime stage"
    final = text.split("\nFROM ")[-1]
    [user] = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert not user.startswith(("root", "0")), user
    assert 'ENTRYPOINT ["agenttasks"]' in final
    assert "COPY --from=build /opt/agenttasks /opt/agenttasks" in final
    assert "pip install" not in final
    assert "apt-get" not in final
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    # A link in the package (src/agenttasks/nats.conf) is copied as a link: its target must be
    # in the build context and copied too, or the wheel silently leaves the file out.
    linked = [
        str(path.resolve().relative_to(ROOT))
        for path in (ROOT / "src").rglob("*")
        if path.is_symlink()
    ]
    assert "nats.conf" in linked
    [copy] = re.findall(r"^COPY (pyproject.toml .*) \./$", text, re.MULTILINE)
    for needed in ("pyproject.toml", "README.md", *linked):
        assert f"!{needed}" in ignore, needed
        assert needed in copy.split(), needed
    assert "!src/" in ignore


@pytest.mark.parametrize("service", ["api-1", "api-2"])
def test_the_api_healthcheck_asks_the_health_endpoint(service: str) -> None:
    from agenttasks.api.health import health

    compose = interpolated(example_env())
    check = " ".join(compose["services"][service]["healthcheck"]["test"])
    assert f"http://127.0.0.1:8000{next(iter(health.paths))}" in check


def test_the_schema_check_catches_a_broken_file() -> None:
    validator = Draft7Validator(json.loads(SCHEMA.read_text()), registry=referencing.Registry())
    broken = raw()
    broken["services"]["relay"]["depends_on"]["migrate"]["condition"] = "service_finished"
    broken["services"]["worker"]["restrat"] = "always"
    paths = {tuple(e.absolute_path) for e in validator.iter_errors(broken)}
    assert ("services", "relay", "depends_on") in paths  # an enum inside a oneOf
    assert ("services", "worker") in paths
