"""The official MCP Python SDK's client (mcp 2.x) against colloquy, for cli/tests/mcp_interop.rs.

    mcp_client.py stdio COLLOQUY DB      launches `COLLOQUY mcp --db DB --demo-modules --as py-desk`
    mcp_client.py http URL TOKEN         connects to URL (colloquy serve's /mcp) with a bearer token
    mcp_client.py refused URL TOKEN      connects with a token the server does not know

Prints one JSON object of what it saw; the Rust test asserts on it.
"""

import asyncio
import json
import sys

from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client


def outcome(result):
    """A tool result as the test reads it."""
    text = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    return {"is_error": bool(result.is_error), "structured": result.structured_content, "text": text}


async def converse(client):
    seen = {}
    seen["tools"] = sorted(tool.name for tool in (await client.list_tools()).tools)
    seen["modules"] = outcome(await client.call_tool("list_modules", {}))
    started = await client.call_tool("start_conversation", {"with": ["echo"], "intent": "query"})
    seen["started"] = outcome(started)
    conversation = started.structured_content["conversation_id"]
    seen["sent"] = outcome(await client.call_tool("send", {"conversation_id": conversation, "content": {"text": "hello"}}))
    uri = f"colloquy://conversations/{conversation}"
    # A live subscription to the transcript hears of the next turn.
    async with client.listen(resource_subscriptions=[uri]) as subscription:
        seen["honored"] = list(subscription.honored.resource_subscriptions or [])
        seen["sent_again"] = outcome(
            await client.call_tool("send", {"conversation_id": conversation, "content": "again"})
        )
        event = await asyncio.wait_for(subscription.__anext__(), timeout=30)
        seen["event"] = {"kind": type(event).__name__, "uri": getattr(event, "uri", None)}
    transcript = await client.read_resource(uri)
    seen["transcript"] = json.loads(transcript.contents[0].text)
    seen["resources"] = [resource.uri for resource in (await client.list_resources()).resources]
    # Refusals are tool results with isError, and store nothing.
    seen["missing_content"] = outcome(await client.call_tool("send", {"conversation_id": conversation}))
    seen["unknown_conversation"] = outcome(
        await client.call_tool("send", {"conversation_id": "0190a5d2-0000-7000-8000-000000000000", "content": 1})
    )
    seen["not_a_module"] = outcome(await client.call_tool("start_conversation", {"with": ["nobody-here"]}))
    seen["found"] = outcome(await client.call_tool("find_conversations", {"module": "echo"}))
    seen["ended"] = outcome(await client.call_tool("end_conversation", {"conversation_id": conversation}))
    seen["after_end"] = outcome(await client.call_tool("send", {"conversation_id": conversation, "content": "late"}))
    seen["history"] = outcome(await client.call_tool("history", {"conversation_id": conversation, "last": 2}))
    return seen


def over_http(url, token):
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    return Client(streamable_http_client(url, http_client=http))


async def main():
    mode = sys.argv[1]
    if mode == "stdio":
        colloquy, db = sys.argv[2], sys.argv[3]
        server = StdioServerParameters(
            command=colloquy, args=["mcp", "--db", db, "--demo-modules", "--as", "py-desk"]
        )
        async with Client(server) as client:
            seen = await converse(client)
    elif mode == "http":
        async with over_http(sys.argv[2], sys.argv[3]) as client:
            seen = await converse(client)
    elif mode == "refused":
        try:
            async with over_http(sys.argv[2], sys.argv[3]) as client:
                await client.list_tools()
            seen = {"refused": False}
        except BaseException as error:  # the SDK raises from a task group: an ExceptionGroup
            seen = {"refused": True, "error": repr(error)}
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(seen))


asyncio.run(main())
