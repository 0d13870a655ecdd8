"""The client lifecycle through a client generated from latchkey's OpenAPI
document by openapi-python-client, against the real binary: create, list,
update with If-Match (and a stale one), authorize, roll with a grace
period, the org's tokens and audit log, delete."""

import datetime
import os
import sys

from latchkey_client import AuthenticatedClient, Client
from latchkey_client.api.authorize import authorize
from latchkey_client.api.org import audit, get_policy, list_org_tokens
from latchkey_client.api.tokens import create_token, delete_token, list_tokens, roll_token, update_token
from latchkey_client.models import (
    ApiName,
    AuthorizeRequest,
    CreateTokenRequest,
    ErrorBody,
    ErrorCodeName,
    GrantBody,
    ReasonName,
    SourceTypeName,
    TokenBody,
    TokenPage,
    RollRequest,
    UpdateTokenRequest,
)

base_url = os.environ["LATCHKEY_URL"]
client = AuthenticatedClient(base_url=base_url, token=os.environ["LATCHKEY_KEY"])
anonymous = Client(base_url=base_url)
source = "my-project.dataset.roads"


def check(condition, what):
    if not condition:
        sys.exit(f"python client: {what}")


created = create_token.sync_detailed(
    client=client,
    body=CreateTokenRequest(
        name="python client",
        allowed_apis=[ApiName.MAPS],
        grants=[GrantBody(connection_name="carto_dw", source=source)],
    ),
)
check(created.status_code == 201 and isinstance(created.parsed, TokenBody), f"create: {created.content!r}")
token = created.parsed
etag = created.headers["etag"]

page = list_tokens.sync(client=client, limit=10)
check(isinstance(page, TokenPage) and any(t.id == token.id for t in page.data), "the new token is listed")

updated = update_token.sync_detailed(
    token.id, client=client, body=UpdateTokenRequest(referers=["https://app.example.com/"]), if_match=etag
)
check(updated.status_code == 200 and updated.parsed.referers == ["https://app.example.com/"], "update")
check(updated.headers["etag"] != etag, "a new version")

stale = update_token.sync_detailed(token.id, client=client, body=UpdateTokenRequest(name="too late"), if_match=etag)
check(stale.status_code == 412, f"a stale If-Match: {stale.status_code}")
check(isinstance(stale.parsed, ErrorBody) and stale.parsed.code == ErrorCodeName.PRECONDITION_FAILED, "its code")


def ask(referer):
    return authorize.sync(
        client=anonymous,
        body=AuthorizeRequest(
            token=token.token,
            api=ApiName.MAPS,
            connection_name="carto_dw",
            source_type=SourceTypeName.TABLE,
            source=source,
            referer=referer,
        ),
    )


allowed = ask("https://app.example.com/map")
check(allowed.allowed and allowed.reason is None, f"allowed: {allowed}")
refused = ask("https://evil.example.net/")
check(not refused.allowed and refused.reason == ReasonName.REFERER_NOT_ALLOWED, f"refused: {refused}")

old_value = token.token
rolled = roll_token.sync_detailed(token.id, client=client, body=RollRequest(grace_seconds=600))
check(rolled.status_code == 200 and rolled.parsed.token != old_value, f"roll: {rolled.content!r}")
check(isinstance(rolled.parsed.previous_value_expires_at, datetime.datetime), "the grace period's end, a time")
check(ask("https://app.example.com/map").allowed, "the previous value, during its grace period")
token = rolled.parsed
check(ask("https://app.example.com/map").allowed, "the new value")

events = audit.sync(client=client, token=token.id)
actions = [event.action.value for event in events.data]
check(actions == ["token.rolled", "token.updated", "token.created"], f"the audit log: {actions}")
org_page = list_org_tokens.sync(client=client)
mine = [t for t in org_page.data if t.id == token.id]
check(len(mine) == 1 and mine[0].owner == "admin" and mine[0].token is None, "the org's tokens, without values")
policy = get_policy.sync(client=client)
check(policy.require_referers is False, f"the org policy: {policy}")

deleted = delete_token.sync_detailed(token.id, client=client)
check(deleted.status_code == 204, f"delete: {deleted.status_code}")
check(ask("https://app.example.com/map").reason == ReasonName.TOKEN_UNKNOWN, "a deleted token is unknown")
print("python client: create, list, update with If-Match, authorize, roll, audit, org tokens, delete: ok")
