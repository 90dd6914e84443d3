import random

from aiokafka.partitioner import DefaultPartitioner

from infra.kafka.clients import KeyedPartitioner, producer


def test_a_key_lands_where_aiokafkas_default_partitioner_puts_it_first_time_and_kept():
    keyed, default = KeyedPartitioner(), DefaultPartitioner()
    rng = random.Random(7)
    keys = [f"tenant-{rng.randrange(50)}:{rng.getrandbits(128):032x}".encode() for _ in range(300)]
    for partitions in ([0], list(range(4)), list(range(8)), [2, 5, 9]):
        for key in keys + keys:  # the second pass reads the kept hashes
            assert keyed(key, partitions, partitions) == default(key, partitions, partitions)


def test_the_kept_hashes_are_bounded_and_a_key_without_one_is_placed_at_random():
    keyed = KeyedPartitioner(size=10)
    for i in range(25):
        keyed(f"job-{i}".encode(), [0, 1], [0, 1])
    assert len(keyed._hashes) <= 10
    assert keyed(b"job-24", [0, 1], [0, 1]) == DefaultPartitioner()(b"job-24", [0, 1], [0, 1])
    assert {keyed(None, [0, 1, 2], [1]) for _ in range(20)} == {1}  # only an available partition


async def test_genlooms_producers_use_it():
    made = producer("127.0.0.1:9")  # not started: nothing connects
    assert isinstance(made._partitioner, KeyedPartitioner)
    await made.stop()
