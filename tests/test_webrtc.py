"""The WebRTC edge over loopback: aiortc peers publish (WHIP) and view (WHEP).

Verdicts are steered with the RMS ``level_model`` fixture: loud speech-like
audio is "synthetic", quiet is "clear". Media stays on 127.0.0.1 (see
``webrtc_host_addresses``); no STUN.
"""

import asyncio
import itertools
import re
import time
from fractions import Fraction

import av
import httpx
import numpy as np
import pytest

pytest.importorskip("aiortc")

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from gateway.server import Gateway
from gateway.settings import GatewaySettings
from gateway.webrtc.peer import host_addresses
from gateway.webrtc.relay import GuardedAudioTrack, GuardedVideoTrack, RelayState
from streamguard import GuardConfig
from streamguard.media import decode_file
from streamguard.media.frames import VideoFrame
from streamguard.video import FrameSampler, VideoAnalyser

from .conftest import REPO, voiced

RATE = 48000
SAMPLES = 960
WIDTH, HEIGHT = 160, 120
GRAY = 170


class Collect:
    def __init__(self):
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def of(self, type_, **match):
        return [r for r in self.records if r.get("type") == type_
                and all(r.get(k) == v for k, v in match.items())]

    async def wait_for(self, type_, timeout=20.0, **match):
        deadline = time.monotonic() + timeout
        while not self.of(type_, **match):
            if time.monotonic() > deadline:
                kinds = sorted({(r.get("type"), r.get("kind"), r.get("state"))
                                for r in self.records}, key=str)
                raise AssertionError(f"no {type_} {match} within {timeout} s; saw {kinds}")
            await asyncio.sleep(0.05)
        return self.of(type_, **match)[0]


class SpeechTrack(MediaStreamTrack):
    """48 kHz mono speech-like audio, ``speed`` times faster than real time;
    ``level`` ("loud"/"quiet") can be switched while it plays, or a fixed ``pcm``."""

    kind = "audio"

    def __init__(self, level="loud", speed=3.0, pcm=None):
        super().__init__()
        self.level = level
        self.speed = speed
        self._clips = {"loud": voiced(4, 0.8, rate=RATE), "quiet": voiced(4, 0.03, rate=RATE)}
        self._pcm = pcm
        self._pts = 0
        self._start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / RATE / self.speed - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if self._pcm is not None:
            piece = self._pcm[self._pts:self._pts + SAMPLES]
            if len(piece) < SAMPLES:
                piece = np.pad(piece, (0, SAMPLES - len(piece)))
        else:
            clip = self._clips[self.level]
            at = self._pts % (len(clip) - SAMPLES)
            piece = clip[at:at + SAMPLES]
        frame = av.AudioFrame.from_ndarray(piece.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._pts
        frame.time_base = Fraction(1, RATE)
        self._pts += SAMPLES
        return frame


class PatternTrack(MediaStreamTrack):
    """A bright gray 160x120 picture with a moving dark stripe, 15 frames/s."""

    kind = "video"

    def __init__(self, fps=15):
        super().__init__()
        self.fps = fps
        self._n = 0
        self._start = None

    async def recv(self):
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        image = np.full((HEIGHT * 3 // 2, WIDTH), 128, dtype=np.uint8)
        image[:HEIGHT] = GRAY
        x = (self._n * 4) % WIDTH
        image[HEIGHT // 2:HEIGHT, x:x + 8] = 40
        frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
        frame.pts = int(self._n * 90000 / self.fps)
        frame.time_base = Fraction(1, 90000)
        self._n += 1
        return frame


def loopback_pc():
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def offer(pc):
    with host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def publish(client, tracks, path="/whip"):
    pc = loopback_pc()
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    response = await client.post(path, content=await offer(pc),
                                 headers={"Content-Type": "application/sdp"})
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/sdp")
    await pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
    return pc, response.headers["location"]


class Viewer:
    """A WHEP subscriber that keeps what it receives: per video frame the mean
    RGB of the top band and of the rest; per audio frame its peak level."""

    def __init__(self):
        self.pc = loopback_pc()
        self.video = []
        self.audio = []
        self._tasks = []

        @self.pc.on("track")
        def on_track(track):
            self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track):
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind == "video":
                rgb = frame.to_ndarray(format="rgb24").astype(np.float32)
                band = max(16, (frame.height // 7) & ~1)
                self.video.append((time.monotonic(), rgb[2:band - 2].mean(axis=(0, 1)),
                                   rgb[band + 4:].mean(axis=(0, 1))))
            else:
                self.audio.append((time.monotonic(), int(np.abs(frame.to_ndarray()).max())))

    async def subscribe(self, client, pid):
        self.pc.addTransceiver("audio", direction="recvonly")
        self.pc.addTransceiver("video", direction="recvonly")
        response = await client.post(f"/whep/{pid}", content=await offer(self.pc),
                                     headers={"Content-Type": "application/sdp"})
        assert response.status_code == 201, response.text
        await self.pc.setRemoteDescription(RTCSessionDescription(response.text, "answer"))
        return response.headers["location"]

    def since(self, t, kind="video"):
        return [x for x in (self.video if kind == "video" else self.audio) if x[0] >= t]

    async def frames_after(self, t, count=5, kind="video", timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.since(t, kind)) < count:
            assert time.monotonic() < deadline, f"viewer got no {kind} frames"
            await asyncio.sleep(0.05)
        return self.since(t, kind)[:count]

    async def close(self):
        await self.pc.close()
        for task in self._tasks:
            task.cancel()


async def start_gateway(level_model, **overrides):
    sink = Collect()
    guard = GuardConfig(model_path=level_model)
    settings = GatewaySettings(port=0, audiosocket_port=0,
                               guard=guard, **overrides)
    gw = Gateway(settings, sinks=[sink])
    await gw.start()
    gw.sink = sink
    return gw


@pytest.fixture
async def gateway(level_model):
    gw = await start_gateway(level_model, webrtc_ice_timeout_s=5.0, webrtc_face_swap=False)
    yield gw
    await gw.stop()


@pytest.fixture
async def client(gateway):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}",
                                 timeout=10) as c:
        yield c


def participant_id(location):
    assert location.startswith("/whip/")
    return location.rsplit("/", 1)[1]


async def test_whip_publish_scores_audio_and_delete_gives_final_verdict(gateway, client):
    audio = SpeechTrack("loud", speed=3.0)
    pc, location = await publish(client, [audio, PatternTrack()])
    pid = participant_id(location)
    try:
        await gateway.sink.wait_for("action", call_id=pid, kind="hold")
        verdict = gateway.sink.of("verdict", call_id=pid)[0]
        assert verdict["protocol"] == "whip" and verdict["leg"] == "participant"
        assert verdict["stream_id"] == f"{pid}:participant"
        assert gateway.sink.of("call_started", call_id=pid)[0]["protocol"] == "whip"
        assert gateway.webrtc.participants[pid].video_frames > 0  # video reached the hook
        response = await client.delete(location)
        assert response.status_code == 200
        final = response.json()["final"]["participant"]
        assert final["final"] and final["state"] == "synthetic"
        finals = [r for r in gateway.sink.of("verdict", call_id=pid) if r["final"]]
        assert len(finals) == 1 and finals[0]["state"] == "synthetic"
        assert gateway.sink.of("call_ended", call_id=pid)[0]["reason"] == "deleted"
        assert pid not in gateway.webrtc.participants
        assert (await client.delete(location)).status_code == 404
    finally:
        await pc.close()


async def test_whip_sample_file_is_scored(gateway, client):
    pcm = decode_file(REPO / "gateway" / "samples" / "synthetic_call.wav",
                      sample_rate=RATE).pcm[:6 * RATE]
    pc, location = await publish(client, [SpeechTrack(pcm=pcm, speed=3.0)])
    pid = participant_id(location)
    try:
        await gateway.sink.wait_for("verdict", call_id=pid)
        response = await client.delete(location)
        assert response.json()["final"]["participant"]["windows_scored"] >= 1
    finally:
        await pc.close()


async def test_whip_rejects_bad_requests(gateway, client):
    sdp = {"Content-Type": "application/sdp"}
    assert (await client.post("/whip", content="v=0\r\n", headers=sdp)).status_code == 400
    garbage = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio x RTP\r\n"
    response = await client.post("/whip", content=garbage, headers=sdp)
    assert response.status_code == 400 and "SDP" in response.text
    # A well-formed offer with a codec the gateway cannot decode.
    pc = loopback_pc()
    pc.addTransceiver("audio", direction="sendonly")
    text = await offer(pc)
    await pc.close()
    unsupported = "\r\n".join(
        re.sub(r"(RTP/SAVPF) [\d ]+$", r"\1 99", line) if line.startswith("m=") else line
        for line in text.split("\r\n")
        if not line.startswith(("a=rtpmap", "a=fmtp", "a=rtcp-fb"))
    ).replace("a=sendonly", "a=rtpmap:99 speex/8000\r\na=sendonly")
    assert "m=audio" in unsupported and "SAVPF 99" in unsupported
    response = await client.post("/whip", content=unsupported, headers=sdp)
    assert response.status_code == 400 and "codec" in response.text, response.text
    assert (await client.post("/whip", content=text,
                              headers={"Content-Type": "text/plain"})).status_code == 415
    assert (await client.post("/whip", content=b"\xff" * (70 * 1024),
                              headers=sdp)).status_code == 413
    assert (await client.delete("/whip/nope")).status_code == 404
    assert (await client.post("/whep/nope", content=text, headers=sdp)).status_code == 404
    assert (await client.patch("/whip/nope")).status_code == 405
    assert gateway.webrtc.participants == {}
    assert gateway.runtime.metrics.protocol_errors["whip"] >= 3


async def test_peer_that_never_completes_ice_is_cleaned_up(level_model):
    gw = await start_gateway(level_model, webrtc_ice_timeout_s=1.0)
    pc = loopback_pc()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            pc.addTransceiver(SpeechTrack(), direction="sendonly")
            response = await client.post("/whip", content=await offer(pc),
                                         headers={"Content-Type": "application/sdp"})
            assert response.status_code == 201
            pid = participant_id(response.headers["location"])
            # The answer is never applied: the client never runs ICE.
            ended = await gw.sink.wait_for("call_ended", call_id=pid, timeout=10)
            assert ended["reason"] == "ice timeout"
            assert pid not in gw.webrtc.participants and not gw.runtime.calls
    finally:
        await pc.close()
        await gw.stop()


class StallingTrack(SpeechTrack):
    """Sends half a second of audio, then nothing (the peer stays connected)."""

    async def recv(self):
        if self._pts >= RATE // 2:
            await asyncio.Event().wait()
        return await super().recv()


async def test_connected_peer_that_stops_sending_is_ended_as_idle(level_model):
    gw = await start_gateway(level_model, idle_timeout_s=1.0)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            pc, location = await publish(client, [StallingTrack(speed=1.0)])
            pid = participant_id(location)
            ended = await gw.sink.wait_for("call_ended", call_id=pid, timeout=10)
            assert ended["reason"] == "idle" and ended["frames_received"] > 0
            assert [r for r in gw.sink.of("verdict", call_id=pid) if r["final"]]
            await pc.close()
    finally:
        await gw.stop()


async def test_whep_viewer_sees_hold_then_release(gateway, client):
    audio = SpeechTrack("quiet", speed=3.0)
    pc, location = await publish(client, [audio, PatternTrack()])
    pid = participant_id(location)
    viewer = Viewer()
    try:
        await viewer.subscribe(client, pid)
        first = await viewer.frames_after(0, count=5)
        assert all(rest[0] > 100 for _, _, rest in first)  # the bright source picture
        loud_at = time.monotonic()
        audio.level = "loud"
        await viewer.frames_after(loud_at, count=5, kind="audio")
        await gateway.sink.wait_for("action", call_id=pid, kind="hold")
        held_at = time.monotonic() + 0.3  # frames already in flight may be unguarded
        held = await viewer.frames_after(held_at, count=5)
        for _, band, rest in held:
            assert rest.max() < 30, rest  # blanked picture
            assert band[0] > 120 and band[1] < 110, band  # red banner on top
        sound = await viewer.frames_after(held_at, count=10, kind="audio")
        assert max(level for _, level in sound) < 200  # muted
        audio.level = "quiet"
        await gateway.sink.wait_for("action", call_id=pid, kind="release", timeout=30)
        released_at = time.monotonic() + 0.3
        after = await viewer.frames_after(released_at, count=5)
        assert all(rest[0] > 100 for _, _, rest in after)
        assert all(band[0] > 100 and abs(band[0] - band[1]) < 40 for _, band, _ in after)
        assert (await client.delete(location)).status_code == 200
    finally:
        await viewer.close()
        await pc.close()


async def test_video_hook_is_a_noop_until_a_scorer_is_configured(gateway, client):
    class ConstantScorer:  # test double for the face pipeline's plumbing only
        name = "constant-test-double"

        def __init__(self):
            self.frames = []

        def score(self, frame):
            self.frames.append(frame)
            return [0.0]

    scorer = ConstantScorer()
    pc, location = await publish(client, [PatternTrack(fps=30)])
    await asyncio.sleep(1.0)
    pid = participant_id(location)
    assert gateway.webrtc.participants[pid].video_frames > 0
    assert gateway.sink.of("video_score") == []
    await client.delete(location)
    await pc.close()
    gateway.webrtc.video_scorer = scorer
    pc, location = await publish(client, [PatternTrack(fps=30)])
    try:
        pid = participant_id(location)
        await gateway.sink.wait_for("video_score", call_id=pid)
        await asyncio.sleep(1.5)
        scores = gateway.sink.of("video_score", call_id=pid)
        assert scores[0]["scorer"] == "constant-test-double" and scores[0]["logits"] == [0.0]
        frame = scorer.frames[0]
        assert frame.image.shape == (HEIGHT, WIDTH, 3) and frame.format == "rgb24"
        pts = [s["pts"] for s in scores]
        assert all(b - a >= 0.15 for a, b in itertools.pairwise(pts))  # ~5/s of 30
    finally:
        await client.delete(location)
        await pc.close()


FACE_MEDIA = REPO.parent / "shared" / "reference" / "face" / "media"


class ClipTrack(MediaStreamTrack):
    """The frames of a video file, looped, at the file's own pace."""

    kind = "video"

    def __init__(self, path, loops=2):
        super().__init__()
        with av.open(str(path)) as container:
            self._frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        self._total = len(self._frames) * loops
        self._n = 0
        self._start = None

    async def recv(self):
        if self.readyState != "live" or self._n >= self._total:
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._n / 25 - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = av.VideoFrame.from_ndarray(self._frames[self._n % len(self._frames)],
                                           format="rgb24")
        frame.pts, frame.time_base = self._n * 3600, Fraction(1, 90000)
        self._n += 1
        return frame


@pytest.mark.parametrize(("clip", "state"), [
    ("astronaut_faceswap_640x480_25fps_5s.mp4", "synthetic"),
    ("astronaut_real_640x480_25fps_5s.mp4", "clear"),
])
async def test_face_swap_is_scored_fused_and_acted_on(level_model, clip, state):
    if not (FACE_MEDIA / clip).exists():
        pytest.skip("shared face media missing")
    gw = await start_gateway(level_model)
    if gw.webrtc.video_scorer_factory is None:
        await gw.stop()
        pytest.skip("face models unavailable")
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}", timeout=10) as c:
            pc, location = await publish(c, [ClipTrack(FACE_MEDIA / clip)])
            pid = participant_id(location)
            await asyncio.sleep(8.0)
            await c.delete(location)
            await pc.close()
    finally:
        await gw.stop()
    faces = [v for v in gw.sink.of("verdict", call_id=pid) if v["detector"] == "face_swap"]
    assert len(faces) >= 3 and faces[-1]["state"] == state
    holds = [a for a in gw.sink.of("action", call_id=pid) if a["kind"] == "hold"]
    assert bool(holds) is (state == "synthetic")


# -- relay tracks and the video hook without a network --------------------------------


class _Hub:
    def __init__(self):
        self.queue = asyncio.Queue()

    def subscribe(self):
        return self.queue

    def unsubscribe(self, queue):
        pass


def _video_frame(pts=0):
    image = np.full((HEIGHT * 3 // 2, WIDTH), 128, dtype=np.uint8)
    image[:HEIGHT] = GRAY
    frame = av.VideoFrame.from_ndarray(image, format="yuv420p")
    frame.pts, frame.time_base = pts, Fraction(1, 90000)
    return frame


def _audio_frame(pts=0, amplitude=1000):
    pcm = np.full(2 * SAMPLES, amplitude, dtype=np.int16)
    frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate, frame.pts, frame.time_base = RATE, pts, Fraction(1, RATE)
    return frame


async def test_relay_passes_frames_through_untouched_and_warns_with_banner_and_prompt():
    warning = decode_file(REPO / "gateway" / "prompts" / "warning.wav", sample_rate=RATE).pcm
    state = RelayState(warning, RATE)
    vhub, ahub = _Hub(), _Hub()
    video, audio = GuardedVideoTrack(vhub, state), GuardedAudioTrack(ahub, state)
    source = _video_frame(3000)
    vhub.queue.put_nowait((source, time.perf_counter()))
    assert await video.recv() is source  # pass-through: the very same frame object
    sound = _audio_frame(960)
    ahub.queue.put_nowait((sound, time.perf_counter()))
    assert await audio.recv() is sound

    state.apply("warn", "Deepfake warning")
    vhub.queue.put_nowait((source, time.perf_counter()))
    out = await video.recv()
    assert out is not source and out.pts == 3000 and out.time_base == source.time_base
    rgb = out.to_ndarray(format="rgb24").astype(int)
    band = max(16, (HEIGHT // 7) & ~1)
    top = rgb[:band]
    assert (top[..., 0] > 180).mean() > 0.9  # red or white text
    assert ((top[..., 1] > 200) & (top[..., 2] > 200)).any()  # white text pixels
    assert ((top[..., 1] < 60) & (top[..., 0] > 150)).mean() > 0.5  # mostly red
    assert np.abs(rgb[band:] - rgb[band:].mean()).max() < 3  # the rest is unchanged
    assert np.array_equal(source.to_ndarray()[:HEIGHT][band:], out.to_ndarray()[:HEIGHT][band:])

    mixed = []
    for i in range(25):  # 0.5 s: the spoken prompt is mixed in
        ahub.queue.put_nowait((_audio_frame(i * SAMPLES, 0), time.perf_counter()))
        frame = await audio.recv()
        assert frame.samples == SAMPLES and frame.pts == i * SAMPLES
        mixed.append(frame.to_ndarray().reshape(-1, 2))
    mixed = np.concatenate(mixed)
    assert np.abs(mixed).max() > 1000 and np.array_equal(mixed[:, 0], mixed[:, 1])
    head = warning[:len(mixed)]
    assert np.corrcoef(mixed[:, 0], head)[0, 1] > 0.99

    state.apply("hold")
    ahub.queue.put_nowait((_audio_frame(0, 5000), time.perf_counter()))
    assert np.abs((await audio.recv()).to_ndarray()).max() == 0
    state.apply("release")
    vhub.queue.put_nowait((source, time.perf_counter()))
    assert await video.recv() is source
    ahub.queue.put_nowait(None)
    with pytest.raises(MediaStreamError):
        await audio.recv()


def test_frame_sampler_picks_five_per_second_and_resyncs():
    sampler = FrameSampler(5.0)
    picked = [i / 30 for i in range(90) if sampler.take(i / 30)]
    assert 14 <= len(picked) <= 16
    assert all(0.15 < b - a < 0.25 for a, b in itertools.pairwise(picked))
    assert sampler.take(100.0) and sampler.take(0.0)  # jumps either way restart the grid


def test_video_analyser_without_scorer_takes_nothing_and_scorer_errors_are_counted():
    assert not VideoAnalyser("s").take(0.0)

    class Broken:
        name = "broken"

        def score(self, frame):
            raise ValueError("corrupt")

    analyser = VideoAnalyser("s", Broken())
    assert analyser.take(0.0)
    assert not analyser.take(1.0)  # one in flight
    frame = VideoFrame("s", 0.0, np.zeros((4, 4, 3), np.uint8))
    assert analyser.score(frame) is None and analyser.failed == 1
    assert analyser.take(2.0)
