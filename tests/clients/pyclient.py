#!/usr/bin/env python3
"""Drives rocktor with PyPI `rocketmq` 0.4.4 (ctypes over Apache rocketmq-client-cpp): an
independent, real RocketMQ client for the end-to-end tests.

  pyclient.py produce NAMESRV TOPIC COUNT      sync sends with tags, keys and a `seq` property
  pyclient.py push    NAMESRV TOPIC GROUP COUNT [EXPR]   push-consumes until COUNT distinct bodies

Prints one JSON line per message, then a final line `OK <n>`; exits non-zero on failure.
"""
import json
import os
import sys
import threading
import time

from rocketmq.client import Message, Producer, PushConsumer


def produce(ns, topic, count):
    p = Producer("PG_rocktor_e2e")
    p.set_namesrv_addr(ns)
    p.start()
    try:
        for i in range(count):
            m = Message(topic)
            m.set_tags("TagA" if i % 2 == 0 else "TagB")
            m.set_keys("key-%d" % i)
            m.set_property("seq", str(i))
            m.set_body("body-%d" % i)
            r = p.send_sync(m)
            if int(r.status) != 0:
                raise RuntimeError("send %d: status %s" % (i, r.status))
            print(json.dumps({"seq": i, "msg_id": r.msg_id, "offset": r.offset}), flush=True)
    finally:
        p.shutdown()
    return count


def push(ns, topic, group, count, expr):
    got = {}
    lock = threading.Lock()
    c = PushConsumer(group)
    c.set_namesrv_addr(ns)
    c.set_instance_name("e2e_%d" % os.getpid())

    def cb(m):
        body = (m.body or b"").decode()
        with lock:
            got[body] = {"tags": (m.tags or b"").decode(), "keys": (m.keys or b"").decode(),
                         "seq": (m.get_property("seq") or b"").decode(), "queue_offset": m.queue_offset}

    c.subscribe(topic, cb, expr)
    c.start()
    deadline = time.time() + 60
    while time.time() < deadline:
        with lock:
            if len(got) >= count:
                break
        time.sleep(0.1)
    time.sleep(1)  # let late duplicates show up
    c.shutdown()
    for body, rec in sorted(got.items()):
        rec["body"] = body
        print(json.dumps(rec), flush=True)
    if len(got) < count:
        raise RuntimeError("received %d of %d" % (len(got), count))
    return len(got)


def main():
    try:
        if sys.argv[1] == "produce":
            n = produce(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        elif sys.argv[1] == "push":
            expr = sys.argv[6] if len(sys.argv) > 6 else "*"
            n = push(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), expr)
        else:
            print(__doc__)
            os._exit(2)
    except Exception as e:
        print("ERROR %s: %s" % (type(e).__name__, e), flush=True)
        os._exit(1)
    print("OK %d" % n, flush=True)
    os._exit(0)  # skip the native library's slow destructor


if __name__ == "__main__":
    main()
