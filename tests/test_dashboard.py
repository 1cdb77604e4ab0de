"""The dashboard in headless Chromium against a real gateway and a replayed call.

The page is driven over the DevTools protocol (``Runtime.evaluate`` for the DOM,
``Page.captureScreenshot`` for pixels): it must list the live call, draw its
score timeline, and its Hold / Release / Mark-wrong buttons must reach the API
and land in the audit trail. Skipped when chromium is not installed.
"""

import asyncio
import base64
import io
import json
import os
import shutil
import subprocess
import time

import numpy as np
import pytest

from gateway.replay import replay_twilio

from .control_helpers import call, start_env, stop_env

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")


class Browser:
    def __init__(self, url, tmp_path):
        self.profile = tmp_path / f"profile-{time.monotonic_ns()}"
        self.log_path = tmp_path / "chromium.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--window-size=1200,800", url],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._ws = None
        self._id = 0

    async def _connect(self):
        import httpx
        import websockets

        port_file = self.profile / "DevToolsActivePort"
        for _ in range(300):
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
        self._ws = await websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=None)

    async def call(self, method, **params):
        if self._ws is None:
            await self._connect()
        self._id += 1
        await self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            reply = json.loads(await self._ws.recv())
            if reply.get("id") == self._id:
                return reply.get("result", {})

    async def evaluate(self, expression):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                 awaitPromise=True)
        return result.get("result", {}).get("value")

    async def until(self, expression, timeout=15.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"page never satisfied {expression!r}; log:\n"
                             + self.log_path.read_text(errors="replace")[-2000:])

    async def screenshot(self):
        from PIL import Image

        data = (await self.call("Page.captureScreenshot", format="png"))["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    async def stop(self):
        if self._ws is not None:
            await self._ws.close()
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


async def test_dashboard_shows_live_call_timeline_and_drives_hold_release_feedback(
        level_model, tmp_path, monkeypatch):
    env = await start_env(level_model, tmp_path, monkeypatch)
    key = env.keys["bank"]["analyst"]
    media = f"ws://127.0.0.1:{env.port}/media/twilio"
    replay = asyncio.create_task(replay_twilio(media, call(2, 9), speed=1.5, linger=0.3,
                                               parameters={"tenant": "bank"}))
    browser = Browser(f"http://127.0.0.1:{env.port}/dashboard#key={key}", tmp_path)
    try:
        await browser.until("document.querySelectorAll('#live tbody tr').length === 1")
        session = await browser.evaluate("window.sg.selected")
        assert session and session.startswith("CA")
        assert await browser.evaluate("location.hash") == ""  # key not left in the URL
        await browser.until("document.getElementById('conn').textContent === 'events: live'")
        await browser.until("Number(document.getElementById('chart').dataset.points) >= 4")
        await browser.until("document.querySelector('#live .state.synthetic') !== null")
        await browser.evaluate("document.getElementById('hold').click()")
        await browser.until("document.getElementById('status').textContent === 'hold sent'")
        await browser.until("document.querySelector('#actions tr[data-kind=hold]') !== null")
        await asyncio.sleep(0.3)
        await browser.evaluate("document.getElementById('release').click()")
        await browser.until("document.getElementById('status').textContent === 'release sent'")
        await browser.evaluate("document.getElementById('wrong').click()")
        await browser.until(
            "document.getElementById('status').textContent === 'feedback recorded'")
        rect = await browser.evaluate(
            "(() => { const r = document.getElementById('chart').getBoundingClientRect();"
            " return [r.left, r.top, r.width, r.height]; })()")
        shot = await browser.screenshot()
        from PIL import Image

        Image.fromarray(shot).save(tmp_path / "dashboard.png")
        if os.environ.get("SG_KEEP_SCREENSHOTS"):
            shutil.copy(tmp_path / "dashboard.png", os.environ["SG_KEEP_SCREENSHOTS"])
        left, top, width, height = (int(v) for v in rect)
        chart = shot[top:top + height, left:left + width].astype(int)
        red_line = (np.abs(chart - [214, 39, 40]).sum(axis=2) < 60).sum()
        assert red_line > 150, red_line  # the caller's score line is drawn
        header = shot[:30, :].astype(int)
        assert (np.abs(header - [29, 35, 48]).sum(axis=2) < 20).mean() > 0.5  # dark header
    finally:
        await browser.stop()
        await replay
    await asyncio.sleep(0.5)
    log = env.gateway.control.hub.audit
    analyst_id = env.key_ids[("bank", "analyst")]
    mine = [e for e in log.entries() if e.record.get("by") == analyst_id]
    kinds = [(e.type, e.record.get("kind") or e.record.get("label")) for e in mine]
    assert kinds == [("action", "hold"), ("action", "release"), ("feedback", "wrong")]
    assert all(e.record["call_id"] == session and e.tenant == "bank" for e in mine)
    await stop_env(env)
