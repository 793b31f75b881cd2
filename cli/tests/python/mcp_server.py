"""An MCP server written with the official Python SDK's MCPServer class (mcp 2.x), over stdio,
for cli/tests/mcp_interop.rs: colloquy joins it to a hub as a module.

Tools: word_count (structured), shout (text), refuse (a tool error), crash (the process dies).
"""

import os
from typing import TypedDict

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("py-tools", instructions="Counts words and shouts, for the interop test.")


class Count(TypedDict):
    words: int
    pid: int


@server.tool()
def word_count(text: str) -> Count:
    """Count the words of text."""
    return {"words": len(text.split()), "pid": os.getpid()}


@server.tool(structured_output=False)
def shout(text: str) -> str:
    """Say text louder."""
    return text.upper() + "!"


@server.tool()
def refuse(reason: str) -> str:
    """Fail with reason."""
    raise ToolError(reason)


@server.tool()
def crash() -> str:
    """End the server's process at once."""
    os._exit(3)


if __name__ == "__main__":
    server.run("stdio")
