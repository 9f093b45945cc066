"""Sleeps longer than the function's timeout (event: seconds, default 10)."""

import time


def handler(event, context):
    seconds = float((event or {}).get("seconds", 10))
    print(f"sleeping {seconds} s", flush=True)
    time.sleep(seconds)
    return {"slept": seconds}
