"""The environment variables Lambda gives the runtime, and the narrower set extensions get."""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from lambda_sandbox.runtimes import RUNTIME_DIR, Runtime

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
PATH = "/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin"
LD_LIBRARY_PATH = (
    "/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib"
)
# Lambda hands out an execution role's temporary credentials; these only look like them.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "ASIASANDBOXEXAMPLE00",
    "AWS_SECRET_ACCESS_KEY": "sandboxSecretAccessKeyExampleOnly0000000",
    "AWS_SESSION_TOKEN": "sandbox-session-token-example-only",
}
# What Lambda keeps from extensions (reference section 6); every `_`-prefixed key goes too.
NOT_FOR_EXTENSIONS = frozenset(
    {
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "LAMBDA_TASK_ROOT",
        "LAMBDA_RUNTIME_DIR",
        "AWS_XRAY_CONTEXT_MISSING",
        "AWS_XRAY_DAEMON_ADDRESS",
        "PYTHONPATH",
        "NODE_PATH",
    }
)


@dataclass(frozen=True)
class Identity:
    function_name: str
    memory_mb: int
    handler: str

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"


def log_stream_name(epoch_s: float) -> str:
    day = time.strftime("%Y/%m/%d", time.gmtime(epoch_s))
    return f"{day}/[$LATEST]{uuid.uuid4().hex}"


def function_env(
    identity: Identity,
    runtime: Runtime,
    api_address: str,
    user_env: Mapping[str, str],
    log_stream: str,
) -> dict[str, str]:
    """The runtime's environment: the user's variables, then Lambda's own (which win)."""
    env = dict(user_env)
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": identity.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(identity.memory_mb),
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{identity.function_name}",
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_RUNTIME_API": api_address,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "_HANDLER": identity.handler,
            "LAMBDA_TASK_ROOT": "/var/task",
            "LAMBDA_RUNTIME_DIR": RUNTIME_DIR,
            "TZ": ":UTC",
            "LANG": "en_US.UTF-8",
            "PATH": PATH,
            "LD_LIBRARY_PATH": LD_LIBRARY_PATH,
            **FAKE_CREDENTIALS,
            **runtime.env,
        }
    )
    if runtime.execution_env:
        env["AWS_EXECUTION_ENV"] = runtime.execution_env
    return env


def extension_env(runtime_env: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        for key, value in runtime_env.items()
        if key not in NOT_FOR_EXTENSIONS and not key.startswith("_")
    }
