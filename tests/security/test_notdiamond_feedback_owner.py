"""Not Diamond's session feedback keeps native feedback's rule: an inference key does not
replace feedback a person or a management key gave (``routing.feedback.feedback_replace_check``,
reused by ``routing.notdiamond.feedback_record``; the tenth review)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from accounts.models import ApiKey, KeyScope
from routing import notdiamond
from routing.models import SelectionSession
from tests.factories import key_client, key_make, organization_make
from tests.migration.test_notdiamond import FEEDBACK, PROVIDERS, STRONG, WEAK


def _session(organization: Any, key: ApiKey) -> SelectionSession:
    return SelectionSession.objects.create(
        id=uuid.uuid4(),
        organization=organization,
        router="router/nd",
        chosen=WEAK,
        candidates=[WEAK, STRONG],
        key=key,
    )


def _report(session: SelectionSession, value: int) -> dict[str, Any]:
    return {
        "session_id": str(session.id),
        "provider": PROVIDERS[0],
        "feedback": {"accuracy": value},
    }


@pytest.mark.django_db
def test_an_inference_key_does_not_replace_a_persons_or_a_management_keys_session_feedback() -> (
    None
):
    organization = organization_make(name="Feedback owners")
    selector = key_make(organization, name="selector")
    row = ApiKey.objects.get(prefix=selector[:16])
    by_person, by_management, by_itself = (_session(organization, row) for _ in range(3))
    notdiamond.feedback_record(organization=organization, body=_report(by_person, 1))
    management = key_client(key_make(organization, KeyScope.MANAGE))
    given = management.post(FEEDBACK, _report(by_management, 1), format="json")
    own = key_client(selector).post(FEEDBACK, _report(by_itself, 1), format="json")

    over_person = key_client(selector).post(FEEDBACK, _report(by_person, 0), format="json")
    over_management = key_client(selector).post(FEEDBACK, _report(by_management, 0), format="json")
    over_own = key_client(selector).post(FEEDBACK, _report(by_itself, 0), format="json")
    over_by_person = management.post(FEEDBACK, _report(by_person, 0), format="json")

    assert given.status_code == own.status_code == 200
    # 200 on the old code, which replaced them.
    assert over_person.status_code == over_management.status_code == 409, over_person.content
    error = over_person.json()["error"]
    assert error["param"] == "session_id" and "A person gave feedback" in error["message"]
    assert "A management key gave" in over_management.json()["error"]["message"]
    assert SelectionSession.objects.get(id=by_management.id).feedback == {"accuracy": 1}
    # Its own feedback a key replaces; a management key replaces a person's.
    assert over_own.status_code == over_by_person.status_code == 200
    assert SelectionSession.objects.get(id=by_person.id).feedback == {"accuracy": 0}
