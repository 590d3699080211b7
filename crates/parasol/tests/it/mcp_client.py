"""An MCP client built on the official Python SDK, driven by mcp.rs.

    mcp_client.py SCENARIO http URL KEY
    mcp_client.py SCENARIO stdio PARASOL_BINARY URL KEY HOME

Runs one scenario against Parasol's MCP server, over Streamable HTTP (the
key sent as `Authorization: Bearer`) or over stdio through `parasol mcp`,
and prints what it saw as one JSON object on stdout. The Rust test makes
the assertions; this script only records.

Scenarios:
  lifecycle  initialize, list tools, list instance types, create an
             instance, watch it become active, delete it
  create     initialize, try to create an instance, list instances
  connect    initialize only; records the error if the connection fails
"""

import asyncio
import json
import sys
import time

import httpx
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


CREATE = {
    "cloud": "massedcompute",
    "region": "us-central-1",
    "shade_instance_type": "A6000",
    "shade_cloud": True,
    "name": "mcp-box",
}


async def lifecycle(session, out):
    out["tools"] = [dump(t) for t in (await session.list_tools()).tools]
    types = await session.call_tool(
        "instances_types", {"cloud": "massedcompute", "gpu_type": "A6000", "available": True}
    )
    out["types"] = dump(types)
    created = await session.call_tool("instances_create", CREATE)
    out["create"] = dump(created)
    if created.isError:
        return
    iid = created.structuredContent["id"]
    statuses = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        info = await session.call_tool("instances_info", {"id": iid})
        status = info.structuredContent.get("status") if info.structuredContent else None
        if not statuses or statuses[-1] != status:
            statuses.append(status)
        if status in ("active", "error") or info.isError:
            break
        await asyncio.sleep(0.1)
    out["statuses"] = statuses
    out["delete"] = dump(await session.call_tool("instances_delete", {"id": iid}))
    out["after_delete"] = dump(await session.call_tool("instances_info", {"id": iid}))
    out["unknown_id"] = dump(await session.call_tool("instances_info", {"id": "not-an-id"}))


async def create(session, out):
    out["create"] = dump(await session.call_tool("instances_create", CREATE))
    out["list"] = dump(await session.call_tool("instances", {}))


def limit(scenario):
    # A refused connection should fail fast; a hang is a failure too.
    return 30 if scenario == "connect" else 120


async def run(scenario, session, out):
    out["initialize"] = dump(await session.initialize())
    if scenario == "lifecycle":
        await lifecycle(session, out)
    elif scenario == "create":
        await create(session, out)


async def main(argv):
    scenario, transport = argv[1], argv[2]
    out = {}
    try:
        if transport == "http":
            url, key = argv[3], argv[4]
            headers = {"Authorization": f"Bearer {key}"}
            async with httpx.AsyncClient(headers=headers, timeout=30) as http:
                async with streamable_http_client(url, http_client=http) as (read, write, _):
                    async with ClientSession(read, write) as session:
                        await asyncio.wait_for(run(scenario, session, out), limit(scenario))
        else:
            binary, url, key, home = argv[3], argv[4], argv[5], argv[6]
            params = StdioServerParameters(
                command=binary,
                args=["mcp"],
                env={
                    "PARASOL_URL": url,
                    "PARASOL_API_KEY": key,
                    "HOME": home,
                    "XDG_CONFIG_HOME": f"{home}/config",
                },
            )
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await asyncio.wait_for(run(scenario, session, out), limit(scenario))
    except BaseException as e:  # noqa: BLE001 - recorded for the Rust test to judge
        if isinstance(e, KeyboardInterrupt):
            raise
        out["error"] = describe(e)
    print(json.dumps(out))


def describe(e):
    """The error and, for a group, every error inside it."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
