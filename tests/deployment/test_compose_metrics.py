"""compose.yaml's metrics: every role's /metrics reachable on the compose network, none
published on the host, and the API's kept off the public proxy."""

from __future__ import annotations

import re

from agenttasks.metrics.exposition import OFFSETS
from agenttasks.settings import Settings
from tests.deployment.test_compose import ROOT, example_env, interpolated, our_services

NGINX = ROOT / "deploy" / "proxy" / "nginx.conf"


def test_every_role_serves_metrics_on_the_container_network_and_publishes_no_port() -> None:
    compose = interpolated(example_env())
    served = set()
    for name, service in our_services(compose):
        role = service["command"][0]
        if role == "migrate":
            continue
        assert "ports" not in service, f"{name} publishes a port on the host"
        settings = Settings.from_env({k: str(v) for k, v in service["environment"].items()})
        if role == "api":
            assert settings.host == "0.0.0.0", name  # its /metrics is on the API port
            continue
        # A container's 127.0.0.1 is its own: Prometheus in another container could not scrape.
        assert settings.metrics_host == "0.0.0.0", name
        assert settings.metrics_port > 0, name
        served.add(role)
    assert served == set(OFFSETS)


def test_the_proxy_refuses_metrics_from_outside() -> None:
    config = NGINX.read_text()
    block = re.search(r"location\s*=\s*/metrics\s*\{([^}]*)\}", config)
    assert block is not None, "no location for /metrics"
    # An exact match wins over `location /` wherever it stands: nothing is proxied for it.
    assert re.search(r"return\s+404\s*;", block.group(1))
    assert "proxy_pass" not in block.group(1)
