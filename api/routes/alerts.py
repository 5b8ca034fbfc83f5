"""Alert lifecycle: the listing with time to acknowledge and the effect of the pass, the
acknowledgement for a manager without a handheld, and the handhelds' side (docs/handheld.md):
the open alerts with their state, their live stream, accept and pass done."""

from __future__ import annotations

import json
import statistics
import threading
from collections.abc import Sequence
from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Header, HTTPException, Path, Query, Request, Response

from api.alert_state import AlertFeed
from api.csv_export import alerts_csv, wants_csv
from api.deps import AUTH_RESPONSES, ApiContext, Context, Manager, Viewer, still_admitted
from api.routes.common import (
    CSV_RESPONSE,
    EndParam,
    FormatParam,
    StartParam,
    csv_response,
    time_range_of,
)
from api.schemas import (
    AckAnswerOut,
    AckIn,
    AlertOut,
    AlertsOut,
    AlertStateOut,
    AlertStatus,
    AlertSummary,
    DeliveryOut,
    OpenAlertsOut,
    PassIn,
    Problem,
)
from api.stream import EventStream, StoreWatch, alert_events, last_event_id
from edge.alerts.delivery import DeliveryView, deliveries_of
from edge.alerts.state import ack_answer
from edge.store import AlertRecord

router = APIRouter(prefix="/v1", tags=["alerts"], responses=AUTH_RESPONSES)

MAX_SPAN = timedelta(days=5 * 366)
DEFAULT_SPAN = timedelta(days=30)


@router.get(
    "/alerts",
    summary="Alerts raised in a range, with their lifecycle",
    description="Alerts raised in [start, end) (default: the last 30 days, at most 5 years), "
    "oldest first, optionally of one status. The summary counts them and gives the median "
    "seconds to acknowledge and the mean effect of the passes.",
    response_model=AlertsOut,
    responses={
        200: {
            **CSV_RESPONSE[200],
            # Lets a client (and schemathesis's stateful tests) go from a listed alert to its ack.
            "links": {
                "AcknowledgeAlert": {
                    "operationId": "acknowledge_alert",
                    "parameters": {"alert_id": "$response.body#/alerts/0/alert_id"},
                }
            },
        }
    },
)
def list_alerts(
    request: Request,
    context: Context,
    _: Viewer,
    status: Annotated[AlertStatus | None, Query(description="Only alerts in this status")] = None,
    start: StartParam = None,
    end: EndParam = None,
    format: FormatParam = None,
) -> AlertsOut | Response:
    time_range = time_range_of(context, start, end, MAX_SPAN, DEFAULT_SPAN)
    records = context.store.store().alerts(status, time_range.start, time_range.end)
    sent = deliveries_by_alert(context, [r.alert_id for r in records])
    alerts = [alert_out(r, sent.get(r.alert_id, ())) for r in records]
    if wants_csv(format, request.headers.get("accept")):
        return csv_response(alerts_csv(alerts, context.tz), "alerts.csv")
    return AlertsOut(alerts=alerts, summary=summarize(alerts))


@router.post(
    "/alerts/{alert_id}/ack",
    summary="Acknowledge an alert (manager or admin)",
    operation_id="acknowledge_alert",
    description="For a manager without a handheld. The first 'accepted' and the first "
    "'pass_done' count, repeats change nothing; 'pass_done' without 'accepted' counts as both. "
    "Recorded as acknowledged by the key's id.",
    responses={
        400: {"model": Problem, "description": "The body is not JSON"},
        404: {"model": Problem, "description": "No such alert"},
    },
)
def acknowledge(
    context: Context,
    principal: Manager,
    body: AckIn,
    alert_id: Annotated[str, Path(max_length=200)],
) -> AlertOut:
    record = context.store.store().record_ack(
        alert_id, by=principal.key_id, status=body.status, at=context.clock(), number=body.pass_
    )
    if record is None:
        raise HTTPException(404, f"no alert {alert_id!r}")
    return alert_out(record)


@router.get(
    "/alerts/open",
    summary="The open alerts now, with their state",
    description="Every alert not cleared, oldest raised first, in the shape of its retained "
    "MQTT state; times in the site's time zone. `version` grows with every change of any alert.",
)
def open_alerts(request: Request, _: Viewer) -> OpenAlertsOut:
    return OpenAlertsOut.model_validate(feed_of(request).open_set())


@router.get(
    "/alerts/stream",
    summary="The open alerts and the waiting counts, live (Server-Sent Events)",
    description="`snapshot` (the open set, as /v1/alerts/open) on connect, or with a "
    "Last-Event-ID the device can catch up from, an `alert` event per alert changed since; then "
    "`alert` with one alert's new state on every change (within 1 s), `zones` with the waiting "
    "count per zone (null when unknown) when they change and at least every 10 s, and a "
    "comment every 15 s when nothing else was sent. Each event's id is the site's alert version.",
    response_class=EventStream,
    status_code=200,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "An endless event stream",
        }
    },
)
async def alert_stream(
    request: Request,
    _: Viewer,
    last_event_id_header: Annotated[
        str | None,
        Header(
            alias="Last-Event-ID",
            max_length=40,
            description="The id of the last event received (EventSource sends it on reconnect)",
        ),
    ] = None,
) -> EventStream:
    feed = feed_of(request)
    events = alert_events(
        feed,
        watch_of(request, feed),
        last_event_id(last_event_id_header),
        admitted=still_admitted(request),
    )
    stopping = getattr(request.app.state, "stopping", None) or (lambda: False)
    return EventStream(events, stopping)


ACK_RESPONSES: dict[int | str, dict[str, object]] = {
    400: {"model": Problem, "description": "The body is not JSON"},
    404: {"model": Problem, "description": "No such alert"},
    409: {"model": Problem, "description": "The alert has cleared: nothing to acknowledge"},
}


@router.post(
    "/alerts/{alert_id}/accept",
    summary="Accept an alert: someone is going (manager)",
    description="Idempotent: the first accept counts; a repeat, or one after a colleague's, "
    "answers `already` with who and when. Recorded as the credential's identity.",
    responses=ACK_RESPONSES,
)
def accept(
    request: Request,
    context: Context,
    principal: Manager,
    alert_id: Annotated[str, Path(max_length=200)],
    body: Annotated[PassIn | None, Body()] = None,
) -> AckAnswerOut:
    number = None if body is None else body.pass_
    return _acknowledge(request, context, principal.key_id, alert_id, "accepted", number)


@router.post(
    "/alerts/{alert_id}/pass-done",
    summary="Report the diversion pass done (manager)",
    description="Idempotent like accept; a pass done without an accept counts as both.",
    responses=ACK_RESPONSES,
)
def pass_done(
    request: Request,
    context: Context,
    principal: Manager,
    alert_id: Annotated[str, Path(max_length=200)],
    body: Annotated[PassIn | None, Body()] = None,
) -> AckAnswerOut:
    number = None if body is None else body.pass_
    return _acknowledge(request, context, principal.key_id, alert_id, "pass_done", number)


def _acknowledge(
    request: Request,
    context: ApiContext,
    by: str,
    alert_id: str,
    status: Literal["accepted", "pass_done"],
    number: int | None = None,
) -> AckAnswerOut:
    # The store decides (one winner however many race, from whichever process); the service
    # finds the change within a tick: escalation stops, the retained state is republished.
    result = context.store.store().apply_ack(
        alert_id, by=by, status=status, at=context.clock(), number=number
    )
    if result is None:
        raise HTTPException(404, f"no alert {alert_id!r}")
    feed = feed_of(request)
    state = feed.state(result.record)
    if number is not None and number != max(state.passes, 1):
        # Not "already accepted by ...": the pass asked now is not accepted; say which it is.
        texts = _OTHER_PASS.get(feed.names.language, _OTHER_PASS["en"])
        message = texts.format(given=number, latest=max(state.passes, 1))
        return AckAnswerOut(
            result="already", message=message, alert=AlertStateOut.model_validate(state.as_dict())
        )
    message = ack_answer(result.outcome, status, state, feed.names.language)
    if result.outcome == "cleared":
        raise HTTPException(409, message)
    return AckAnswerOut(
        result=result.outcome, message=message, alert=AlertStateOut.model_validate(state.as_dict())
    )


#: The answer to an accept or pass done sent for another pass than the alert's latest (a tap on
#: a card that showed pass 1 when pass 2 had been asked), by the site's language.
_OTHER_PASS = {
    "en": "that was pass {given}: pass {latest} is asked now",
    "zh-CN": "这是第{given}次疏导的操作：现在请求的是第{latest}次疏导",
}


_app_lock = threading.Lock()


def feed_of(request: Request) -> AlertFeed:
    """The app's alert feed (made on first use, so the app needs no set-up for it)."""
    state = request.app.state
    with _app_lock:
        feed: AlertFeed | None = getattr(state, "alert_feed", None)
        if feed is None:
            feed = state.alert_feed = AlertFeed(request.app.state.lobbywatch)
        return feed


def watch_of(request: Request, feed: AlertFeed) -> StoreWatch:
    """The app's one store watcher, which every stream of it shares."""
    state = request.app.state
    with _app_lock:
        watch: StoreWatch | None = getattr(state, "alert_watch", None)
        if watch is None:
            watch = state.alert_watch = StoreWatch(feed.version, feed.zones)
        return watch


def deliveries_by_alert(context: ApiContext, alert_ids: list[str]) -> dict[str, list[DeliveryView]]:
    """Each alert's deliveries to the bank's channels (edge/alerts/delivery.py)."""
    kinds = {c.id: c.kind for c in context.config.alerts.channels}
    with context.store.read() as db:
        rows = lambda sql, params: db.execute(sql, params).fetchall()  # noqa: E731
        return deliveries_of(rows, alert_ids, kinds)


def alert_out(record: AlertRecord, deliveries: Sequence[DeliveryView] = ()) -> AlertOut:
    effect = (
        record.count_at_ack - record.effect_count
        if record.count_at_ack is not None and record.effect_count is not None
        else None
    )
    return AlertOut(
        alert_id=record.alert_id,
        rule=record.rule,
        kind=record.kind,
        zones=list(record.zones),
        threshold=record.threshold,
        status=record.status,
        message=record.message,
        since=record.since,
        raised_at=record.raised_at,
        count_at_raise=record.count_at_raise,
        escalations=record.escalations,
        acknowledged_at=record.acknowledged_at,
        acknowledged_by=record.acknowledged_by,
        seconds_to_ack=record.seconds_to_ack,
        count_at_ack=record.count_at_ack,
        pass_done_at=record.pass_done_at,
        pass_done_by=record.pass_done_by,
        effect_after_s=record.effect_after_s,
        effect_count=record.effect_count,
        effect_measured_at=record.effect_measured_at,
        effect=effect,
        cleared_at=record.cleared_at,
        count_at_clear=record.count_at_clear,
        passes=record.passes,
        details=details_of(record),
        deliveries=[DeliveryOut.model_validate(d, from_attributes=True) for d in deliveries],
    )


def details_of(record: AlertRecord) -> dict[str, Any] | None:
    """The alert's details as an object; None where it has none or they are not one (a
    damaged row must not make the whole listing fail)."""
    if record.details is None:
        return None
    try:
        details = json.loads(record.details)
    except ValueError:
        return None
    return details if isinstance(details, dict) else None


def summarize(alerts: list[AlertOut]) -> AlertSummary:
    to_ack = [a.seconds_to_ack for a in alerts if a.seconds_to_ack is not None]
    effects = [a.effect for a in alerts if a.effect is not None]
    return AlertSummary(
        raised=len(alerts),
        acknowledged=sum(a.acknowledged_at is not None for a in alerts),
        passes_done=sum(a.pass_done_at is not None for a in alerts),
        median_seconds_to_ack=statistics.median(to_ack) if to_ack else None,
        max_seconds_to_ack=max(to_ack) if to_ack else None,
        mean_effect=statistics.fmean(effects) if effects else None,
    )
