"""An A2A agent written with the official Python SDK's server, for the interop tests.

It counts the messages of each context and answers "python heard #N: TEXT", so a test can
see that a conversation's turns reach it as one context. A message "wait" makes it start a
task and work on it until the task is canceled (the cancel test's slow agent); how each such
task ended is listed at GET /_test/ended, so a test can see the agent's side of a cancel. A
message "slow" is answered "python took its time" a second after it arrives (a slow tool).
The contexts of the "wait" and "slow" messages that arrived are listed at GET
/_test/started, so a test knows a turn reached the agent.

Usage: agent.py. Listens on a free loopback port and prints one JSON line, {"url": BASE},
once it accepts connections; runs until killed.
"""

import asyncio
import json
import socket
import sys

import uvicorn
from starlette.applications import Starlette

from starlette.responses import JSONResponse
from starlette.routing import Route

from a2a.helpers.proto_helpers import new_task, new_text_message
from a2a.server.agent_execution import AgentExecutor, RequestContext
from a2a.server.events import EventQueue
from a2a.server.request_handlers import DefaultRequestHandler
from a2a.server.routes import create_agent_card_routes, create_jsonrpc_routes
from a2a.server.tasks import InMemoryTaskStore, TaskUpdater
from a2a.types import a2a_pb2

# How each "wait" task ended: {"context": ..., "how": "cancel" | "cancelled"}.
ENDED = []
# The contexts of the "wait" and "slow" messages that arrived, in order.
STARTED = []


class Counter(AgentExecutor):
    def __init__(self):
        self.seen = {}

    async def execute(self, context: RequestContext, event_queue: EventQueue) -> None:
        text = context.get_user_input()
        if text in ("wait", "slow"):
            STARTED.append(context.context_id)
        if text == "slow":
            await asyncio.sleep(1.0)
            await event_queue.enqueue_event(
                new_text_message("python took its time", context_id=context.context_id)
            )
            return
        if text == "wait":
            task = new_task(
                context.task_id,
                context.context_id,
                a2a_pb2.TaskState.TASK_STATE_SUBMITTED,
                history=[context.message],
            )
            await event_queue.enqueue_event(task)
            await TaskUpdater(event_queue, context.task_id, context.context_id).start_work()
            try:
                await asyncio.Event().wait()  # ends only when the task is canceled
            except asyncio.CancelledError:
                ENDED.append({"context": context.context_id, "how": "cancelled"})
                raise
            return
        count = self.seen.get(context.context_id, 0) + 1
        self.seen[context.context_id] = count
        await event_queue.enqueue_event(
            new_text_message(f"python heard #{count}: {text}", context_id=context.context_id)
        )

    async def cancel(self, context: RequestContext, event_queue: EventQueue) -> None:
        ENDED.append({"context": context.context_id, "how": "cancel"})
        await TaskUpdater(event_queue, context.task_id, context.context_id).cancel()


async def ended(_request):
    return JSONResponse(ENDED)


async def started(_request):
    return JSONResponse(STARTED)


def card(base):
    return a2a_pb2.AgentCard(
        name="Python Counter",
        description="counts the messages of each context",
        version="1.0.0",
        supported_interfaces=[
            a2a_pb2.AgentInterface(
                url=base + "/", protocol_binding="JSONRPC", protocol_version="1.0"
            )
        ],
        capabilities=a2a_pb2.AgentCapabilities(streaming=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        skills=[
            a2a_pb2.AgentSkill(
                id="count", name="count", description="counts messages", tags=["count"]
            )
        ],
    )


async def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    base = "http://127.0.0.1:%d" % sock.getsockname()[1]
    agent_card = card(base)
    handler = DefaultRequestHandler(
        agent_executor=Counter(), task_store=InMemoryTaskStore(), agent_card=agent_card
    )
    routes = (
        create_agent_card_routes(agent_card)
        + [Route("/_test/ended", ended), Route("/_test/started", started)]
        + create_jsonrpc_routes(handler, "/")
    )
    server = uvicorn.Server(
        uvicorn.Config(Starlette(routes=routes), log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    print(json.dumps({"url": base}), flush=True)
    await serving


asyncio.run(main())
