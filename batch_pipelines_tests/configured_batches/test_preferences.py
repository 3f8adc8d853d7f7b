"""Preferences: the model's validation, the store's table and the caching, falling-back client."""

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from batch_pipelines.configured_batches.preferences import (
    ConfigDatabaseClient,
    Preference,
    PreferenceSourceUnavailable,
    PreferenceStore,
)
from batch_pipelines.core.errors import ConfigurationError
from batch_pipelines_tests.configured_batches.family_tables import empty_family_tables

DEFAULTS = {
    "frequency": "weekly",
    "preferred_day": "friday",
    "preferred_time": "17:00",
    "timezone": "UTC",
}


@pytest.fixture
def engine(store):
    return empty_family_tables(store.engine)


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


class Clock:
    def __init__(self, start=datetime(2026, 11, 24, 8, 0, tzinfo=UTC)):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, **kw):
        self.now += timedelta(**kw)


def test_a_preference_is_normalised_so_equal_choices_compare_equal():
    p = Preference.parse(
        record(frequency="Weekly", preferred_day="Fri", preferred_time="9:05"), where="x"
    )
    assert (p.frequency, p.preferred_day, p.preferred_time) == ("weekly", "friday", "09:05")
    assert Preference.parse(record(preferred_day="monday"), where="x").preferred_day is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"preferred_time": "25:00"}, "preferred_time"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"frequency": "yearly"}, "frequency"),
        ({"frequency": "weekly"}, "preferred_day is required"),
        ({"frequency": "monthly", "preferred_day": "31"}, "1..28"),
        ({"user_id": " "}, "user_id"),
        ({"feature_type": "a|b"}, "feature_type"),
    ],
)
def test_a_bad_preference_is_refused_naming_where_and_the_field(change, field):
    with pytest.raises(ConfigurationError, match="preferences.csv row 7") as raised:
        Preference.parse(record(**change), where="preferences.csv row 7")
    assert field in str(raised.value)


def test_upsert_validates_everything_first_and_stores_nothing_when_one_is_bad(engine):
    prefs = PreferenceStore(engine)
    with pytest.raises(ConfigurationError, match=r"import\[1\]"):
        prefs.upsert([record("a"), record("b", timezone="Nowhere/Land")], where="import")
    assert prefs.for_feature("digest") == []


def test_a_change_replaces_the_users_preference_and_is_read_once_by_cursor(engine):
    clock = Clock()
    prefs = PreferenceStore(engine, clock=clock)
    prefs.upsert([record("a"), record("b"), record("c")])
    first, cursor = prefs.changed_since(None)
    assert [p.user_id for p in first] == ["a", "b", "c"]
    assert prefs.changed_since(cursor) == ([], cursor)

    clock.advance(minutes=1)
    prefs.upsert([record("b", preferred_time="10:00", template_overrides={"tone": "formal"})])
    changed, cursor = prefs.changed_since(cursor)
    assert [(p.user_id, p.preferred_time, p.template_overrides) for p in changed] == [
        ("b", "10:00", {"tone": "formal"})
    ]
    assert prefs.get("b", "digest").preferred_time == "10:00"
    assert len(prefs.for_feature("digest")) == 3


def test_rows_written_in_the_same_instant_are_paged_without_loss_or_repeat(engine):
    prefs = PreferenceStore(engine, clock=Clock())
    prefs.upsert([record(f"u{i:02d}") for i in range(7)])
    seen, cursor = [], None
    while True:
        page, cursor = prefs.changed_since(cursor, limit=3)
        if not page:
            break
        seen += [p.user_id for p in page]
    assert seen == [f"u{i:02d}" for i in range(7)]


def test_changes_after_until_wait_for_a_later_read(engine):
    clock = Clock()
    prefs = PreferenceStore(engine, clock=clock)
    prefs.upsert([record("a")])
    clock.advance(seconds=3)
    prefs.upsert([record("b")])
    early, cursor = prefs.changed_since(None, until=clock.now - timedelta(seconds=2))
    assert [p.user_id for p in early] == ["a"]
    late, _ = prefs.changed_since(cursor, until=clock.now)
    assert [p.user_id for p in late] == ["b"]


def test_a_deleted_preference_leaves_a_tombstone_the_change_reader_sees(engine):
    clock = Clock()
    prefs = PreferenceStore(engine, clock=clock)
    prefs.upsert([record("a")])
    _, cursor = prefs.changed_since(None)
    clock.advance(seconds=5)
    assert prefs.delete("a", "digest") and not prefs.delete("a", "digest")
    (tombstone,), _ = prefs.changed_since(cursor)
    assert tombstone.deleted and not tombstone.active
    assert prefs.get("a", "digest") is None and prefs.for_feature("digest") == []


def test_a_bad_cursor_is_refused_with_its_value():
    with pytest.raises(ConfigurationError, match="yesterday"):
        PreferenceStore(sa.create_engine("sqlite://")).changed_since("yesterday")


class FlakySource:
    """A source that answers from a dict and can be switched off."""

    def __init__(self, prefs):
        self.prefs = {(p.user_id, p.feature_type): p for p in prefs}
        self.down = False
        self.calls = 0

    def _check(self):
        self.calls += 1
        if self.down:
            raise PreferenceSourceUnavailable("config database is down")

    def for_feature(self, feature_type):
        self._check()
        return [p for (_, f), p in self.prefs.items() if f == feature_type]

    def get(self, user_id, feature_type):
        self._check()
        return self.prefs.get((user_id, feature_type))

    def changed_since(self, cursor, limit=None, until=None):
        self._check()
        return list(self.prefs.values()), "end"


def test_preferences_are_cached_for_the_ttl_and_read_again_after():
    ticks = [0.0]
    source = FlakySource([Preference(**record("a"))])
    client = ConfigDatabaseClient(source, ttl_seconds=60, clock=lambda: ticks[0])
    client.preferences_for("digest")
    ticks[0] = 59
    client.preferences_for("digest")
    assert source.calls == 1
    ticks[0] = 61
    client.preferences_for("digest")
    assert source.calls == 2


def test_when_the_source_is_down_the_last_good_answer_is_served_then_the_defaults():
    ticks = [0.0]
    source = FlakySource([Preference(**record("a", preferred_time="07:15"))])
    client = ConfigDatabaseClient(source, ttl_seconds=10, clock=lambda: ticks[0])
    assert client.preference("a", "digest", DEFAULTS).preferred_time == "07:15"
    source.down = True
    ticks[0] = 100
    assert client.preference("a", "digest", DEFAULTS).preferred_time == "07:15"  # stale but known
    fallback = client.preference("never-seen", "digest", DEFAULTS, tenant_id="t9")
    assert (fallback.user_id, fallback.tenant_id, fallback.frequency, fallback.preferred_day) == (
        "never-seen",
        "t9",
        "weekly",
        "friday",
    )
    assert client.fallbacks == 2 and "down" in client.last_error
    assert client.preferences_for("digest") == []  # nothing cached for the whole feature


def test_a_user_without_a_preference_gets_the_defaults_and_one_who_turned_it_off_gets_nothing():
    source = FlakySource([Preference(**record("off", enabled=False))])
    client = ConfigDatabaseClient(source)
    assert client.preference("none", "digest", DEFAULTS).preferred_time == "17:00"
    assert client.preference("none", "digest") is None
    assert client.preference("off", "digest", DEFAULTS) is None


def test_the_change_reader_never_pretends_nothing_changed_when_the_store_fails(engine):
    client = ConfigDatabaseClient.from_store(engine)
    PreferenceStore(engine).upsert([record("a")])
    with engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE user_preferences RENAME TO user_preferences_away"))
    try:
        with pytest.raises(PreferenceSourceUnavailable):
            client.changed_since(None)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE user_preferences_away RENAME TO user_preferences"))


def test_a_negative_cache_ttl_is_refused():
    with pytest.raises(ConfigurationError, match="CONFIG_CACHE_TTL"):
        ConfigDatabaseClient(FlakySource([]), ttl_seconds=-1)


def test_preferences_for_given_users_give_defaults_to_those_without_one_and_leave_out_those_who_turned_it_off():
    source = FlakySource(
        [
            Preference(**record("a", preferred_time="07:15")),
            Preference(**record("off", enabled=False)),
        ]
    )
    client = ConfigDatabaseClient(source)
    users = {"a": "t1", "none": "t7", "off": "t1"}
    found = client.preferences_for("digest", DEFAULTS, users=users)
    assert [(p.user_id, p.tenant_id, p.preferred_time) for p in found] == [
        ("a", "t1", "07:15"),
        ("none", "t7", "17:00"),
    ]
    assert [p.user_id for p in client.preferences_for("digest", users=users)] == [
        "a"
    ]  # no defaults: none left out
    assert source.calls == 1  # one read of the source for the whole list, then the cache


def test_preferences_for_given_users_with_the_source_down_give_every_user_the_defaults_and_say_why():
    source = FlakySource([Preference(**record("a", preferred_time="07:15"))])
    source.down = True
    client = ConfigDatabaseClient(source)
    found = client.preferences_for("digest", DEFAULTS, users={"a": "t1", "b": "t2"})
    assert [(p.user_id, p.tenant_id, p.frequency, p.preferred_time) for p in found] == [
        ("a", "t1", "weekly", "17:00"),
        ("b", "t2", "weekly", "17:00"),
    ]
    assert client.fallbacks == 1 and "down" in client.last_error
    assert (
        client.preferences_for("digest", DEFAULTS) == []
    )  # no users named: nobody to give defaults to


def test_a_source_error_kept_for_metadata_carries_no_credentials():
    from batch_pipelines.configured_batches.preferences import redact

    message = redact(
        "ServiceError: GET https://ops:hunter2@config.example/v1/prefs?api_key=abc123&feature=x failed"
    )
    assert "hunter2" not in message and "abc123" not in message
    assert "config.example/v1/prefs" in message and "feature=x" in message
