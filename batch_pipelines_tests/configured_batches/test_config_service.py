"""The config service: its HTTP client against the simulator, failures, and the resource."""

import asyncio

import dagster as dg
import pytest

from batch_pipelines.clients.http import BadRequest, ServiceError, Unauthorized
from batch_pipelines.configured_batches.preferences import ConfigDatabaseClient
from batch_pipelines.configured_batches.resources import (
    ConfigServiceResource,
    config_service_resource,
)
from batch_pipelines.core.backoff import RetryPolicy
from batch_pipelines.simulators.config_service import ConfigServiceSimulator, config_service_client
from batch_pipelines.simulators.faults import FaultPlan

DEFAULTS = {"frequency": "daily", "preferred_time": "18:00", "timezone": "UTC"}


def record(user="u1", feature="digest", **kw):
    return {
        "tenant_id": "t1",
        "user_id": user,
        "feature_type": feature,
        "frequency": "daily",
        "preferred_time": "09:00",
        "timezone": "UTC",
        **kw,
    }


async def no_sleep(_seconds):
    return None


def client_of(sim, **kw):
    return config_service_client(sim, sleep=no_sleep, **kw)


def test_preferences_written_through_the_service_are_listed_read_and_paged_as_changes():
    sim = ConfigServiceSimulator()

    async def scenario():
        client = client_of(sim)
        for i in range(3):
            await client.put_preference(record(f"u{i}"))
        listed = await client.preferences("digest")
        one = await client.preference("u1", "digest")
        missing = await client.preference("nobody", "digest")
        first, cursor = await client.changes(None, limit=2)
        rest, cursor = await client.changes(cursor, limit=2)
        assert await client.delete_preference("u0", "digest")
        deleted, _ = await client.changes(cursor)
        await client.aclose()
        return listed, one, missing, first, rest, deleted

    listed, one, missing, first, rest, deleted = asyncio.run(scenario())
    assert [r["user_id"] for r in listed] == ["u0", "u1", "u2"]
    assert one["preferred_time"] == "09:00" and missing is None
    assert [r["user_id"] for r in first + rest] == ["u0", "u1", "u2"]
    assert deleted[0]["user_id"] == "u0" and deleted[0]["deleted"] is True


def test_every_page_of_a_large_feature_is_read():
    sim = ConfigServiceSimulator()
    for i in range(1203):
        sim.put(record(f"u{i:05d}"))
    records = asyncio.run(client_of(sim).preferences("digest"))
    assert len(records) == 1203 and records[-1]["user_id"] == "u01202"


def test_a_refused_preference_names_the_field():
    sim = ConfigServiceSimulator()
    with pytest.raises(BadRequest, match="timezone"):
        asyncio.run(client_of(sim).put_preference(record(timezone="Nowhere/Land")))


def test_a_wrong_key_is_unauthorized_and_the_key_never_shows_in_the_error():
    sim = ConfigServiceSimulator(api_key="right-key")
    with pytest.raises(Unauthorized) as raised:
        asyncio.run(config_service_client(sim, api_key="wrong-secret-key").preferences("digest"))
    assert "wrong-secret-key" not in str(raised.value) and raised.value.status == 401
    from batch_pipelines.clients.config_service import ConfigServiceClient

    wrong = ConfigServiceClient("http://config.example", "secret-wrong-key")
    assert "secret-wrong-key" not in repr(wrong)


def test_server_errors_and_rate_limits_are_retried_with_backoff_until_the_answer_comes():
    sim = ConfigServiceSimulator(
        faults=FaultPlan(seed=3, server_error_rate=0.4, rate_limit_rate=0.2)
    )
    for i in range(5):
        sim.put(record(f"u{i}"))
    waits: list[float] = []

    async def sleep(seconds):
        waits.append(seconds)

    client = config_service_client(sim, sleep=sleep, retry=RetryPolicy(max_retries=20))
    results = [asyncio.run(client.preference(f"u{i}", "digest")) for i in range(5)]
    assert [r["user_id"] for r in results] == [f"u{i}" for i in range(5)]
    faults = sim.stats()["faults_injected"]
    assert sum(faults.values()) == len(waits) > 0
    if faults.get("rate_limited"):
        assert 1.0 in waits  # the simulator's Retry-After is honoured


def test_the_config_database_client_over_http_falls_back_to_its_cache_then_the_defaults():
    sim = ConfigServiceSimulator()
    sim.put(record("u1", preferred_time="07:45"))
    ticks = [0.0]
    client = ConfigDatabaseClient.from_service(
        client_of(sim, retry=RetryPolicy(max_retries=1)), ttl_seconds=5, clock=lambda: ticks[0]
    )
    assert client.preference("u1", "digest", DEFAULTS).preferred_time == "07:45"
    assert [p.user_id for p in client.preferences_for("digest")] == ["u1"]
    sim.down = True
    ticks[0] = 60
    assert client.preference("u1", "digest", DEFAULTS).preferred_time == "07:45"
    assert [p.user_id for p in client.preferences_for("digest")] == ["u1"]
    assert client.preference("u2", "digest", DEFAULTS).preferred_time == "18:00"
    assert client.fallbacks == 3 and "503" in client.last_error
    with pytest.raises(ServiceError):
        client.changed_since(None)


def test_the_config_database_client_works_from_inside_a_running_event_loop():
    sim = ConfigServiceSimulator()
    sim.put(record("u1"))
    client = ConfigDatabaseClient.from_service(client_of(sim))

    async def inside():
        return client.preference("u1", "digest")

    assert asyncio.run(inside()).user_id == "u1"


def test_the_resource_reads_the_store_without_a_url_and_the_service_with_one(store):
    embedded = ConfigServiceResource().config_database(store.engine)
    assert type(embedded.source).__name__ == "PreferenceStore"
    remote = ConfigServiceResource(
        base_url="http://config.example", api_key="k", cache_ttl_seconds=9
    )
    database = remote.config_database(store.engine)
    assert type(database.source).__name__ == "ServicePreferenceSource" and database.ttl_seconds == 9


def test_the_resource_takes_url_key_and_ttl_from_the_environment(monkeypatch):
    monkeypatch.setenv("CONFIG_SERVICE_URL", "http://config.example")
    monkeypatch.setenv("CONFIG_SERVICE_API_KEY", "env-secret")
    monkeypatch.setenv("CONFIG_CACHE_TTL", "42")
    resource = config_service_resource()
    assert isinstance(resource.api_key, dg.EnvVar) and isinstance(resource.base_url, dg.EnvVar)
    resolved = resource.process_config_and_initialize()
    assert resolved.cache_ttl_seconds == 42 and resolved.uses_service
    monkeypatch.delenv("CONFIG_SERVICE_URL")
    monkeypatch.delenv("CONFIG_CACHE_TTL")
    assert not config_service_resource().process_config_and_initialize().uses_service
