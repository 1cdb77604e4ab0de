"""WHIP ingest and WHEP viewing over HTTP (non-trickle ICE, like most WHIP clients).

- ``POST /whip`` (``application/sdp`` offer; optional ``?tenant=``) publishes a
  participant: ``201 Created``, the SDP answer, ``Location: /whip/{id}``. Its
  audio is scored by a core session (sidecar analysis); verdict and action
  records go to the runtime sink with ``call_id`` = id and ``protocol="whip"``.
- ``DELETE /whip/{id}`` ends it and answers with the final verdict.
- ``POST /whep/{id}`` subscribes a viewer to participant ``id`` (inline relay):
  ``201``, answer, ``Location: /whep/{id}/{viewer}``; ``DELETE`` there ends it.
- ``GET /webrtc/publish`` is a small browser page that publishes camera and
  microphone to ``/whip``; ``GET /webrtc/view?id=…`` plays a participant through
  ``/whep`` (used by the browser tests, handy for demos).

Errors: ``415`` unless the body is ``application/sdp``; ``400`` for SDP that
cannot be parsed, carries no media, or offers no codec in common; ``404`` for
an unknown id; ``413`` for an oversized offer; ``503`` while draining or at
``webrtc_max_participants``. Answers carry every candidate (gathered on
``webrtc_host_addresses``), so the client needs no trickle (``PATCH`` is 405).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from gateway.bridge import CallBridge
from gateway.runtime import GatewayRuntime
from gateway.webrtc.peer import (
    LEG,
    PROTOCOL,
    Participant,
    RelayControl,
    host_addresses,
    rtc_configuration,
)
from gateway.webrtc.relay import GuardedAudioTrack, GuardedVideoTrack, RelayState
from streamguard.errors import ModelError
from streamguard.media import decode_file
from streamguard.video import VideoScorer

log = logging.getLogger("streamguard.gateway")

SDP = "application/sdp"
RELAY_RATE = 48000


def _face_swap_factory() -> Callable[[str], VideoScorer | None] | None:
    """Per-participant face-swap scorers sharing one detector and one classifier,
    or ``None`` (video not scored, said in the log) when the models cannot load."""
    from streamguard.detectors.face import FaceDetector
    from streamguard.detectors.face_swap import FaceSwapDetector, FaceSwapScorer

    try:
        detector, classifier = FaceDetector(), FaceSwapDetector()
    except ModelError as exc:
        log.warning("face-swap scoring disabled: %s", exc)
        return None

    def factory(pid: str) -> VideoScorer:
        return FaceSwapScorer(detector, classifier, participant=pid)

    return factory


class OfferError(Exception):
    """The offer cannot be answered; ``args[0]`` says why (sent back with a 400)."""


class WebRtcEdge:
    """Publishers and viewers of one gateway; routes come from :meth:`routes`."""

    def __init__(self, runtime: GatewayRuntime) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.participants: dict[str, Participant] = {}
        #: Face-swap (or any frame) scorer shared by all participants; ``None`` keeps
        #: the video hook a no-op. A scorer that keeps per-stream state (a face
        #: tracker) comes from ``video_scorer_factory(participant_id)`` instead.
        self.video_scorer: VideoScorer | None = None
        self.video_scorer_factory: Callable[[str], VideoScorer | None] | None = None
        if self.settings.webrtc_face_swap:
            self.video_scorer_factory = _face_swap_factory()
        path = resources.files("gateway") / "prompts" / "warning.wav"
        self.warning_pcm = decode_file(str(path), sample_rate=RELAY_RATE).pcm
        self._background: set[asyncio.Task[Any]] = set()

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/whip", self.publish, methods=["POST"]),
            Route("/whip/{pid}", self.unpublish, methods=["DELETE"]),
            Route("/whep/{pid}", self.subscribe, methods=["POST"]),
            Route("/whep/{pid}/{vid}", self.unsubscribe, methods=["DELETE"]),
            Route("/webrtc/publish", self.publish_page, methods=["GET"]),
            Route("/webrtc/view", self.view_page, methods=["GET"]),
        ]

    # -- HTTP handlers -------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        runtime, settings = self.runtime, self.settings
        if not runtime.accepting:
            return PlainTextResponse("draining", status_code=503)
        offer = await self._read_offer(request)
        if isinstance(offer, Response):
            return offer
        if len(self.participants) >= settings.webrtc_max_participants:
            return PlainTextResponse("too many participants", status_code=503)
        pid = uuid.uuid4().hex
        parameters = {k: v for k, v in request.query_params.items() if len(v) <= 200}
        pc = RTCPeerConnection(rtc_configuration(settings.webrtc_ice_servers))
        relay = RelayState(self.warning_pcm, RELAY_RATE,
                           banner_seconds=settings.webrtc_banner_seconds)
        bridge = CallBridge(runtime.guard, RelayControl(relay), runtime.sink, runtime.prompts,
                            protocol=PROTOCOL, scored_legs=(LEG,))
        scorer = (self.video_scorer_factory(pid) if self.video_scorer_factory is not None
                  else self.video_scorer)
        participant = Participant(pid, pc, bridge, relay, scorer=scorer,
                                  video_fps=settings.webrtc_video_fps)
        try:
            answer = await self._answer(pc, offer)
        except OfferError as exc:
            return await self._refuse(pc, str(exc))
        participant.on_ended = self._forget
        self.participants[pid] = participant
        runtime.calls.add(bridge)
        runtime.metrics.connections[PROTOCOL] += 1
        bridge.start(pid, (LEG,), parameters)
        self._spawn(participant.watch(settings.webrtc_ice_timeout_s, settings.idle_timeout_s))
        return Response(answer, status_code=201, media_type=SDP,
                        headers={"Location": f"/whip/{pid}"})

    async def unpublish(self, request: Request) -> Response:
        participant = self.participants.get(request.path_params["pid"])
        if participant is None:
            return PlainTextResponse("unknown participant", status_code=404)
        finals = await participant.end("deleted")
        return JSONResponse({"id": participant.id, "final": finals})

    async def subscribe(self, request: Request) -> Response:
        participant = self.participants.get(request.path_params["pid"])
        if participant is None or participant.ending:
            return PlainTextResponse("unknown participant", status_code=404)
        offer = await self._read_offer(request)
        if isinstance(offer, Response):
            return offer
        if len(participant.viewers) >= self.settings.webrtc_max_viewers:
            return PlainTextResponse("too many viewers", status_code=503)
        vid = uuid.uuid4().hex
        pc = RTCPeerConnection(rtc_configuration(self.settings.webrtc_ice_servers))

        def attach(pc: RTCPeerConnection) -> None:
            offered = {t.kind for t in pc.getTransceivers()}
            for kind, hub in participant.hubs.items():
                if kind in offered:
                    track_type = GuardedAudioTrack if kind == "audio" else GuardedVideoTrack
                    pc.addTrack(track_type(hub, participant.relay))

        try:
            answer = await self._answer(pc, offer, attach)
        except OfferError as exc:
            return await self._refuse(pc, str(exc))
        participant.viewers[vid] = pc

        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                participant.viewers.pop(vid, None)
                await pc.close()

        pc.on("connectionstatechange", on_state)
        self._spawn(self._viewer_ice(participant, vid, pc))
        return Response(answer, status_code=201, media_type=SDP,
                        headers={"Location": f"/whep/{participant.id}/{vid}"})

    async def unsubscribe(self, request: Request) -> Response:
        participant = self.participants.get(request.path_params["pid"])
        pc = participant.viewers.pop(request.path_params["vid"], None) if participant else None
        if pc is None:
            return PlainTextResponse("unknown viewer", status_code=404)
        await pc.close()
        return Response(status_code=200)

    async def publish_page(self, request: Request) -> Response:
        return HTMLResponse(PUBLISH_PAGE)

    async def view_page(self, request: Request) -> Response:
        return HTMLResponse(VIEW_PAGE)

    # -- helpers -------------------------------------------------------------------

    async def _read_offer(self, request: Request) -> str | Response:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != SDP:
            return PlainTextResponse(f"expected Content-Type {SDP}", status_code=415)
        limit = self.settings.webrtc_max_sdp_bytes
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return PlainTextResponse("offer too large", status_code=413)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return self._bad("offer is not UTF-8 text")
        if "m=" not in text:
            return self._bad("offer has no media section")
        return text

    def _bad(self, message: str) -> Response:
        self.runtime.emit({"type": "protocol_error", "protocol": PROTOCOL, "error": message})
        return PlainTextResponse(message, status_code=400)

    async def _refuse(self, pc: RTCPeerConnection, message: str) -> Response:
        with contextlib.suppress(Exception):
            await pc.close()
        return self._bad(message)

    async def _answer(self, pc: RTCPeerConnection, sdp: str,
                      attach: Callable[[RTCPeerConnection], None] | None = None) -> str:
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except Exception as exc:  # aiortc's parser raises whatever the bad line provokes
            if "description send parameters" in str(exc):
                raise OfferError("no codec in common: the gateway takes Opus, G.711, G.722 "
                                 f"audio and VP8, H.264 video ({exc})") from exc
            raise OfferError(f"unusable SDP offer: {type(exc).__name__}: {exc}") from exc
        if not pc.getTransceivers():
            raise OfferError("offer has no audio or video")
        if attach is not None:
            attach(pc)
        try:
            with host_addresses(self.settings.webrtc_host_addresses):
                await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            raise OfferError(f"cannot answer offer: {type(exc).__name__}: {exc}") from exc
        return str(pc.localDescription.sdp)

    async def _viewer_ice(self, participant: Participant, vid: str,
                          pc: RTCPeerConnection) -> None:
        for _ in range(int(self.settings.webrtc_ice_timeout_s * 10)):
            if pc.connectionState == "connected":
                return
            await asyncio.sleep(0.1)
        participant.viewers.pop(vid, None)
        await pc.close()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _forget(self, participant: Participant) -> None:
        if self.participants.get(participant.id) is participant:
            del self.participants[participant.id]
        self.runtime.calls.discard(participant.bridge)

    async def close(self) -> None:
        """End every participant (final verdicts) and viewer; used at shutdown."""
        ends = [p.end("gateway shutdown") for p in list(self.participants.values())]
        if ends:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.gather(*ends, return_exceptions=True),
                                       self.settings.drain_timeout_s)
        for task in list(self._background):
            task.cancel()


PUBLISH_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>StreamGuard WHIP publisher</title></head>
<body>
<p>Publishes this browser's camera and microphone to <code>/whip</code>.
Query: <code>seconds=N</code> stops after N s; other parameters go to the session.</p>
<pre id="log"></pre>
<script>
const log = (m) => { document.getElementById("log").textContent += m + "\\n";
                     console.log("sg: " + m); };
window.sg = {state: "starting"};
async function publish() {
  const query = new URLSearchParams(location.search);
  const seconds = Number(query.get("seconds") || 0);
  query.delete("seconds");
  const media = await navigator.mediaDevices.getUserMedia({
    audio: {echoCancellation: false, noiseSuppression: false, autoGainControl: false},
    video: true});
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) {
    pc.addTransceiver(track, {direction: "sendonly", streams: [media]});
  }
  pc.onconnectionstatechange = () => { log("connection " + pc.connectionState);
                                       window.sg.connection = pc.connectionState; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
    setTimeout(done, 3000);
  });
  const url = "/whip" + (query.toString() ? "?" + query : "");
  const resp = await fetch(url, {method: "POST", headers: {"Content-Type": "application/sdp"},
                                 body: pc.localDescription.sdp});
  if (resp.status !== 201) { throw new Error("WHIP " + resp.status + " " + await resp.text()); }
  const location_ = resp.headers.get("Location");
  window.sg.location = location_;
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
  window.sg.state = "published";
  log("published " + location_);
  if (seconds > 0) {
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const end = await fetch(location_, {method: "DELETE"});
    window.sg.final = await end.json();
    pc.close();
    window.sg.state = "ended";
    log("ended " + JSON.stringify(window.sg.final));
  }
}
publish().catch((e) => { window.sg.state = "error"; log("error " + e); });
</script>
</body></html>
"""

VIEW_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>StreamGuard WHEP viewer</title>
<style>body{margin:0;background:#333}video{display:block;width:640px;height:480px;
object-fit:fill;background:#000}</style></head>
<body>
<video id="v" autoplay muted playsinline></video>
<script>
window.sg = {state: "starting", frames: 0};
async function view() {
  const id = new URLSearchParams(location.search).get("id");
  const pc = new RTCPeerConnection();
  pc.addTransceiver("video", {direction: "recvonly"});
  pc.addTransceiver("audio", {direction: "recvonly"});
  const video = document.getElementById("v");
  pc.ontrack = (e) => {
    if (e.track.kind === "video") video.srcObject = new MediaStream([e.track]);
  };
  const count = () => { window.sg.frames++; video.requestVideoFrameCallback(count); };
  video.requestVideoFrameCallback(count);
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === "complete" && done();
    setTimeout(done, 3000);
  });
  const resp = await fetch("/whep/" + encodeURIComponent(id), {method: "POST",
    headers: {"Content-Type": "application/sdp"}, body: pc.localDescription.sdp});
  if (resp.status !== 201) { throw new Error("WHEP " + resp.status + " " + await resp.text()); }
  await pc.setRemoteDescription({type: "answer", sdp: await resp.text()});
  window.sg.state = "viewing";
}
view().catch((e) => { window.sg.state = "error " + e; console.log("sg: error " + e); });
</script>
</body></html>
"""
