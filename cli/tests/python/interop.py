"""Talks to `colloquy serve` with the official A2A Python SDK, as an outside agent would.

Usage:
  interop.py client BASE TOKEN            the calls of an integrator's first hour
  interop.py first BASE TOKEN             one message; prints its task
  interop.py continue BASE TOKEN CONTEXT  one more message in CONTEXT; prints its task

Prints one JSON object with what each call returned; the Rust test
(cli/tests/python_interop.rs) asserts on it.
"""

import asyncio
import json
import sys

import httpx
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


def as_dict(proto):
    return json_format.MessageToDict(proto)


async def send(client, request):
    """Every event the call yields, as dicts (one for a plain call, several streamed)."""
    return [as_dict(event) async for event in client.send_message(request)]


async def connect(base, agent, token, streaming=False):
    http = httpx.AsyncClient(headers={"Authorization": "Bearer " + token}, timeout=30)
    config = ClientConfig(streaming=streaming, httpx_client=http)
    return await create_client(base + "/agents/" + agent, client_config=config)


async def client(base, token):
    seen = {}
    extractor = await connect(base, "extractor", token)
    document = [{"data": {"text": "name: Grace\nlanguage: COBOL"}}]
    first = (await send(extractor, message("py-1", document)))[-1]
    context = first["task"]["contextId"]
    seen["first"] = first
    seen["retried"] = (await send(extractor, message("py-1", document)))[-1]
    # The second turn of the same context.
    more = [{"data": {"text": "name: Grace Hopper\nnavy: yes"}}]
    seen["second"] = (await send(extractor, message("py-2", more, context)))[-1]
    seen["fetched"] = as_dict(
        await extractor.get_task(a2a_pb2.GetTaskRequest(id=first["task"]["id"]))
    )
    # A plain text part is not the {"text": ...} object the extractor wants: its handler
    # fails, and the caller sees a failed task.
    seen["failed"] = (await send(extractor, message("py-3", [{"text": "no fields"}])))[-1]

    # Streaming, as the SDK does by default when the card says the agent streams.
    echo = await connect(base, "echo", token, streaming=True)
    seen["streamed"] = await send(echo, message("py-4", [{"text": "hello, stream"}]))

    # Cancel in flight: the remote Python agent waits until canceled; its task is followed
    # through colloquy and canceled once it is working.
    counter = await connect(base, "python-counter", token, streaming=True)
    events = []
    async for event in counter.send_message(message("py-5", [{"text": "wait"}])):
        event = as_dict(event)
        events.append(event)
        if len(events) == 2:  # submitted, then working: the handler is running
            task_id = event["statusUpdate"]["taskId"]
            seen["canceled"] = as_dict(
                await counter.cancel_task(a2a_pb2.CancelTaskRequest(id=task_id))
            )
    seen["cancel_stream"] = events

    # A token the server does not know.
    try:
        stranger = await connect(base, "echo", "not-a-token")
        await send(stranger, message("py-6", [{"text": "let me in"}]))
        seen["wrong_token"] = "accepted"
    except Exception as error:  # the SDK's HTTP error, whatever its class
        seen["wrong_token"] = f"{type(error).__name__}: {error}"
    print(json.dumps(seen))


async def one(base, token, message_id, context=None):
    echo = await connect(base, "echo", token)
    answer = (await send(echo, message(message_id, [{"text": message_id}], context)))[-1]
    print(json.dumps(answer))


mode = sys.argv[1]
if mode == "client":
    asyncio.run(client(sys.argv[2], sys.argv[3]))
elif mode == "first":
    asyncio.run(one(sys.argv[2], sys.argv[3], "before-restart"))
elif mode == "continue":
    asyncio.run(one(sys.argv[2], sys.argv[3], "after-restart", sys.argv[4]))
else:
    sys.exit("unknown mode " + mode)
