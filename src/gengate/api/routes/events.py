"""Server-sent event streams: one job's changes, and every change of the account's jobs.

The routes authenticate and look the job up before the stream starts, so a refusal is
an ordinary error answer in the one error shape. The stream itself is
sse-starlette's `EventSourceResponse`: keep-alive comments every `events_keepalive_s`,
the generator cancelled when the client disconnects (its `with` blocks then drop their
notification watches), and the streams ended when the server shuts down, so an open
dashboard never holds a restart up. What is sent, and when, is `services/events.py`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from gengate.api.deps import CallerDep
from gengate.api.links import links_for
from gengate.api.schemas import AUTHED, documented
from gengate.services import events as event_service
from gengate.services.events import Checkpoint, JobEvent
from gengate.services.gateway import Gateway
from gengate.services.records import render_job

router = APIRouter(tags=["events"])

#: Lines end with LF alone: the SSE format allows it, and every client reads it.
LINE_END = "\n"
#: A client that reads nothing for this long (its socket buffers full) is dropped.
SEND_TIMEOUT_S = 60.0
EVENT_NAMES = ["queued", "running", "progress", "succeeded", "partial", "failed", "cancelled"]

LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        max_length=100,
        description="The `id` of the last event received, to resume after it.",
    ),
]


def _stream_response(description: str, id_description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI description of an event stream: each event (`itemSchema`, as OpenAPI
    3.2 writes it) carries a job record as one line of JSON in `data`."""
    event = {
        "type": "object",
        "required": ["event", "id", "data"],
        "properties": {
            "event": {
                "type": "string",
                "enum": EVENT_NAMES,
                "description": "The job's status, or `progress` for a running job that "
                "changed (progress, scenes) and is still running.",
            },
            "id": {"type": "string", "description": id_description},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": "#/components/schemas/JobRecord"},
                "description": "The job record, on one line.",
            },
        },
    }
    return {
        200: {"description": description, "content": {"text/event-stream": {"itemSchema": event}}}
    }


def _keep_alive() -> ServerSentEvent:
    return ServerSentEvent(comment="keep-alive", sep=LINE_END)


def _event_stream(
    request: Request, gw: Gateway, events: AsyncGenerator[JobEvent | Checkpoint, None]
) -> EventSourceResponse:
    async def rendered() -> AsyncIterator[ServerSentEvent]:
        # Closing this generator (the client went away) closes the service's at once,
        # so that its notification watch is dropped now, not when it is collected.
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, Checkpoint):
                    # An id and no data: clients take the id, and dispatch no event.
                    yield ServerSentEvent(id=event.id, sep=LINE_END)
                    continue
                # Links are built per event: a stream can outlive its first event's links.
                record = render_job(
                    event.job, links_for(gw, request), queue_position=event.queue_position
                )
                yield ServerSentEvent(
                    orjson.dumps(record).decode(), event=event.name, id=event.id, sep=LINE_END
                )

    return EventSourceResponse(
        rendered(),
        ping=gw.settings.events_keepalive_s,
        ping_message_factory=_keep_alive,
        sep=LINE_END,
        send_timeout=SEND_TIMEOUT_S,
    )


@router.get(
    "/v1/jobs/{id}/events",
    summary="Follow a job's events",
    response_model=None,
    response_class=EventSourceResponse,
    responses={
        **_stream_response(
            "Server-sent events: the job's current state, then one event per change, up "
            "to and including the terminal one; then the stream ends.",
            "The job's row version. Send it back as `Last-Event-ID` to resume: the "
            "stream then sends the current record only if it is newer.",
        ),
        **documented(*AUTHED),
    },
)
async def job_events(
    id: str, request: Request, caller: CallerDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """A `text/event-stream` of the job record: the current state first, then one event
    per status or progress change (`event:` the status, or `progress`), a keep-alive
    comment every 15 s, and the end of the stream after the terminal event.
    `Last-Event-ID` resumes without repeating an event."""
    events = await event_service.job_stream(
        caller.gw, caller.principal, id, last_event_id=last_event_id
    )
    return _event_stream(request, caller.gw, events)


@router.get(
    "/v1/events",
    summary="Follow all of the account's jobs",
    response_model=None,
    response_class=EventSourceResponse,
    responses={
        **_stream_response(
            "Server-sent events: first a checkpoint (an `id` without data: from here on "
            "nothing is missed), then one event per change of any of the account's jobs; "
            "the stream does not end on its own.",
            "`t` and the change time (ms) of the latest record sent. Send it back as "
            "`Last-Event-ID` to resume: the stream first resends the current record of "
            "the account's newest jobs that changed since then (best effort).",
        ),
        **documented(*AUTHED),
    },
)
async def account_events(
    request: Request, caller: CallerDep, last_event_id: LastEventId = None
) -> EventSourceResponse:
    """A `text/event-stream` of job records for dashboards: a checkpoint id first, then
    every change of the account's jobs (queue positions are not included: list the jobs
    for them), with a keep-alive comment every 15 s. `Last-Event-ID` resumes on a
    best-effort basis: the newest jobs changed since then are sent again first."""
    events = event_service.account_stream(caller.gw, caller.principal, last_event_id=last_event_id)
    return _event_stream(request, caller.gw, events)
