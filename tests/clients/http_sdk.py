"""A small driver over PyPI mq-http-sdk 1.0.3 (the Aliyun MQ HTTP SDK) for the end-to-end tests.

Each command uses the SDK's public API only and prints one JSON object per line:
  publish  --topic T --body B [--tag T] [--key K] [--prop k=v]... [--deliver-at MS]
           [--trans-check S] [--sharding-key K]
  consume  --topic T --group G [--n N] [--wait S] [--tag EXPR] [--order]
  ack      --topic T --group G HANDLE...
  half     --topic T --group G [--n N] [--wait S]       (consume_half_message)
  commit / rollback --topic T --group G HANDLE
Common: --endpoint http://127.0.0.1:PORT [--ak AK --sk SK] [--ns NS]
An SDK exception prints {"event": "error", "type": ..., "message": ..., "sub_errors": ...}.
"""

import argparse
import json
import sys

from mq_http_sdk.mq_client import MQClient
from mq_http_sdk.mq_exception import MQExceptionBase
from mq_http_sdk.mq_producer import TopicMessage


def out(**kw):
    print(json.dumps(kw, ensure_ascii=False), flush=True)


def message_json(m):
    return {
        "event": "message",
        "id": m.message_id,
        "handle": m.receipt_handle,
        "body": m.message_body,
        "md5": m.message_body_md5,
        "tag": m.message_tag,
        "key": m.get_message_key(),
        "props": m.properties,
        "consumed_times": m.consumed_times,
        "publish_time": m.publish_time,
        "first_consume_time": m.first_consume_time,
        "next_consume_time": m.next_consume_time,
    }


def main():
    p = argparse.ArgumentParser()
    p.add_argument("command")
    p.add_argument("handles", nargs="*")
    p.add_argument("--endpoint", required=True)
    p.add_argument("--ak", default="ak")
    p.add_argument("--sk", default="sk")
    p.add_argument("--ns", default="")
    p.add_argument("--topic", required=True)
    p.add_argument("--group", default="")
    p.add_argument("--body", default="")
    p.add_argument("--tag", default="")
    p.add_argument("--key", default="")
    p.add_argument("--prop", action="append", default=[])
    p.add_argument("--deliver-at", type=int, default=0)
    p.add_argument("--trans-check", type=int, default=0)
    p.add_argument("--sharding-key", default="")
    p.add_argument("--n", type=int, default=16)
    p.add_argument("--wait", type=int, default=-1)
    p.add_argument("--order", action="store_true")
    a = p.parse_intermixed_args()
    client = MQClient(a.endpoint, a.ak, a.sk)
    try:
        if a.command == "publish":
            msg = TopicMessage(a.body, a.tag)
            if a.key:
                msg.set_message_key(a.key)
            for kv in a.prop:
                k, v = kv.split("=", 1)
                msg.put_property(k, v)
            if a.deliver_at:
                msg.set_start_deliver_time(a.deliver_at)
            if a.sharding_key:
                msg.set_sharding_key(a.sharding_key)
            if a.trans_check:
                msg.set_trans_check_immunity_time(a.trans_check)
                producer = client.get_trans_producer(a.ns, a.topic, a.group or "GID_TRANS")
            else:
                producer = client.get_producer(a.ns, a.topic)
            r = producer.publish_message(msg)
            out(event="published", id=r.message_id, md5=r.message_body_md5,
                handle=getattr(r, "receipt_handle", ""))
        elif a.command == "consume":
            consumer = client.get_consumer(a.ns, a.topic, a.group, a.tag)
            if a.order:
                msgs = consumer.consume_message_orderly(a.n, a.wait)
            else:
                msgs = consumer.consume_message(a.n, a.wait)
            for m in msgs:
                out(**message_json(m))
        elif a.command == "ack":
            consumer = client.get_consumer(a.ns, a.topic, a.group)
            consumer.ack_message(a.handles)
            out(event="acked")
        elif a.command == "half":
            producer = client.get_trans_producer(a.ns, a.topic, a.group)
            for m in producer.consume_half_message(a.n, a.wait):
                out(**message_json(m))
        elif a.command in ("commit", "rollback"):
            producer = client.get_trans_producer(a.ns, a.topic, a.group)
            getattr(producer, a.command)(a.handles[0])
            out(event=a.command)
        else:
            sys.exit("unknown command " + a.command)
    except MQExceptionBase as e:
        out(event="error", type=e.type, message=e.message,
            sub_errors=getattr(e, "sub_errors", None))


if __name__ == "__main__":
    main()
