"""Talks to `colloquy serve` with the official A2A Python SDK, as an outside agent would.

Usage: interop.py BASE_URL. Prints one JSON object with what each call returned; the Rust
test (cli/tests/python_interop.rs) asserts on it.
"""

import asyncio
import json
import sys

from google.protobuf import json_format

from a2a.client import ClientConfig, create_client
from a2a.types import a2a_pb2


def message(message_id, parts, context_id=None):
    body = {"messageId": message_id, "role": "ROLE_USER", "parts": parts}
    if context_id:
        body["contextId"] = context_id
    return a2a_pb2.SendMessageRequest(
        message=json_format.ParseDict(body, a2a_pb2.Message())
    )


async def send(client, request):
    answers = [json_format.MessageToDict(r) async for r in client.send_message(request)]
    return answers[-1]


async def main(base):
    config = ClientConfig(streaming=False)
    extractor = await create_client(base + "/agents/extractor", client_config=config)
    document = [{"data": {"text": "name: Grace\nlanguage: COBOL"}}]
    first = await send(extractor, message("py-1", document))
    retried = await send(extractor, message("py-1", document))
    task_id = first["task"]["id"]
    fetched = json_format.MessageToDict(
        await extractor.get_task(a2a_pb2.GetTaskRequest(id=task_id))
    )
    # A plain text part is not the {"text": ...} object the extractor wants: its handler
    # fails, and the caller sees a failed task.
    failed = await send(extractor, message("py-2", [{"text": "no fields here"}]))
    print(
        json.dumps(
            {"first": first, "retried": retried, "fetched": fetched, "failed": failed}
        )
    )


asyncio.run(main(sys.argv[1]))
