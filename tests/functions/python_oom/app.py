"""Allocates memory, every page touched, until the environment's memory limit kills it."""

MIB = 1024 * 1024


def handler(event, context):
    step = int((event or {}).get("step_mib", 16))
    held = []
    while True:
        held.append(b"\x01" * (step * MIB))
        print(f"holding {len(held) * step} MiB", flush=True)
