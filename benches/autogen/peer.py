"""The peer of `benches/cluster.sh`: AutoGen's distributed (gRPC) runtime, three processes.

    python peer.py host PORT              # the host runtime that routes every message
    python peer.py worker ADDRESS         # a worker hosting the `echo` agent
    python peer.py sender ADDRESS N P     # N request/reply round trips, P in flight

The sender prints one JSON line: round trips per second and latency percentiles, measured
as `colloquy load` measures its own (from send to reply, per round trip). Nothing is
stored: AutoGen's runtime keeps its routing in the host's memory.
"""

import asyncio
import json
import sys
import time
from dataclasses import dataclass

from autogen_core import AgentId, MessageContext, RoutedAgent, message_handler, try_get_known_serializers_for_type
from autogen_ext.runtimes.grpc import GrpcWorkerAgentRuntime, GrpcWorkerAgentRuntimeHost


@dataclass
class Msg:
    content: str


class Echo(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("echoes what it receives")

    @message_handler
    async def on_msg(self, message: Msg, ctx: MessageContext) -> Msg:
        return Msg(message.content)


async def host(port: str) -> None:
    runtime = GrpcWorkerAgentRuntimeHost(address=f"127.0.0.1:{port}")
    runtime.start()
    print(json.dumps({"ready": "host"}), flush=True)
    await runtime.stop_when_signal()


async def worker(address: str) -> None:
    runtime = GrpcWorkerAgentRuntime(host_address=address)
    runtime.add_message_serializer(try_get_known_serializers_for_type(Msg))
    await runtime.start()
    await Echo.register(runtime, "echo", lambda: Echo())
    print(json.dumps({"ready": "worker"}), flush=True)
    await runtime.stop_when_signal()


async def sender(address: str, n: int, parallel: int) -> None:
    runtime = GrpcWorkerAgentRuntime(host_address=address)
    runtime.add_message_serializer(try_get_known_serializers_for_type(Msg))
    await runtime.start()
    target = AgentId("echo", "default")
    payload = "x" * 64
    for _ in range(50):  # warm-up: connections, the agent's first instance
        await runtime.send_message(Msg(payload), target)
    latencies: list[float] = []
    next_index = 0

    async def drive() -> None:
        nonlocal next_index
        while next_index < n:
            next_index += 1
            sent = time.perf_counter()
            reply = await runtime.send_message(Msg(payload), target)
            latencies.append(time.perf_counter() - sent)
            assert reply.content == payload

    started = time.perf_counter()
    await asyncio.gather(*(drive() for _ in range(parallel)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(p: float) -> int:
        return int(latencies[max(0, int(len(latencies) * p + 0.999999) - 1)] * 1e6)

    print(json.dumps({
        "round_trips": len(latencies),
        "parallel": parallel,
        "round_trips_per_sec": round(len(latencies) / elapsed),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
    }), flush=True)
    await runtime.stop()


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "host":
        asyncio.run(host(sys.argv[2]))
    elif role == "worker":
        asyncio.run(worker(sys.argv[2]))
    elif role == "sender":
        asyncio.run(sender(sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
    else:
        sys.exit(f"unknown role {role}")
