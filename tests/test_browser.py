"""A real browser publishes to the WHIP endpoint and its participant is judged.

Headless Debian ``chromium`` with fake capture devices reads a WAV (loud
speech-like audio: "synthetic" for the ``level_model`` fixture) and a Y4M
picture we write here, opens the gateway's ``/webrtc/publish`` page, publishes
for a few seconds, then DELETEs its WHIP resource. Media stays on loopback:
``--allow-loopback-in-peer-connection`` in the browser, ``webrtc_host_addresses``
(127.0.0.1) in the gateway. Skipped when chromium is not installed
(``.ci/run`` installs it).
"""

import asyncio
import base64
import contextlib
import io
import json
import os
import shutil
import subprocess
import time
import wave

import numpy as np
import pytest

pytest.importorskip("aiortc")

from gateway.server import Gateway
from gateway.settings import GatewaySettings
from streamguard import GuardConfig

from .conftest import voiced
from .test_webrtc import Collect as _Collect
from .test_webrtc import PatternTrack, SpeechTrack, participant_id, publish

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None,
                                reason="chromium not installed (apt-get install chromium)")

PUBLISH_SECONDS = 8


Collect = _Collect


def write_wav(path, pcm, rate):
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.astype("<i2").tobytes())


def write_y4m(path, width=320, height=240, frames=30, fps=30):
    """4:2:0 Y4M: a mid-gray picture with a moving bright square."""
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            y = np.full((height, width), 110, dtype=np.uint8)
            x = (i * 8) % (width - 40)
            y[100:140, x:x + 40] = 230
            chroma = np.full((height // 2) * (width // 2) * 2, 128, dtype=np.uint8)
            out.write(b"FRAME\n" + y.tobytes() + chroma.tobytes())


def chromium_command(url, user_dir, wav, y4m):
    return [
        CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={user_dir}",
        "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}", f"--use-file-for-fake-video-capture={y4m}",
        "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
        "--enable-logging=stderr", "--v=0", "--remote-debugging-port=0",
        "--window-size=800,600", url,
    ]


class Chromium:
    """A headless chromium on ``url``, stopped (by its own pid) on exit; the
    DevTools protocol takes screenshots and reads page state."""

    def __init__(self, url, tmp_path, wav=None, y4m=None):
        if wav is None:
            wav = tmp_path / "silence.wav"
            write_wav(wav, np.zeros(48000, np.int16), 48000)
        if y4m is None:
            y4m = tmp_path / "picture.y4m"
            write_y4m(y4m)
        self.profile = tmp_path / f"profile-{time.monotonic_ns()}"
        self.log_path = tmp_path / "chromium.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(chromium_command(url, self.profile, wav, y4m),
                                        stdout=self._log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)

    def log_tail(self):
        return self.log_path.read_text(errors="replace")[-3000:]

    async def _page_socket(self):
        import httpx
        import websockets

        port_file = self.profile / "DevToolsActivePort"
        for _ in range(200):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                pages = [t for t in (await client.get(f"http://127.0.0.1:{port}/json/list")).json()
                         if t.get("type") == "page"]
                if pages:
                    break
                await asyncio.sleep(0.05)
        return websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None)

    async def call(self, method, **params):
        async with await self._page_socket() as ws:
            await ws.send(json.dumps({"id": 1, "method": method, "params": params}))
            while True:
                reply = json.loads(await ws.recv())
                if reply.get("id") == 1:
                    return reply["result"]

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def screenshot(self):
        """The page as an RGB array."""
        from PIL import Image

        data = (await self.call("Page.captureScreenshot", format="png"))["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


async def test_chromium_publishes_to_whip_and_gets_verdicts(level_model, tmp_path):
    wav, y4m = tmp_path / "speech.wav", tmp_path / "picture.y4m"
    write_wav(wav, voiced(6, 0.8, rate=48000), 48000)
    write_y4m(y4m)
    sink = Collect()
    gw = Gateway(GatewaySettings(port=0, audiosocket_port=0,
                                 guard=GuardConfig(model_path=level_model)), sinks=[sink])
    await gw.start()
    url = (f"http://127.0.0.1:{gw.port}/webrtc/publish?seconds={PUBLISH_SECONDS}"
           "&tenant=browser")
    browser = Chromium(url, tmp_path, wav, y4m)
    try:
        deadline = time.monotonic() + PUBLISH_SECONDS + 25
        seen = {}
        while not sink.of("call_ended", protocol="whip"):
            seen.update(gw.webrtc.participants)
            if time.monotonic() > deadline or browser.process.poll() is not None:
                pytest.fail(f"browser never finished publishing; records "
                            f"{[r['type'] for r in sink.records]}; chromium log:\n"
                            f"{browser.log_tail()}")
            await asyncio.sleep(0.1)
    finally:
        browser.stop()
        with contextlib.suppress(Exception):
            await gw.stop()

    started = sink.of("call_started", protocol="whip")[0]
    pid = started["call_id"]
    assert started["tenant"] == "browser"
    assert sink.of("call_ended", call_id=pid)[0]["reason"] == "deleted"
    verdicts = sink.of("verdict", call_id=pid, protocol="whip")
    assert len(verdicts) >= 3
    assert any(v["state"] == "synthetic" for v in verdicts)
    final = [v for v in verdicts if v["final"]]
    assert len(final) == 1 and final[0]["state"] == "synthetic"
    assert {a["kind"] for a in sink.of("action", call_id=pid)} >= {"warn"}
    assert sink.of("call_ended", call_id=pid)[0]["frames_received"] > 100  # 20 ms Opus
    assert seen[pid].video_frames > 30  # decoded VP8 frames reached the video hook


def save_png(rgb, path):
    from PIL import Image

    Image.fromarray(rgb).save(path)
    if os.environ.get("SG_KEEP_SCREENSHOTS"):
        shutil.copy(path, os.environ["SG_KEEP_SCREENSHOTS"])


def _banner_and_rest(shot):
    """Mean colour of the video's top band and of the picture below it (the
    viewer page shows the video at 640x480 in the top-left corner)."""
    video = shot[:480, :640].astype(np.float32)
    band = max(16, (480 // 7)) - 8  # the banner is 1/7 of the frame's height
    return video[4:band].mean(axis=(0, 1)), video[band + 40:].mean(axis=(0, 1))


async def test_chromium_viewer_sees_the_hold_banner(level_model, tmp_path):
    """Relay mode in a real browser: an aiortc participant turns synthetic and is
    held; a chromium WHEP viewer shows the red banner over a blanked picture."""
    import httpx

    sink = Collect()
    gw = Gateway(GatewaySettings(port=0, audiosocket_port=0,
                                 guard=GuardConfig(model_path=level_model)), sinks=[sink])
    await gw.start()
    browser = pc = None
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gw.port}") as client:
            audio = SpeechTrack("quiet", speed=2.0)
            pc, location = await publish(client, [audio, PatternTrack()])
            pid = participant_id(location)
            browser = Chromium(f"http://127.0.0.1:{gw.port}/webrtc/view?id={pid}", tmp_path)
            deadline = time.monotonic() + 20
            while (await browser.evaluate("window.sg && window.sg.frames") or 0) < 10:
                assert time.monotonic() < deadline, browser.log_tail()
                await asyncio.sleep(0.2)
            band, rest = _banner_and_rest(await browser.screenshot())
            assert rest.mean() > 100 and abs(band[0] - band[1]) < 40  # live picture, no banner
            audio.level = "loud"
            await sink.wait_for("action", call_id=pid, kind="hold", timeout=30)
            await asyncio.sleep(1.0)
            shot = await browser.screenshot()
            save_png(shot, tmp_path / "held.png")  # for a human looking at a failure
            band, rest = _banner_and_rest(shot)
            assert band[0] > 130 and band[1] < 110 and band[2] < 110, band  # red banner
            assert rest.max() < 40, rest  # blanked picture
            assert (await client.delete(location)).status_code == 200
    finally:
        if browser is not None:
            browser.stop()
        if pc is not None:
            await pc.close()
        await gw.stop()
