"""Domain events on Kafka: contracts, transactional outbox, relay, consumers, dead letters.

topics.py        every event's payload type, topic and partition key (the one place)
envelope.py      building an event (envelope + record headers) and decoding a received one
outbox.py        enqueue() in the caller's PostgreSQL transaction; the relay's view of it
mongo_outbox.py  the same for MongoDB: enqueue() in the caller's session; lane leases
relay.py         OutboxRelay: publishes pending rows (of either) with an idempotent producer
consumer.py      ConsumerRunner: consumer group, retries, dead letters, trace continuation
inbox.py         processed_events: apply each event once, in the effect's transaction
clients.py       what the Kafka clients share: publisher thread, group member interface, topics
kafka_python.py  the clients on kafka-python (producer, group member, admin)
librdkafka.py    the same on librdkafka (confluent-kafka)

Guarantees: an event is in the outbox iff its state change committed; the relay publishes
every row at least once, in order per key; a consumer that records the event id in the
effect's transaction (inbox.claim) applies it exactly once.
"""
