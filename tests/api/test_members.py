"""Members over the API: PUT as `members import` does one row, GET with points, the ledger."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from starlette.testclient import TestClient

from loyalty import ledger
from loyalty.app import App
from loyalty.members import get_member
from loyalty.models import Consent, Referral
from tests.api.support import problems
from tests.factories import make_member


def post_points(app: App, external_id: str, *deltas: int, expires_in_days: int = 30) -> None:
    with app.database.transaction() as session:
        member = get_member(session, external_id)
        for n, delta in enumerate(deltas):
            now = app.clock.now()
            ledger.apply(
                session,
                member,
                "earn" if delta > 0 else "redeem",
                delta,
                key=f"test:{external_id}:{n}",
                reason=f"movement {n}",
                now=now,
                thresholds=app.settings.tier_thresholds,
                expires_at=now + timedelta(days=expires_in_days + n) if delta > 0 else None,
            )


def test_put_creates_then_updates_a_member_like_an_import_row(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    # When a member is put with a profile, one field invalid
    profile = {
        "email": " Ada@Example.COM ",
        "phone": "not a phone",
        "first_name": "Ada",
        "locale": "pl_pl",
        "time_zone": "Europe/Warsaw",
        "birthday": "--02-29",
        "email_consent": True,
        "attributes": {"vip": True, "email": "taken"},
    }
    created = client.put("/api/v1/members/c-1", json=profile, headers=auth)

    # Then it is created without the invalid field, and the warnings name the fields
    assert created.status_code == 201
    body = created.json()
    assert (body["email"], body["phone"], body["locale"], body["birthday"]) == (
        "ada@example.com",
        None,
        "pl-PL",
        "--02-29",
    )
    assert body["attributes"] == {"vip": True} and body["email_consent"] is True
    assert [w["field"] for w in body["warnings"]] == ["attributes.email", "phone"]
    assert (body["created"], body["changed"]) == (True, True)
    assert body["referral_link"] == f"http://127.0.0.1:8000/r/{body['referral_code']}"

    # When it is put again: unchanged; then with a change, null clearing a field
    same = client.put("/api/v1/members/c-1", json={"first_name": "Ada"}, headers=auth)
    assert same.status_code == 200 and same.json()["changed"] is False
    changed = client.put(
        "/api/v1/members/c-1",
        json={"first_name": None, "email_consent": False, "attributes": {"tier_note": "x"}},
        headers=auth,
    )
    assert changed.status_code == 200
    body = changed.json()
    assert (body["first_name"], body["email_consent"], body["changed"]) == (None, False, True)
    assert body["attributes"] == {"vip": True, "tier_note": "x"}
    assert body["email"] == "ada@example.com"  # absent fields stay

    # Then the consent log holds both changes with the source `api`
    with app.database.sessions() as session:
        log = session.execute(select(Consent.granted, Consent.source).order_by(Consent.id)).all()
    assert log == [(True, "api"), (False, "api")]


def test_put_links_a_referrer_once_and_warns_about_unknown_codes(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    referrer = make_member(app, external_id="r-1", email="r@example.com")
    unknown = client.put(
        "/api/v1/members/c-1", json={"referred_by_code": "NOSUCHCODE"}, headers=auth
    ).json()
    assert unknown["warnings"] == [
        {"field": "referred_by_code", "reason": "no member has referral code 'NOSUCHCODE'"}
    ]
    linked = client.put(
        "/api/v1/members/c-1",
        json={"referred_by_code": referrer.referral_code.lower()},
        headers=auth,
    )
    assert linked.status_code == 200 and linked.json()["changed"] is True
    with app.database.sessions() as session:
        [referral] = session.scalars(select(Referral)).all()
        assert (referral.referrer_id, referral.status) == (referrer.id, "pending")


def test_put_refuses_erased_members_and_unusable_values_naming_them(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    make_member(app, external_id="gone", erased_at=app.clock.now())
    erased = client.put("/api/v1/members/gone", json={"email": "x@example.com"}, headers=auth)
    assert erased.status_code == 409
    assert problems(erased)[0]["loc"] == ["path", "external_id"]

    nul = client.put("/api/v1/members/c-1", json={"first_name": "a\u0000"}, headers=auth)
    assert nul.status_code == 422 and problems(nul)[0]["loc"] == ["body", "first_name"]
    typo = client.put("/api/v1/members/c-1", json={"emial": "x@example.com"}, headers=auth)
    assert typo.status_code == 422 and problems(typo)[0]["loc"] == ["body", "emial"]
    wrong_type = client.put("/api/v1/members/c-1", json={"email_consent": [1]}, headers=auth)
    assert wrong_type.status_code == 422
    assert problems(wrong_type)[0]["loc"] == ["body", "email_consent"]
    spaced = client.put("/api/v1/members/%20c-1", json={}, headers=auth)
    assert spaced.status_code == 422 and problems(spaced)[0]["loc"] == ["path", "external_id"]


def test_get_shows_points_tier_next_expiry_and_referral_link(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    make_member(app, external_id="m-1")
    post_points(app, "m-1", 100, 40, -30)
    answer = client.get("/api/v1/members/m-1", headers=auth)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["points"], body["redeemable_points"], body["lifetime_points"]) == (110, 110, 140)
    expiry_at = (app.clock.now() + timedelta(days=30)).isoformat().replace("+00:00", "Z")
    assert body["next_expiry"] == {"points": 70, "at": expiry_at}
    assert body["tier"] == "bronze"
    assert body["referral_link"].endswith(f"/r/{body['referral_code']}")
    assert body["rewards"] == [] or all(r["cost"] <= 110 for r in body["rewards"])


def test_get_answers_unknown_and_erased_members_naming_the_path(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    make_member(app, external_id="gone", erased_at=app.clock.now())
    for path, status in [
        ("/api/v1/members/nobody", 404),
        ("/api/v1/members/gone", 410),
        ("/api/v1/members/nobody/ledger", 404),
        ("/api/v1/members/a%00b", 422),
        ("/api/v1/members/a%0Ab/ledger", 404),  # a line break still reaches the API
    ]:
        answer = client.get(path, headers=auth)
        assert answer.status_code == status, path
        assert problems(answer)[0]["loc"] == ["path", "external_id"]


def test_the_ledger_comes_newest_first_a_page_at_a_time(
    app: App, client: TestClient, auth: dict[str, str]
) -> None:
    make_member(app, external_id="m-1")
    post_points(app, "m-1", *range(1, 8))
    seen: list[int] = []
    url = "/api/v1/members/m-1/ledger?limit=3"
    pages = 0
    while True:
        page = client.get(url, headers=auth).json()
        pages += 1
        seen += [entry["delta"] for entry in page["entries"]]
        if page["next_before"] is None:
            break
        url = f"/api/v1/members/m-1/ledger?limit=3&before={page['next_before']}"
    assert seen == [7, 6, 5, 4, 3, 2, 1] and pages == 3
    bad = client.get("/api/v1/members/m-1/ledger?limit=0", headers=auth)
    assert bad.status_code == 422 and problems(bad)[0]["loc"] == ["query", "limit"]


def test_the_openapi_document_and_the_docs_page_answer(client: TestClient) -> None:
    document = client.get("/api/v1/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert {"/events", "/members/{external_id}", "/members/{external_id}/ledger"} <= set(paths)
    assert document.json()["components"]["schemas"]["EventBody"]["anyOf"]
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200 and "/members/{external_id}/ledger" in docs.text
    assert "/api/v1/openapi.json" in docs.text and "<script" not in docs.text
