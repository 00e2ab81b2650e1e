"""API tokens: hashed storage, revocation, rotation, last use, and the per-client rate limit."""

import datetime
import hashlib
import json
import logging
import re
import subprocess

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from categorisation import authentication
from categorisation.authentication import clear_token_cache
from categorisation.clients import ApiClientExists, ApiTokenNotFound, create_api_client, revoke_api_tokens
from categorisation.models import ApiToken
from categorisation.throttling import ClientRateThrottle
from tests.factories import created_event, expense_payload
from tests.support.stack import REPO, VENV_BIN, claimed_redis_database, free_port, service_env

pytestmark = pytest.mark.django_db

PREDICTIONS = "/api/v1/predictions"
EVENTS = "/api/v1/events"
CLIENT = "/api/v1/client"
KEY_FORMAT = re.compile(r"^ec_[0-9a-f]{12}_[0-9a-f]{64}$")
# The start of a 60-second window, so a test controls how far into the window each request falls.
WINDOW_START = 1_000_020.0


def _client_with(key: str, scheme: str = "Token") -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
    return client


def _predict(client: APIClient):
    return client.post(PREDICTIONS, expense_payload(), format="json")


@pytest.fixture
def empty_rate_limit_cache():
    """Start with no rate-limit counts and the cache marked reachable, and leave it so."""
    cache.clear()
    ClientRateThrottle._cache_down_until = 0.0
    yield
    cache.clear()
    ClientRateThrottle._cache_down_until = 0.0


@pytest.fixture
def frozen_clock(monkeypatch):
    """Set the throttle's clock: call the returned function with seconds since WINDOW_START."""

    def set_time(seconds: float) -> None:
        monkeypatch.setattr(ClientRateThrottle, "timer", staticmethod(lambda: WINDOW_START + seconds))

    set_time(0.0)
    return set_time


def _rates(**rates: str) -> dict:
    return {
        **api_settings.user_settings,
        "DEFAULT_THROTTLE_RATES": {"predictions": "6000/min", "events": "6000/min"} | rates,
    }


def test_key_stored_only_as_hash():
    key = create_api_client(name="acme")

    token = ApiToken.objects.get(client__username="acme")
    assert KEY_FORMAT.match(key)
    assert token.token_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(token.prefix + "_")
    stored = [str(value) for value in ApiToken.objects.values_list().get()]
    assert all(key not in value for value in stored)


def test_client_user_has_no_password():
    create_api_client(name="acme")

    assert not get_user_model().objects.get(username="acme").has_usable_password()


@pytest.mark.parametrize("scheme", ["Token", "Bearer", "token"])
def test_valid_token_accepted(scheme):
    key = create_api_client(name="acme")

    response = _predict(_client_with(key, scheme))

    assert response.status_code == 200, response.content


def test_revoked_token_rejected_with_json_401():
    key = create_api_client(name="acme")
    revoke_api_tokens(client_name="acme")

    response = _predict(_client_with(key))

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    error = response.json()["error"]
    assert error["code"] == "authentication_failed"
    assert "revoked" in error["message"]
    assert key not in response.content.decode()


@pytest.mark.parametrize(
    "header",
    [
        "Token ec_000000000000_" + "0" * 64,
        "Token not-a-real-token",
        "Bearer " + "x" * 500,
        "Token two parts",
        "Token",
    ],
)
def test_invalid_token_rejected_with_json_401(header):
    create_api_client(name="acme")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)

    response = _predict(client)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert "create_api_token" in response.json()["error"]["message"]


def test_missing_token_rejected_with_json_401():
    response = _predict(APIClient())

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


def test_disabled_client_rejected():
    key = create_api_client(name="acme")
    get_user_model().objects.filter(username="acme").update(is_active=False)

    response = _predict(_client_with(key))

    assert response.status_code == 401
    assert "disabled" in response.json()["error"]["message"]


@pytest.fixture
def token_cache_clock(monkeypatch, settings):
    """Cache tokens for 1 s on a clock the test moves: call the returned function with seconds."""
    settings.API_TOKEN_CACHE_SECONDS = 1.0
    now = [500.0]
    monkeypatch.setattr(authentication.time, "monotonic", lambda: now[0])

    def set_clock(seconds: float) -> None:
        now[0] = 500.0 + seconds

    return set_clock


def test_cached_token_makes_no_query(token_cache_clock, django_assert_num_queries):
    client = _client_with(create_api_client(name="acme"))
    client.get(CLIENT)

    with django_assert_num_queries(0):
        assert client.get(CLIENT).status_code == 200


def test_token_revoked_elsewhere_expires_from_cache(token_cache_clock):
    key = create_api_client(name="acme")
    assert _predict(_client_with(key)).status_code == 200
    # What revoke_api_tokens does in another web process: this process's cache is not emptied.
    ApiToken.objects.update(revoked_at=timezone.now())

    token_cache_clock(0.5)
    assert _predict(_client_with(key)).status_code == 200
    token_cache_clock(1.0)
    response = _predict(_client_with(key))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]["message"]


def test_revoke_here_takes_effect_at_once(token_cache_clock):
    key = create_api_client(name="acme")
    assert _predict(_client_with(key)).status_code == 200

    revoke_api_tokens(client_name="acme")

    assert _predict(_client_with(key)).status_code == 401


def test_disabled_client_takes_effect_at_once(token_cache_clock):
    key = create_api_client(name="acme")
    assert _predict(_client_with(key)).status_code == 200

    client = get_user_model().objects.get(username="acme")
    client.is_active = False
    client.save()

    assert "disabled" in _predict(_client_with(key)).json()["error"]["message"]


def test_token_cache_emptied_again_on_commit(token_cache_clock, django_capture_on_commit_callbacks):
    key = create_api_client(name="acme")
    assert _predict(_client_with(key)).status_code == 200
    client = get_user_model().objects.get(username="acme")

    with django_capture_on_commit_callbacks(execute=True):
        client.is_active = False
        client.save()
        # What another thread could do before the commit: cache the row as it was.
        authentication._token_cache.entries["stale"] = (float("inf"), ApiToken.objects.get())

    assert authentication._token_cache.entries == {}


def test_unknown_key_is_not_cached(token_cache_clock, django_assert_num_queries):
    create_api_client(name="acme")
    client = _client_with("ec_000000000000_" + "0" * 64)
    client.get(CLIENT)

    with django_assert_num_queries(1):
        assert client.get(CLIENT).status_code == 401


def test_no_token_cache_when_disabled(settings, django_assert_num_queries):
    settings.API_TOKEN_CACHE_SECONDS = 0
    client = _client_with(create_api_client(name="acme"))
    client.get(CLIENT)

    with django_assert_num_queries(1):
        assert client.get(CLIENT).status_code == 200


def test_rotation_keeps_old_token_until_revoked():
    old_key = create_api_client(name="acme")
    new_key = create_api_client(name="acme", rotate=True)
    old_prefix = old_key.rsplit("_", 1)[0]

    assert _predict(_client_with(old_key)).status_code == 200
    assert _predict(_client_with(new_key)).status_code == 200

    assert revoke_api_tokens(prefix=old_prefix) == [old_prefix]
    assert _predict(_client_with(old_key)).status_code == 401
    assert _predict(_client_with(new_key)).status_code == 200


def test_second_token_needs_rotate():
    create_api_client(name="acme")

    with pytest.raises(ApiClientExists, match="--rotate"):
        create_api_client(name="acme")


def test_new_token_allowed_after_all_revoked():
    create_api_client(name="acme")
    revoke_api_tokens(client_name="acme")

    key = create_api_client(name="acme")

    assert _predict(_client_with(key)).status_code == 200


def test_staff_account_cannot_be_client():
    get_user_model().objects.create_user(username="alice", password="pw", is_staff=True)

    with pytest.raises(ValueError, match="staff account"):
        create_api_client(name="alice")


def test_revoke_unknown_prefix_raises():
    with pytest.raises(ApiTokenNotFound, match="ec_ffffffffffff"):
        revoke_api_tokens(prefix="ec_ffffffffffff")


def test_last_used_at_written_once_a_minute():
    key = create_api_client(name="acme")
    token = ApiToken.objects.get()
    assert token.last_used_at is None

    _predict(_client_with(key))
    token.refresh_from_db()
    first_use = token.last_used_at
    assert first_use is not None

    _predict(_client_with(key))
    token.refresh_from_db()
    assert token.last_used_at == first_use

    two_minutes_ago = timezone.now() - datetime.timedelta(minutes=2)
    ApiToken.objects.update(last_used_at=two_minutes_ago)
    # As when this process's cached token has expired.
    clear_token_cache()
    _predict(_client_with(key))
    token.refresh_from_db()
    assert token.last_used_at > two_minutes_ago + datetime.timedelta(minutes=1)


def test_two_clients_authenticate_as_themselves():
    acme_key = create_api_client(name="acme")
    globex_key = create_api_client(name="globex")
    revoke_api_tokens(client_name="acme")

    assert _predict(_client_with(acme_key)).status_code == 401
    assert _predict(_client_with(globex_key)).status_code == 200
    assert ApiToken.objects.get(client__username="globex").last_used_at is not None
    assert ApiToken.objects.get(client__username="acme").last_used_at is None


def test_client_endpoint_names_the_token_owner():
    acme_key = create_api_client(name="acme")
    globex_key = create_api_client(name="globex")

    acme = _client_with(acme_key).get(CLIENT)
    globex = _client_with(globex_key).get(CLIENT)

    assert acme.status_code == 200
    assert acme.json() == {"client": "acme", "token_prefix": ApiToken.objects.get(client__username="acme").prefix}
    assert globex.json()["client"] == "globex"
    assert APIClient().get(CLIENT).status_code == 401


def test_commands_create_and_revoke(capsys):
    call_command("create_api_token", "acme")
    key = capsys.readouterr().out.strip()
    call_command("create_api_token", "acme", "--rotate")
    rotated_key = capsys.readouterr().out.strip()

    call_command("revoke_api_token", "--prefix", key.rsplit("_", 1)[0])

    assert capsys.readouterr().out.strip() == f"Revoked {key.rsplit('_', 1)[0]}"
    assert _predict(_client_with(key)).status_code == 401
    assert _predict(_client_with(rotated_key)).status_code == 200
    with pytest.raises(CommandError, match="already has an active token"):
        call_command("create_api_token", "acme")


def test_revoke_command_accepts_a_whole_key(capsys):
    key = create_api_client(name="acme")

    call_command("revoke_api_token", "--prefix", key)

    output = capsys.readouterr().out
    assert output.strip() == f"Revoked {key.rsplit('_', 1)[0]}"
    assert key not in output
    assert _predict(_client_with(key)).status_code == 401


def test_revoke_command_by_client():
    create_api_client(name="acme")
    create_api_client(name="acme", rotate=True)

    call_command("revoke_api_token", "--client", "acme")

    assert not ApiToken.objects.active().exists()
    with pytest.raises(CommandError, match="No active API token"):
        call_command("revoke_api_token", "--client", "acme")


def test_throttle_rejects_with_json_429(empty_rate_limit_cache, frozen_clock):
    client = _client_with(create_api_client(name="acme"))

    with override_settings(REST_FRAMEWORK=_rates(predictions="2/min")):
        statuses = [_predict(client).status_code for _ in range(2)]
        frozen_clock(10.0)
        throttled = _predict(client)

    assert statuses == [200, 200]
    assert throttled.status_code == 429
    # Two requests in this window with a limit of 2: the next fits once the next window has
    # started (50 s) and this window's weight has halved (30 s more).
    assert throttled["Retry-After"] == "80"
    error = throttled.json()["error"]
    assert error["code"] == "throttled"
    assert "2 predictions requests per minute" in error["message"]
    assert error["fields"] == []


def test_throttle_allows_after_retry_after(empty_rate_limit_cache, frozen_clock):
    client = _client_with(create_api_client(name="acme"))

    with override_settings(REST_FRAMEWORK=_rates(predictions="2/min")):
        [_predict(client) for _ in range(2)]
        frozen_clock(89.0)
        too_early = _predict(client)
        frozen_clock(90.5)
        after_wait = _predict(client)

    assert too_early.status_code == 429
    assert too_early["Retry-After"] == "1"
    assert after_wait.status_code == 200


def test_throttle_counts_each_client_and_scope(empty_rate_limit_cache, frozen_clock):
    acme = _client_with(create_api_client(name="acme"))
    globex = _client_with(create_api_client(name="globex"))

    with override_settings(REST_FRAMEWORK=_rates(predictions="1/min")):
        assert _predict(acme).status_code == 200
        assert _predict(acme).status_code == 429
        assert _predict(globex).status_code == 200
        events = acme.post(EVENTS, [created_event()], format="json")

    assert events.status_code == 202


def test_throttle_counts_rotated_tokens_together(empty_rate_limit_cache, frozen_clock):
    first = _client_with(create_api_client(name="acme"))
    second = _client_with(create_api_client(name="acme", rotate=True))

    with override_settings(REST_FRAMEWORK=_rates(predictions="1/min")):
        assert _predict(first).status_code == 200
        assert _predict(second).status_code == 429


def test_throttle_fails_open_when_cache_unreachable(empty_rate_limit_cache, caplog):
    client = _client_with(create_api_client(name="acme"))
    # A free loopback port: nothing listens there, so every Redis call is refused.
    closed_redis = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }

    with override_settings(CACHES=closed_redis, REST_FRAMEWORK=_rates(predictions="1/min")):
        with caplog.at_level(logging.WARNING, logger="categorisation.throttling"):
            statuses = [_predict(client).status_code for _ in range(3)]

    assert statuses == [200, 200, 200]
    warnings = [record for record in caplog.records if record.name == "categorisation.throttling"]
    assert len(warnings) == 1
    assert "not rate limited" in warnings[0].getMessage()


def test_throttle_counts_in_redis(empty_rate_limit_cache):
    client = _client_with(create_api_client(name="acme"))

    with claimed_redis_database() as url:
        redis_cache = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}}
        with override_settings(CACHES=redis_cache, REST_FRAMEWORK=_rates(predictions="2/min")):
            statuses = [_predict(client).status_code for _ in range(3)]

    # The third request may fall into a new window, where the earlier two still weigh almost fully.
    assert statuses == [200, 200, 429]


def _staff_client(client, *, group: str | None = None, superuser: bool = False):
    user_model = get_user_model()
    if superuser:
        user = user_model.objects.create_superuser(username="root", password="pw")
    else:
        user = user_model.objects.create_user(username=f"{group}-user", password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


def test_token_admin_needs_login(client):
    response = client.get(reverse("admin:categorisation_apitoken_changelist"))

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("group", ["support", "ML"])
def test_token_admin_refused_to_groups(client, group):
    create_api_client(name="acme")
    token = ApiToken.objects.get()
    staff = _staff_client(client, group=group)

    assert staff.get(reverse("admin:categorisation_apitoken_changelist")).status_code == 403
    assert staff.get(reverse("admin:categorisation_apitoken_change", args=[token.pk])).status_code == 403
    assert b"API tokens" not in staff.get(reverse("admin:index")).content


def test_token_admin_lists_prefix_not_hash(client):
    create_api_client(name="acme")
    token = ApiToken.objects.get()
    admin = _staff_client(client, superuser=True)

    listing = admin.get(reverse("admin:categorisation_apitoken_changelist"))
    detail = admin.get(reverse("admin:categorisation_apitoken_change", args=[token.pk]))

    assert listing.status_code == 200
    assert token.prefix in listing.content.decode()
    assert token.token_hash not in listing.content.decode()
    assert detail.status_code == 200
    assert token.token_hash not in detail.content.decode()
    assert admin.get(reverse("admin:categorisation_apitoken_add")).status_code == 403


def test_token_admin_revoke_action(client):
    key = create_api_client(name="acme")
    other_key = create_api_client(name="globex")
    token = ApiToken.objects.get(client__username="acme")
    admin = _staff_client(client, superuser=True)

    response = admin.post(
        reverse("admin:categorisation_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert f"Revoked 1 API token(s): {token.prefix}." in response.content.decode()
    assert _predict(_client_with(key)).status_code == 401
    assert _predict(_client_with(other_key)).status_code == 200


# Runs in its own process on a scratch SQLite file, because migrating backwards and forwards
# inside the test database would need a flush that removes the staff groups other tests use.
LEGACY_MIGRATION_SCRIPT = """
import hashlib, json
import django
django.setup()
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder

legacy_key = "0123456789abcdef0123456789abcdef01234567"
call_command("migrate", verbosity=0)
call_command("migrate", "categorisation", "0001_staff_groups", verbosity=0)
user = get_user_model().objects.create_user(username="legacy-app")
with connection.cursor() as cursor:
    cursor.execute(
        'CREATE TABLE "authtoken_token" ("key" varchar(40) NOT NULL PRIMARY KEY, '
        '"created" timestamp NOT NULL, "user_id" integer NOT NULL UNIQUE)'
    )
    cursor.execute('INSERT INTO "authtoken_token" VALUES (%s, %s, %s)', [legacy_key, "2025-01-01 00:00:00", user.pk])
MigrationRecorder(connection).record_applied("authtoken", "0001_initial")

call_command("migrate", "categorisation", verbosity=0)

from categorisation.authentication import ApiTokenAuthentication
from categorisation.models import ApiToken
token = ApiToken.objects.get()
client, _ = ApiTokenAuthentication().authenticate_credentials(legacy_key)
print(json.dumps({
    "prefix": token.prefix,
    "hash_matches": token.token_hash == hashlib.sha256(legacy_key.encode()).hexdigest(),
    "authenticated_as": client.username,
    "legacy_table_left": "authtoken_token" in connection.introspection.table_names(),
    "legacy_migrations_left": MigrationRecorder(connection).migration_qs.filter(app="authtoken").count(),
}))
"""


def test_migration_hashes_legacy_drf_tokens(tmp_path):
    env = service_env(DJANGO_SETTINGS_MODULE="config.settings.local", VAR_DIR=str(tmp_path / "var"))

    completed = subprocess.run(
        [str(VENV_BIN / "python"), "-c", LEGACY_MIGRATION_SCRIPT],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )

    assert completed.returncode == 0, completed.stderr[-4000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["prefix"] == "legacy-01234567"
    assert result["hash_matches"] is True
    assert result["authenticated_as"] == "legacy-app"
    assert result["legacy_table_left"] is False
    assert result["legacy_migrations_left"] == 0
