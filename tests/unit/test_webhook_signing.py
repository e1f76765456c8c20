"""Our Standard Webhooks signatures verify with the `standardwebhooks` package, and only as sent."""

from __future__ import annotations

import time

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from agenttasks.application.webhooks import new_secret, task_url_secret
from agenttasks.webhooks.signing import headers


def test_a_signed_body_verifies_and_a_changed_one_does_not() -> None:
    secret = new_secret()
    body = b'{"type":"task.completed","data":{"task_id":"t"}}'
    sent = headers(secret, "agenttasks:42", int(time.time()), body)
    assert Webhook(secret).verify(body, sent) == {
        "type": "task.completed",
        "data": {"task_id": "t"},
    }
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace(b't"}', b'u"}'), sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, {**sent, "webhook-id": "agenttasks:43"})


def test_each_user_has_their_own_task_url_secret() -> None:
    service = "s" * 32
    assert task_url_secret(service, "alice") == task_url_secret(service, "alice")
    assert task_url_secret(service, "alice") != task_url_secret(service, "bob")
    assert task_url_secret(service, "alice") != task_url_secret("t" * 32, "alice")
    Webhook(task_url_secret(service, "alice"))  # a secret the package accepts
