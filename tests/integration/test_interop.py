"""Interoperability with independent Kafka clients: kcat reads what simulate wrote; an
event framed by hand (xxd) and produced with kcat, and one produced by the pure-Python
client, show up in the view."""
import os
import struct
import subprocess

import harness
from harness import avro_string, zigzag






def customer_registered(customer_id, name, event_id):
    """Schema id 1 (schemas/catalog.yaml): c360.customers.CustomerRegistered, by hand."""
    body = (avro_string(event_id) + zigzag(1700000000000) + zigzag(1) + avro_string(customer_id)
            + avro_string(name) + avro_string("interop@example.org") + avro_string("+15550100000")
            + zigzag(1) + b"\x01")  # preferred_channel = SMS, marketing_opt_in = true
    return b"\x00" + struct.pack(">I", 1) + body


def test_kcat_reads_what_simulate_wrote(broker, workdir):
    summary, _ = harness.simulate(broker.bootstrap, workdir, 50, 9)
    for topic, count in summary["by_topic"].items():
        out = subprocess.run(["kcat", "-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning",
                              "-e", "-q", "-f", "%S %R\n"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == count, (topic, len(lines), count)
        # every message is Confluent-framed: magic byte 0 and a 4-byte schema id
        assert all(int(line.split()[0]) > 5 for line in lines)


def test_kcat_and_python_producers_show_up_in_the_view(broker, workdir):
    harness.simulate(broker.bootstrap, workdir, 5, 4)
    # 1. framing and body written as hex by the test, bytes made by xxd, produced by kcat
    hex_path = os.path.join(workdir, "event.hex")
    bin_path = os.path.join(workdir, "event.bin")
    with open(hex_path, "w") as f:
        f.write(customer_registered("KCAT-1", "Kay Cat", "interop-kcat-1").hex())
    subprocess.run(f"xxd -r -p {hex_path} > {bin_path}", shell=True, check=True)
    subprocess.run(["kcat", "-P", "-b", broker.bootstrap, "-t", "customers", "-k", "KCAT-1",
                    bin_path], check=True, timeout=60)
    # 2. the pure-Python client (python3-kafka), an independent implementation
    from kafka import KafkaProducer
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, api_version=(2, 5, 0))
    producer.send("customers", key=b"PY-1",
                  value=customer_registered("PY-1", "Py Thon", "interop-py-1")).get(timeout=30)
    producer.close()

    config = harness.write_config(workdir, broker.bootstrap, projector__metrics_listen="")
    out = harness.run_projector(config)
    assert out.returncode == 0, out.stderr[-2000:]
    docs = harness.inspect_docs(config, ["KCAT-1", "PY-1"])
    assert docs["KCAT-1"]["sections"]["profile"]["name"] == "Kay Cat"
    assert docs["KCAT-1"]["sections"]["profile"]["preferred_channel"] == "SMS"
    assert docs["PY-1"]["sections"]["profile"]["name"] == "Py Thon"
