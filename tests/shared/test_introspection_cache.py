"""The introspection cache's own rules, with a clock the test moves: bounded (LRU), never past
a token's exp, indexed by everything a revocation event can name, and never storing an answer
fetched across an event."""

from __future__ import annotations

import base64
import json

import pytest
from pydantic import ValidationError

from resource_server.settings import ResourceSettings
from shared.guard.introspection import IntrospectionResult
from shared.guard.introspection_cache import IntrospectionCache, token_key
from shared.protocol import revocation_events as events
from tests.support import FakeClock


def jwt_like(kid: str, payload: str) -> str:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "ES256", "kid": kid}).encode())
    return f"{header.decode().rstrip('=')}.{payload}.signature"


def active(jti: str, exp: float, **members) -> IntrospectionResult:
    data = {"active": True, "jti": jti, "exp": int(exp), "sub": "user-1", "client_id": "app"}
    data.update(members)
    return IntrospectionResult.from_response(data)


def test_least_recently_used_entries_go_first_when_full():
    clock = FakeClock(1000)
    cache = IntrospectionCache(60, 2, max_entries=2, clock=clock)
    tokens = [jwt_like("k1", str(n)) for n in range(3)]
    for n, token in enumerate(tokens[:2]):
        assert cache.put(token_key(token), token, active(f"j{n}", 2000), cache.ticket())
    assert cache.get(token_key(tokens[0])) is not None  # tokens[1] is now the oldest use
    cache.put(token_key(tokens[2]), tokens[2], active("j2", 2000), cache.ticket())
    assert len(cache) == 2
    assert cache.get(token_key(tokens[1])) is None
    assert cache.get(token_key(tokens[0])) is not None
    # the evicted entry left the index too: an event naming it drops nothing
    assert cache.drop([(events.TOKEN, "j1")]) == 0


def test_an_entry_lives_until_the_earlier_of_its_ttl_and_its_exp():
    clock = FakeClock(1000)
    cache = IntrospectionCache(60, 2, max_entries=10, clock=clock)
    short, long = jwt_like("k", "short"), jwt_like("k", "long")
    cache.put(token_key(short), short, active("a", exp=1010), cache.ticket())
    cache.put(token_key(long), long, active("b", exp=5000), cache.ticket())
    clock.advance(10)
    assert cache.get(token_key(short)) is None
    assert cache.get(token_key(long)) is not None
    clock.advance(50)
    assert cache.get(token_key(long)) is None


def test_inactive_answers_live_for_the_negative_ttl_and_zero_means_never():
    clock = FakeClock(1000)
    inactive = IntrospectionResult.from_response({"active": False})
    cache = IntrospectionCache(60, 2, max_entries=10, clock=clock)
    assert cache.put(token_key("x"), "x", inactive, cache.ticket())
    clock.advance(2)
    assert cache.get(token_key("x")) is None
    never = IntrospectionCache(60, 0, max_entries=10, clock=clock)
    assert not never.put(token_key("x"), "x", inactive, never.ticket())


@pytest.mark.parametrize(
    "target",
    [
        (events.TOKEN, "j1"),
        (events.SESSION, "17"),
        (events.USER, "user-1"),
        (events.CLIENT, "app"),
        (events.SIGNING_KEY, "key-1"),
    ],
)
def test_every_name_an_event_can_use_drops_the_entry(target):
    cache = IntrospectionCache(60, 2, max_entries=10, clock=FakeClock(1000))
    token, other = jwt_like("key-1", "a"), jwt_like("key-2", "b")
    cache.put(token_key(token), token, active("j1", 2000, sid="17"), cache.ticket())
    other_result = active("j2", 2000, sid="18", sub="user-2", client_id="other")
    cache.put(token_key(other), other, other_result, cache.ticket())
    assert cache.drop([target]) == 1
    assert cache.get(token_key(token)) is None
    assert cache.get(token_key(other)) is not None


def test_an_answer_fetched_across_an_event_or_a_flush_is_not_stored():
    cache = IntrospectionCache(60, 2, max_entries=10, clock=FakeClock(1000))
    token = jwt_like("k", "a")
    ticket = cache.ticket()
    cache.drop([(events.USER, "somebody-else")])
    assert not cache.put(token_key(token), token, active("j", 2000), ticket)
    ticket = cache.ticket()
    cache.flush()
    assert not cache.put(token_key(token), token, active("j", 2000), ticket)
    assert len(cache) == 0


def test_events_round_trip_and_malformed_ones_are_refused():
    for target in [(events.USER, "s"), (events.SESSION, "1"), (events.SIGNING_KEY, "k")]:
        body = events.encode(events.build("https://as", target, "why", 1))
        assert events.targets(body, "https://as") == [target]
    body = events.encode(events.build("https://as", (events.TOKEN, "j"), "why", 1))
    with pytest.raises(ValueError):
        events.targets(body, "https://another-as")
    for bad in (b"[]", b'{"events": {}}', b'{"events": {"x": 1}}', b"not json"):
        with pytest.raises(ValueError):
            events.targets(bad, None)


def test_the_resource_server_refuses_a_cache_without_revocation_events():
    base = dict(resource_client_id="api", resource_client_secret="secret")
    with pytest.raises(ValidationError, match="REVOCATION_EVENTS_URL"):
        ResourceSettings(introspection_cache_ttl=60, **base)
    assert ResourceSettings(**base).introspection_cache_ttl == 0  # off by default
    on = ResourceSettings(
        introspection_cache_ttl=60, revocation_events_url="redis://127.0.0.1:6379/0", **base
    )
    assert on.introspection_cache_ttl == 60
