"""An idle consumer, backed off far beyond the test's patience, still picks a job up: the producer's ring wakes it."""

import asyncio
import uuid

from infra.kafka import clients, doorbell
from infra.kafka.topics import TopicSpec
from infra.redis.client import connect


async def test_an_idle_consumer_is_woken_by_the_producers_ring(kafka_bootstrap, redis_url):
    topic = f"doorbell-{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1, "job_id", "bytes", "test")])
    pacer = doorbell.install(idle_s=3600.0, busy_s=0.0)  # idle at once; only a ring can wake a fetch
    bell = doorbell.Doorbell(redis_url, pacer)
    probe = connect(redis_url)
    bell.listen()
    previous = doorbell.register(bell)
    consumer = clients.consumer(kafka_bootstrap, topic, group_id=f"g-{topic}")
    producer = clients.producer(kafka_bootstrap)
    try:
        await clients.start_client(consumer, kafka_bootstrap)
        await clients.start_client(producer, kafka_bootstrap)
        waiting = asyncio.create_task(consumer.getmany(timeout_ms=60_000))
        for _ in range(200):  # the consumer's fetch parks on the pacer: it has backed off
            if pacer._waiters.get(topic):
                break
            await asyncio.sleep(0.05)
        assert pacer._waiters.get(topic), "the idle consumer never backed off"
        for _ in range(200):  # this process's subscriber listens on the topic's channel before the ring
            if dict(await probe.pubsub_numsub(doorbell.channel(topic))).get(doorbell.channel(topic), 0):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the parked consumer's topic was never subscribed")
        await producer.send_and_wait(topic, b"job", key=b"j1")
        batches = await asyncio.wait_for(waiting, 30)
        assert [m.value for msgs in batches.values() for m in msgs] == [b"job"]
    finally:
        await probe.aclose()
        doorbell.uninstall()
        doorbell.register(previous)
        await consumer.stop()
        await producer.stop()
        await bell.close()


async def test_the_listener_keeps_one_connection_past_the_clients_socket_timeout(redis_url):
    """A quiet channel is not an error: the subscriber stays on its first connection (no reconnect and
    resubscribe each socket timeout, which cost an idle process a connection every few seconds) and
    still hears a ring."""
    pacer = doorbell.Pacer(idle_s=3600.0, busy_s=0.0)
    pacer.mark(["some.topic"])  # a consumer of this process fetches it: its channel is subscribed
    bell = doorbell.Doorbell(redis_url, pacer, socket_timeout_s=0.2, listen_s=0.1)
    probe = connect(redis_url)
    try:
        async def subscribers() -> set[str]:
            return {c["id"] for c in await probe.client_list() if int(c.get("sub", 0))}

        others = await subscribers()  # other processes of the session may listen on the same Redis
        bell.listen()
        for _ in range(100):
            if await subscribers() - others:
                break
            await asyncio.sleep(0.05)
        first = await subscribers() - others
        assert len(first) == 1
        await asyncio.sleep(1.5)  # several socket timeouts of quiet
        assert first <= await subscribers()  # the same connection, still subscribed
        assert len(await subscribers() - others) == 1  # and no second one
        assert pacer.hearing
        before = pacer._rings.get("some.topic", 0)  # the listener rang it once, when Redis confirmed it
        await probe.publish(doorbell.channel("some.topic"), b"")
        for _ in range(100):
            if pacer._rings.get("some.topic", 0) > before:
                break
            await asyncio.sleep(0.05)
        assert pacer._rings.get("some.topic", 0) == before + 1
    finally:
        await probe.aclose()
        await bell.close()


async def test_a_ring_made_while_a_publish_is_in_flight_still_goes_out(redis_url):
    """Rings coalesce per topic while a PUBLISH is pending; a topic rung again while that PUBLISH is
    in flight goes out in a next round. (It used to stay pending, and every later ring of it was
    swallowed until some other topic rang: under load the jobs topic's consumers then waited out
    their idle poll, about 0.5 s a job.)"""
    bell = doorbell.Doorbell(redis_url)
    probe = connect(redis_url)
    heard: list[bytes] = []
    pubsub = probe.pubsub()
    topic = f"inflight-{uuid.uuid4().hex[:8]}"
    await pubsub.subscribe(doorbell.channel(topic))
    try:
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        bell.ring(topic)
        for _ in range(50):  # the first PUBLISH is on its way: its topic is no longer pending
            await asyncio.sleep(0)
            if not bell._pending:
                break
        assert not bell._pending and not bell._flush.done()
        bell.ring(topic)  # while the first PUBLISH is in flight
        await asyncio.wait_for(bell._flush, 5)
        while True:
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)
            if msg is None:
                break
            if msg["channel"] == doorbell.channel(topic):
                heard.append(msg["channel"])
        assert len(heard) == 2 and not bell._pending
    finally:
        await pubsub.aclose()
        await probe.aclose()
        await bell.close()


async def test_a_topic_rings_at_most_once_per_interval(redis_url):
    """Within `min_interval_s` of its last ring a topic is not rung again (a consumer woken by that ring
    is still busy); after it, it is; another topic is not held back."""
    now = [100.0]
    bell = doorbell.Doorbell(redis_url, min_interval_s=1.0, clock=lambda: now[0])
    probe = connect(redis_url)
    pubsub = probe.pubsub()
    topic, other = f"often-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    await pubsub.subscribe(doorbell.channel(topic), doorbell.channel(other))

    async def ring_and_settle(name: str) -> None:
        bell.ring(name)
        if bell._flush is not None:
            await asyncio.wait_for(bell._flush, 5)

    try:
        for _ in range(2):
            await pubsub.get_message(timeout=1)  # the subscribe confirmations
        await ring_and_settle(topic)
        now[0] += 0.4
        await ring_and_settle(topic)  # within the interval: not published
        await ring_and_settle(other)  # another topic: published
        now[0] += 0.7
        await ring_and_settle(topic)  # 1.1 s after the first: published
        heard = []
        while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=1)) is not None:
            heard.append(msg["channel"][len(doorbell.CHANNEL):].decode())
        assert heard == [topic, other, topic]
    finally:
        await pubsub.aclose()
        await probe.aclose()
        await bell.close()


async def test_a_ring_wakes_only_the_processes_that_fetch_its_topic(redis_url):
    """Each topic rings on a channel of its own, and a listener subscribes the channels of the topics its
    process fetches: a ring of another topic never reaches it (with one channel for every topic, each
    ring woke every process of the stack)."""
    pacer = doorbell.Pacer(idle_s=3600.0, busy_s=0.0)
    mine, theirs = f"mine-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}"
    bell = doorbell.Doorbell(redis_url, pacer, listen_s=0.05)
    producer_side = doorbell.Doorbell(redis_url)
    try:
        bell.listen()
        await asyncio.sleep(0.2)
        pacer.mark([mine])  # a consumer of this process starts fetching `mine`: the listener subscribes it
        probe = connect(redis_url)
        try:
            for _ in range(100):
                if (await probe.pubsub_numsub(doorbell.channel(mine)))[0][1]:
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the listener never subscribed the topic's channel")
            assert (await probe.pubsub_numsub(doorbell.channel(theirs)))[0][1] == 0
        finally:
            await probe.aclose()
        producer_side.ring(theirs)
        producer_side.ring(mine)
        for _ in range(100):
            if pacer._rings.get(mine):
                break
            await asyncio.sleep(0.05)
        assert pacer._rings.get(mine) == 1 and theirs not in pacer._rings
    finally:
        await producer_side.close()
        await bell.close()


async def test_a_spaced_consumer_takes_what_queued_up_in_few_fetches(kafka_bootstrap):
    """A background tap's consumer (the cache filler's) fetches at most once per its
    gap, however often records come: records sent one by one every 20 ms for about a second reach it
    whole and in order, in a handful of fetches instead of one per record."""
    topic = f"spaced-{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1, "job_id", "bytes", "test")])
    consumer = clients.consumer(kafka_bootstrap, topic, group_id=f"g-{topic}")
    producer = clients.producer(kafka_bootstrap)
    await clients.start_client(consumer, kafka_bootstrap)
    await clients.start_client(producer, kafka_bootstrap)
    doorbell.space_fetches(consumer, 0.4)
    try:
        while not consumer.assignment():  # joined: what is sent from now on is read from the start
            await consumer.getmany(timeout_ms=100)
        received: list[list[bytes]] = []

        async def read() -> None:
            while sum(map(len, received)) < 50:
                batches = await consumer.getmany(timeout_ms=100)
                got = [m.value for msgs in batches.values() for m in msgs]
                if got:
                    received.append(got)

        reader = asyncio.create_task(read())
        for i in range(50):
            await producer.send_and_wait(topic, b"%d" % i, key=b"j")
            await asyncio.sleep(0.02)
        await asyncio.wait_for(reader, 30)
        assert [v for batch in received for v in batch] == [b"%d" % i for i in range(50)]
        # about 1.5 s of sending at one fetch per 0.4 s: 5 fetches, 6 if the first fell just before a send
        assert len(received) <= 7, [len(b) for b in received]
    finally:
        await consumer.stop()
        await producer.stop()


async def test_the_listener_hears_every_topic_only_while_subscribed_and_rings_what_it_may_have_missed(redis_url):
    """A busy consumer waits for rings as long as the idle poll only while the listener hears each of its
    topics: once Redis confirms a subscription (first, or again after a reconnect) the listener rings the
    topic itself, so a record whose ring went out before that is fetched at once; while the connection is
    down, the busy poll bounds a wait again."""
    topic = f"heard-{uuid.uuid4().hex[:8]}"
    pacer = doorbell.Pacer(idle_s=3600.0, busy_s=3600.0, busy_poll_s=0.05)
    pacer.mark([topic])
    bell = doorbell.Doorbell(redis_url, pacer, listen_s=0.1)
    probe = connect(redis_url)

    async def until(check, what: str) -> None:
        for _ in range(200):
            if check():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(what)

    async def subscribers() -> set[str]:
        return {c["id"] for c in await probe.client_list() if int(c.get("sub", 0))}

    try:
        others = await subscribers()  # other listeners on the same Redis are left alone
        assert not pacer.hearing
        await asyncio.wait_for(pacer.wait([topic], since=pacer.mark([topic])), 5)  # not heard: the busy poll ends it
        bell.listen()
        await until(lambda: pacer.hearing, "the listener never heard the topic")
        assert pacer._rings.get(topic) == 1  # rung on the confirmation: whatever came before it is fetched
        waiting = asyncio.create_task(pacer.wait([topic], since=pacer.mark([topic])))
        await asyncio.sleep(0.3)  # six busy polls
        assert not waiting.done()  # heard: it waits for the ring, not the busy poll
        await probe.publish(doorbell.channel(topic), b"")
        await asyncio.wait_for(waiting, 5)

        ours = await subscribers() - others
        assert len(ours) == 1
        rings = pacer._rings.get(topic, 0)
        await probe.execute_command("CLIENT", "KILL", "ID", ours.pop())  # the subscriber's connection drops
        await until(lambda: not pacer.hearing, "a dropped connection still counted as heard")
        await asyncio.wait_for(pacer.wait([topic], since=pacer.mark([topic])), 5)  # the busy poll bounds it again
        await until(lambda: pacer.hearing, "the listener did not hear the topic again after reconnecting")
        assert pacer._rings.get(topic, 0) > rings  # rung again on the new confirmation
    finally:
        await probe.aclose()
        await bell.close()


async def test_rings_go_out_on_one_held_connection_and_a_dropped_one_is_replaced(redis_url):
    """The doorbell publishes on a connection of its own, held across rings (one write of packed
    PUBLISHes per round, not a pooled client's pipeline). Redis dropping it loses at most the ring in
    flight: the next ring connects again and is heard."""
    bell = doorbell.Doorbell(redis_url)
    probe = connect(redis_url)
    pubsub = probe.pubsub()
    topics = [f"held-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    await pubsub.subscribe(*(doorbell.channel(t) for t in topics))

    async def heard() -> list[str]:
        got = []
        while (msg := await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)) is not None:
            got.append(msg["channel"][len(doorbell.CHANNEL):].decode())
        return got

    async def publishers() -> set[str]:
        return {c["id"] for c in await probe.client_list() if c.get("cmd") == "publish"}

    try:
        others = await publishers()  # the session's own doorbell may publish on the same Redis
        for _ in range(3):
            await pubsub.get_message(timeout=1)  # the subscribe confirmations
        for topic in topics:  # three rounds, one topic each
            bell.ring(topic)
            await asyncio.wait_for(bell._flush, 5)
        bell.ring(topics[0])
        bell.ring(topics[1])  # one round, both topics
        await asyncio.wait_for(bell._flush, 5)
        assert sorted(await heard()) == sorted([*topics, topics[0], topics[1]])
        held = await publishers() - others
        assert len(held) == 1  # every round on the same connection

        await probe.execute_command("CLIENT", "KILL", "ID", held.pop())
        bell.ring(topics[2])  # written to the dead connection, or found dead on its reply: dropped
        await asyncio.wait_for(bell._flush, 5)
        await heard()
        bell.ring(topics[2])
        await asyncio.wait_for(bell._flush, 5)
        assert await heard() == [topics[2]]
        assert len(await publishers() - others) == 1
    finally:
        await pubsub.aclose()
        await probe.aclose()
        await bell.close()


async def test_while_rings_pace_it_a_consumer_asks_the_broker_for_the_short_wait_and_reads_every_record(
        kafka_bootstrap, redis_url, monkeypatch):
    import aiokafka.conn

    topic = f"doorbell-{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(kafka_bootstrap, [TopicSpec(topic, 1, "job_id", "bytes", "test")])
    pacer = doorbell.install(idle_s=3600.0, busy_s=3600.0, busy_poll_s=0.05, heard_s=3600.0, rung_wait_ms=1)
    bell = doorbell.Doorbell(redis_url, pacer)
    bell.listen()
    previous = doorbell.register(bell)
    waits: list[int] = []
    send = aiokafka.conn.AIOKafkaConnection.send

    def watched(self, request, expect_response=True):
        if type(request).__name__ == "FetchRequest":
            waits.append(request._max_wait_ms)
        return send(self, request, expect_response)

    monkeypatch.setattr(aiokafka.conn.AIOKafkaConnection, "send", watched)
    consumer = clients.consumer(kafka_bootstrap, topic, group_id=f"g-{topic}", fetch_max_wait_ms=10)
    producer = clients.producer(kafka_bootstrap)
    try:
        await clients.start_client(consumer, kafka_bootstrap)
        await clients.start_client(producer, kafka_bootstrap)
        reading = asyncio.create_task(consumer.getmany(timeout_ms=200))
        for _ in range(200):  # the listener hears the topic: from now on every fetch is paced by rings
            if pacer.hearing and pacer.consumed():
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the listener never heard the consumer's topic")
        assert 10 in waits  # before that, the broker held each fetch for the consumer's own wait
        await reading
        waits.clear()
        got = []
        for i in range(5):  # each record rings; each is read (a fetch of 1 ms never answered would hang here)
            await (await producer.send(topic, b"r%d" % i, key=b"k"))
            while len(got) < i + 1:
                batches = await asyncio.wait_for(consumer.getmany(timeout_ms=10_000), 30)
                got += [m.value for msgs in batches.values() for m in msgs]
        assert got == [b"r%d" % i for i in range(5)]
        assert waits and set(waits) == {1}, waits
    finally:
        doorbell.uninstall()
        doorbell.register(previous)
        await consumer.stop()
        await producer.stop()
        await bell.close()
