"""Re-produces a topic set through confluent-kafka-python's own Avro serde.

Reads every message of the Customer 360 topics from one broker with confluent-kafka's
AvroDeserializer (schemas by id from the registry), and writes it to another broker with
its AvroSerializer (auto-registering under TopicNameStrategy), same key, same partition,
same order. So what the projector then reads was serialized and framed by a client
nobody here wrote. Run with the venv that has confluent-kafka[avro] (tools/lib.sh).

usage: confluent_relay.py SOURCE_BOOTSTRAP TARGET_BOOTSTRAP REGISTRY_URL
"""
import json
import sys

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

TOPICS = ["customers", "orders", "payments", "shipments", "loyalty", "returns"]


def main():
    source, target, url = sys.argv[1:4]
    registry = SchemaRegistryClient({"url": url})
    deserializer = AvroDeserializer(registry)
    serializers = {}  # writer schema id -> AvroSerializer of that schema
    consumer = Consumer({"bootstrap.servers": source, "group.id": "confluent-relay",
                         "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": target, "enable.idempotence": True})
    meta = consumer.list_topics(timeout=30)
    assignment, ends = [], {}
    for topic in TOPICS:
        for p in meta.topics[topic].partitions:
            tp = TopicPartition(topic, p, 0)
            assignment.append(tp)
            ends[(topic, p)] = consumer.get_watermark_offsets(tp, timeout=30)[1]
    consumer.assign(assignment)
    remaining = {k for k, end in ends.items() if end > 0}
    relayed = 0
    while remaining:
        msg = consumer.poll(5)
        if msg is None:
            continue
        if msg.error():
            raise SystemExit(f"consume: {msg.error()}")
        ctx = SerializationContext(msg.topic(), MessageField.VALUE)
        value = deserializer(msg.value(), ctx)
        writer_id = int.from_bytes(msg.value()[1:5], "big")
        if writer_id not in serializers:
            schema = registry.get_schema(writer_id)
            serializers[writer_id] = AvroSerializer(registry, schema.schema_str,
                                                    conf={"auto.register.schemas": True})
        data = serializers[writer_id](value, ctx)
        producer.produce(msg.topic(), key=msg.key(), value=data, partition=msg.partition())
        producer.poll(0)
        relayed += 1
        if msg.offset() + 1 >= ends[(msg.topic(), msg.partition())]:
            remaining.discard((msg.topic(), msg.partition()))
    if producer.flush(30):
        raise SystemExit("produce: not every message was acknowledged")
    consumer.close()
    print(json.dumps({"relayed": relayed, "writer_schemas": len(serializers)}))


if __name__ == "__main__":
    main()
