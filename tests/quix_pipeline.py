"""An exactly-once quixstreams pipeline, run by test_stream_processing.py with the Python of
.venv-quix (quixstreams needs an older confluent-kafka than the rest of the tests).

Usage: quix_pipeline.py BOOTSTRAP INPUT OUTPUT GROUP SLEEP_MS IDLE_S

Reads JSON records {"n": int} from INPUT, writes {"n": n, "square": n*n} to OUTPUT with
processing_guarantee="exactly-once", taking SLEEP_MS per record (so that a test can kill it
mid-stream), and stops once no record came for IDLE_S seconds.
"""

import sys
import time

from quixstreams import Application


def main() -> None:
    bootstrap, source, sink, group = sys.argv[1:5]
    sleep_s, idle_s = int(sys.argv[5]) / 1000, float(sys.argv[6])
    app = Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        auto_create_topics=False,
        use_changelog_topics=False,
        commit_interval=0.5,
        # A killed run's member must leave the group quickly for the next run to take over.
        consumer_extra_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        # A fixed transactional id: a restarted pipeline fences the killed one and aborts the
        # transaction it left open (quixstreams picks a random id per run otherwise, and the
        # open transaction would hold the output back until transaction.timeout.ms).
        producer_extra_config={"transactional.id": "eos-pipeline", "transaction.timeout.ms": 15000},
    )
    source_topic = app.topic(source, value_deserializer="json")
    sink_topic = app.topic(sink, value_serializer="json")
    sdf = app.dataframe(source_topic)

    def transform(v):
        time.sleep(sleep_s)
        return {"n": v["n"], "square": v["n"] * v["n"]}

    sdf = sdf.apply(transform)
    sdf.to_topic(sink_topic)
    print("pipeline running", flush=True)
    app.run(timeout=idle_s)


if __name__ == "__main__":
    main()
