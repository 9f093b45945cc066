"""Returns the event and what the context says; logs through print and logging."""

import logging

logger = logging.getLogger()
logger.setLevel(logging.INFO)


def handler(event, context):
    print("print from python_echo", flush=True)
    logger.info("logging from python_echo %s", context.aws_request_id)
    return {
        "event": event,
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def fails(event, context):
    raise ValueError("boom from python_echo")
