"""Watch streams of the local API server over real HTTP: initial state, resume from a
resourceVersion, 410 Gone, selectors, timeoutSeconds, bookmarks, no lost events."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp
import pytest

from ironlb.lab.apiserver import LocalApiServer

pytestmark = pytest.mark.cluster

CM = "/api/v1/namespaces/default/configmaps"
MERGE = {"Content-Type": "application/merge-patch+json"}


async def create(
    http: aiohttp.ClientSession, name: str, path: str = CM, **labels: str
) -> dict[str, Any]:
    async with http.post(path, json={"metadata": {"name": name, "labels": labels}}) as rsp:
        assert rsp.status == 201
        body: dict[str, Any] = await rsp.json()
        return body


class Stream:
    """An open watch; ``next()`` reads one event (hang guard 20 s)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> dict[str, Any]:
        async with asyncio.timeout(20):
            line = await self.response.content.readline()
        assert line, "the watch stream ended"
        event: dict[str, Any] = json.loads(line)
        return event

    async def ended(self) -> bool:
        async with asyncio.timeout(20):
            return await self.response.content.readline() == b""


async def open_watch(http: aiohttp.ClientSession, path: str = CM, **params: str) -> Stream:
    rsp = await http.get(path, params={"watch": "true", **params})
    assert rsp.status == 200
    assert rsp.headers["Content-Type"].startswith("application/json")
    return Stream(rsp)


async def test_watch_without_version_starts_with_existing(http: aiohttp.ClientSession) -> None:
    await create(http, "pre-a")
    await create(http, "pre-b")
    stream = await open_watch(http)
    first, second = await stream.next(), await stream.next()
    assert [first["type"], second["type"]] == ["ADDED", "ADDED"]
    assert [first["object"]["metadata"]["name"], second["object"]["metadata"]["name"]] == [
        "pre-a",
        "pre-b",
    ]
    assert first["object"]["kind"] == "ConfigMap" and first["object"]["apiVersion"] == "v1"

    made = await create(http, "live")
    event = await stream.next()
    assert event["type"] == "ADDED" and event["object"] == made
    async with http.patch(f"{CM}/live", headers=MERGE, json={"data": {"a": "b"}}) as rsp:
        patched = await rsp.json()
    event = await stream.next()
    assert event == {"type": "MODIFIED", "object": patched}
    async with http.delete(f"{CM}/live") as rsp:
        assert rsp.status == 200
    event = await stream.next()
    assert event["type"] == "DELETED" and event["object"]["metadata"]["name"] == "live"
    assert int(event["object"]["metadata"]["resourceVersion"]) > int(
        patched["metadata"]["resourceVersion"]
    )
    stream.response.close()


async def test_watch_resumes_from_resource_version(http: aiohttp.ClientSession) -> None:
    first = await create(http, "r1")
    await create(http, "r2")
    await create(http, "r3")
    stream = await open_watch(http, resourceVersion=first["metadata"]["resourceVersion"])
    names = [(await stream.next())["object"]["metadata"]["name"] for _ in range(2)]
    assert names == ["r2", "r3"]
    await create(http, "r4")
    assert (await stream.next())["object"]["metadata"]["name"] == "r4"
    stream.response.close()


async def test_watch_across_namespaces_and_scoped(http: aiohttp.ClientSession) -> None:
    async with http.post("/api/v1/namespaces", json={"metadata": {"name": "other"}}) as rsp:
        assert rsp.status == 201
    everywhere = await open_watch(http, "/api/v1/services", resourceVersion="1")
    default_only = await open_watch(
        http, "/api/v1/namespaces/default/services", resourceVersion="1"
    )
    svc = "/api/v1/namespaces/{}/services"
    await create(http, "in-other", svc.format("other"))
    await create(http, "in-default", svc.format("default"))
    seen = [(await everywhere.next())["object"]["metadata"]["namespace"] for _ in range(2)]
    assert seen == ["other", "default"]
    only = await default_only.next()
    assert only["object"]["metadata"]["name"] == "in-default"
    everywhere.response.close()
    default_only.response.close()


async def test_watch_too_old_version_gets_410() -> None:
    server = LocalApiServer(history_size=5)
    await server.start()
    try:
        async with aiohttp.ClientSession(server.url) as http:
            first = await create(http, "old")
            for index in range(10):
                await create(http, f"n{index}")
            stream = await open_watch(http, resourceVersion=first["metadata"]["resourceVersion"])
            event = await stream.next()
            assert event["type"] == "ERROR"
            status = event["object"]
            assert status["kind"] == "Status" and status["code"] == 410
            assert status["reason"] == "Expired"
            assert await stream.ended()
            # A recent version is still within the history.
            async with http.get(CM) as rsp:
                current = (await rsp.json())["metadata"]["resourceVersion"]
            recent = await open_watch(http, resourceVersion=str(int(current) - 2))
            assert (await recent.next())["object"]["metadata"]["name"] == "n8"
            recent.response.close()
    finally:
        await server.stop()


async def test_watch_timeout_seconds_closes_stream(http: aiohttp.ClientSession) -> None:
    stream = await open_watch(http, resourceVersion="1", timeoutSeconds="1")
    assert await stream.ended()


async def test_watch_label_selector_transitions(http: aiohttp.ClientSession) -> None:
    await create(http, "sel")
    stream = await open_watch(
        http, labelSelector="pick=yes", allowWatchBookmarks="true", resourceVersion="1"
    )
    async with http.patch(
        f"{CM}/sel", headers=MERGE, json={"metadata": {"labels": {"pick": "yes"}}}
    ):
        pass
    entered = await stream.next()
    assert entered["type"] == "ADDED" and entered["object"]["metadata"]["labels"] == {"pick": "yes"}
    async with http.patch(f"{CM}/sel", headers=MERGE, json={"data": {"a": "1"}}):
        pass
    assert (await stream.next())["type"] == "MODIFIED"
    async with http.patch(
        f"{CM}/sel", headers=MERGE, json={"metadata": {"labels": {"pick": "no"}}}
    ):
        pass
    left = await stream.next()
    assert left["type"] == "DELETED" and left["object"]["metadata"]["labels"] == {"pick": "no"}
    await create(http, "unpicked")
    await create(http, "picked", pick="yes")
    assert (await stream.next())["object"]["metadata"]["name"] == "picked"
    stream.response.close()


async def test_watch_field_selector(http: aiohttp.ClientSession) -> None:
    stream = await open_watch(http, fieldSelector="metadata.name=wanted", resourceVersion="1")
    await create(http, "unwanted")
    await create(http, "wanted")
    assert (await stream.next())["object"]["metadata"]["name"] == "wanted"
    stream.response.close()


async def test_bookmarks_and_initial_events_end() -> None:
    server = LocalApiServer(bookmark_interval=0.2)
    await server.start()
    try:
        async with aiohttp.ClientSession(server.url) as http:
            made = await create(http, "bm")
            stream = await open_watch(
                http,
                allowWatchBookmarks="true",
                sendInitialEvents="true",
                resourceVersionMatch="NotOlderThan",
            )
            assert (await stream.next())["object"]["metadata"]["name"] == "bm"
            end = await stream.next()
            assert end["type"] == "BOOKMARK"
            assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
            assert (
                end["object"]["metadata"]["resourceVersion"] == made["metadata"]["resourceVersion"]
            )
            periodic = await stream.next()
            assert periodic["type"] == "BOOKMARK"
            assert periodic["object"]["kind"] == "ConfigMap"
            stream.response.close()
    finally:
        await server.stop()


async def test_stop_ends_open_watches() -> None:
    server = LocalApiServer()
    await server.start()
    async with aiohttp.ClientSession(server.url) as http:
        stream = await open_watch(http, resourceVersion="1")
        await server.stop()
        # A cut connection (rather than a finished stream) also counts as ended.
        with contextlib.suppress(aiohttp.ClientPayloadError):
            assert await stream.ended()


async def test_no_events_lost_under_concurrent_writes(http: aiohttp.ClientSession) -> None:
    writers, per_writer = 8, 25
    async with http.get(CM) as rsp:
        start = (await rsp.json())["metadata"]["resourceVersion"]
    streams = [await open_watch(http, resourceVersion=start) for _ in range(3)]

    async def writer(index: int) -> None:
        for seq in range(per_writer):
            name = f"w{index}-{seq}"
            await create(http, name)
            async with http.patch(
                f"{CM}/{name}", headers=MERGE, json={"data": {"n": str(seq)}}
            ) as rsp:
                assert rsp.status == 200

    await asyncio.gather(*(writer(i) for i in range(writers)))
    expected = writers * per_writer * 2
    for stream in streams:
        events = [await stream.next() for _ in range(expected)]
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
        assert versions == sorted(versions) and len(set(versions)) == expected
        assert versions[-1] - versions[0] == expected - 1  # every write, none skipped
        added = {e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"}
        assert len(added) == writers * per_writer
        stream.response.close()


async def test_removing_last_finalizer_emits_only_deleted(http: aiohttp.ClientSession) -> None:
    async with http.post(CM, json={"metadata": {"name": "f", "finalizers": ["lab/x"]}}) as rsp:
        created = await rsp.json()
    stream = await open_watch(http, resourceVersion=created["metadata"]["resourceVersion"])
    async with http.delete(f"{CM}/f") as rsp:
        assert rsp.status == 200
    marked = await stream.next()
    assert marked["type"] == "MODIFIED" and marked["object"]["metadata"]["deletionTimestamp"]
    async with http.patch(f"{CM}/f", headers=MERGE, json={"metadata": {"finalizers": None}}) as rsp:
        assert rsp.status == 200
    gone = await stream.next()
    assert gone["type"] == "DELETED" and gone["object"]["metadata"]["name"] == "f"
    await create(http, "after")
    assert (await stream.next())["object"]["metadata"]["name"] == "after"
    stream.response.close()
