#!/usr/bin/env python3
"""Turns a history exported by `dsss sim run --history FILE` into a Jepsen history (EDN), one
register at a time, for Knossos's linearizability checker with its register model.

Usage: history_to_jepsen.py HISTORY.jsonl OBJECT > register.edn

DSSS promises linearizability for writes and for reads after sync(); local reads are only
sequentially consistent, so they are left out. A write whose effect is unknown (ok: false)
becomes an :info completion, as Jepsen records a call that timed out. Every operation becomes
an :invoke event at invoke_us and a completion at complete_us, in time order.
"""

import json
import sys


def events(lines, register):
    for line in lines:
        operation = json.loads(line)
        if operation["object"] != register:
            continue
        if operation["op"] == "write":
            invoke = {"type": "invoke", "f": "write", "value": operation["value"]}
            done = dict(invoke, type="ok" if operation["ok"] else "info")
        elif operation["op"] == "read" and operation.get("synced"):
            invoke = {"type": "invoke", "f": "read", "value": None}
            done = {"type": "ok", "f": "read", "value": operation["value"]}
        else:
            continue
        process = operation["process"]
        yield (operation["invoke_us"], 0, dict(invoke, process=process))
        yield (operation["complete_us"], 1, dict(done, process=process))


def edn(event):
    value = "nil" if event["value"] is None else str(event["value"])
    return "{:process %d, :type :%s, :f :%s, :value %s}" % (
        event["process"], event["type"], event["f"], value)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    path, register = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as history:
        ordered = sorted(events(history, register), key=lambda item: item[:2])
    print("[")
    for _, _, event in ordered:
        print(" " + edn(event))
    print("]")


if __name__ == "__main__":
    main()
