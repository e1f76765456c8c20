"""The dashboard's files come from the package with headers that keep data from running as code."""

from __future__ import annotations

from tests.integration.api_client import running_api


async def test_the_page_and_its_modules_are_served_with_a_strict_policy(
    database_url, nats_server
) -> None:
    async with running_api(database_url, nats_server) as api:
        page = await api.client.get("/")
        client = await api.client.get("/dashboard/client.js")
        missing = await api.client.get("/dashboard/no-such-file.js")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module"' in page.text
    assert client.status_code == 200
    assert client.headers["content-type"].startswith("text/javascript")
    assert "export" in client.text
    assert missing.status_code == 404
