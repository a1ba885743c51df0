"""The actor-admin:inbound stream: XADD with approximate MAXLEN trimming."""

from __future__ import annotations

import pytest

from actor_admin.cluster import DEFAULT_INBOUND_MAXLEN, InboundStream, RedisClient

pytestmark = pytest.mark.integration


async def test_the_stream_is_named_inbound_under_the_prefix(redis_client: RedisClient) -> None:
    assert InboundStream(redis_client).name == redis_client.prefix + "inbound"
    assert InboundStream(redis_client).maxlen == DEFAULT_INBOUND_MAXLEN == 100_000


async def test_publish_inbound_appends_the_message_with_its_salon(redis_client: RedisClient) -> None:
    stream = InboundStream(redis_client)
    stream_id = await stream.publish_inbound(42, {"wa_id": "ABC", "from": "79001234567", "text": "hi"})
    entries = await redis_client.execute("XRANGE", stream.name, "-", "+")
    assert [(entry_id, dict(fields)) for entry_id, fields in entries] == [
        (stream_id, {"salon_id": "42", "wa_id": "ABC", "from": "79001234567", "text": "hi"})
    ]


async def test_ids_grow_in_publish_order(redis_client: RedisClient) -> None:
    stream = InboundStream(redis_client)
    first = await stream.publish_inbound(1, {"text": "a"})
    second = await stream.publish_inbound(1, {"text": "b"})
    assert tuple(map(int, second.split("-"))) > tuple(map(int, first.split("-")))


async def test_the_stream_is_trimmed_to_about_maxlen(redis_client: RedisClient) -> None:
    stream = InboundStream(redis_client, maxlen=50)
    node_size = int((await redis_client.execute("CONFIG", "GET", "stream-node-max-entries"))["stream-node-max-entries"])
    # Fill well past the cap without trimming, so only publish_inbound's own XADD can trim.
    total = 50 + 4 * node_size
    for start in range(0, total, 100):
        await redis_client.execute_many(
            [("XADD", stream.name, "*", "n", n) for n in range(start, min(start + 100, total))]
        )
    assert await stream.length() == total
    await stream.publish_inbound(1, {"n": "last"})
    length = await stream.length()
    # "~" trims whole internal nodes only: at least maxlen stay, at most one node more.
    assert 50 <= length <= 50 + node_size


async def test_salon_id_cannot_be_given_twice(redis_client: RedisClient) -> None:
    with pytest.raises(ValueError):
        await InboundStream(redis_client).publish_inbound(1, {"salon_id": "2"})


async def test_publish_many_appends_every_message_in_order_in_one_command(redis_client: RedisClient) -> None:
    stream = InboundStream(redis_client)
    batch = [
        (1, {"wa_id": "a", "text": "Здравствуйте! 👋", "peer_lid": "123@lid"}),
        (2, {"wa_id": "b", "text": "", "n": 5}),
        (1, {"wa_id": "c", "text": "line\nbreak \"quoted\""}),
    ]
    ids = await stream.publish_many(batch)
    entries = await redis_client.execute("XRANGE", stream.name, "-", "+")
    assert [entry_id for entry_id, _ in entries] == ids
    assert [fields for _, fields in entries] == [
        {"salon_id": "1", "wa_id": "a", "text": "Здравствуйте! 👋", "peer_lid": "123@lid"},
        {"salon_id": "2", "wa_id": "b", "text": "", "n": "5"},
        {"salon_id": "1", "wa_id": "c", "text": "line\nbreak \"quoted\""},
    ]
    assert await stream.publish_many([]) == []
