"""Disclosed synthetic speech: a verified watermark labels a stream, never holds it."""

import numpy as np
import pytest

from streamguard import Action, ActionKind, Guard, GuardConfig, Notice, State, Verdict
from streamguard.media import decode_file
from streamguard.watermark import WatermarkKey, embed

from .conftest import SPEECH
from .test_session import collect, play

BOT_KEY = WatermarkKey(vendor_id=7, key_id=1, secret=bytes(range(32)))


@pytest.fixture(scope="module")
def loud_speech():
    """15 s of real speech, loud enough that the level fixture model calls it synthetic."""
    files = sorted((SPEECH / "spoof_piper").glob("*"))[:6]
    if not files:
        pytest.skip("shared speech corpus not available")
    pcm = np.concatenate([decode_file(str(f), sample_rate=16000).pcm for f in files])[:16000 * 15]
    x = pcm.astype(np.float32) / 32768
    return x * (0.3 / np.sqrt(np.mean(x**2)))


def as_pcm16(x):
    return np.clip(x * 32768, -32768, 32767).astype(np.int16)


async def run(level_model, audio, keys):
    async with Guard.from_config(GuardConfig(model_path=level_model,
                                             watermark_keys=keys)) as guard:
        session = guard.open_session("bot-1")
        await play(session, as_pcm16(audio))
        await session.close()
        return await collect(session)


async def test_verified_watermark_discloses_and_is_never_held(level_model, loud_speech):
    marked = embed(loud_speech, 16000, BOT_KEY)
    events = await run(level_model, marked, (BOT_KEY,))
    verdicts = [e for e in events if isinstance(e, Verdict)]
    actions = [e for e in events if isinstance(e, Action)]
    notices = [e for e in events if isinstance(e, Notice) and e.kind == "watermark"]
    assert notices and notices[0].detail["status"] == "verified"
    assert notices[0].detail["vendor_id"] == 7 and notices[0].at <= 4.0
    assert verdicts[-1].final and verdicts[-1].state is State.DISCLOSED_SYNTHETIC
    assert verdicts[-1].disclosure["status"] == "verified"
    assert any(v.state is State.DISCLOSED_SYNTHETIC for v in verdicts[:-1])
    assert ActionKind.LABEL in [a.kind for a in actions]
    assert ActionKind.HOLD not in [a.kind for a in actions]


async def test_unknown_watermark_is_reported_but_not_trusted(level_model, loud_speech):
    marked = embed(loud_speech, 16000, BOT_KEY)
    events = await run(level_model, marked, ())  # the operator trusts no key
    verdicts = [e for e in events if isinstance(e, Verdict)]
    actions = [e for e in events if isinstance(e, Action)]
    notices = [e for e in events if isinstance(e, Notice) and e.kind == "watermark"]
    assert all(not n.detail["trusted"] for n in notices)
    assert verdicts[-1].state is State.SYNTHETIC and verdicts[-1].disclosure is None
    assert ActionKind.HOLD in [a.kind for a in actions]


async def test_unmarked_speech_is_not_disclosed(level_model, loud_speech):
    events = await run(level_model, loud_speech, (BOT_KEY,))
    assert not [e for e in events if isinstance(e, Notice) and e.kind == "watermark"]
    verdicts = [e for e in events if isinstance(e, Verdict)]
    assert verdicts[-1].state is State.SYNTHETIC


async def test_declared_agent_with_consent_is_disclosed_from_the_start(level_model, loud_speech):
    from streamguard.disclosure import DeclaredAgent

    agent = DeclaredAgent("bank", "collections-bot", "contract/2026/17")
    config = GuardConfig(model_path=level_model, declared_agents=(agent,))
    async with Guard.from_config(config) as guard:
        declared = guard.open_session("bot", tenant="bank", meta={"ai_agent": "collections-bot"})
        forged = guard.open_session("fake", tenant="bank", meta={"ai_agent": "other-bot"})
        other_tenant = guard.open_session("x", tenant="shop", meta={"ai_agent": "collections-bot"})
        for session in (declared, forged, other_tenant):
            await play(session, as_pcm16(loud_speech))
            await session.close()
        results = [await collect(s) for s in (declared, forged, other_tenant)]
    verdicts = [[e for e in events if isinstance(e, Verdict)] for events in results]
    actions = [[e.kind for e in events if isinstance(e, Action)] for events in results]
    assert all(v.state is State.DISCLOSED_SYNTHETIC for v in verdicts[0])
    assert verdicts[0][-1].disclosure["consent_ref"] == "contract/2026/17"
    assert ActionKind.LABEL in actions[0] and ActionKind.HOLD not in actions[0]
    for i in (1, 2):  # an unregistered declaration is reported, not trusted
        assert verdicts[i][-1].state is State.SYNTHETIC and ActionKind.HOLD in actions[i]
        notices = [e for e in results[i] if isinstance(e, Notice) and e.kind == "disclosure"]
        assert notices and "not trusted" in notices[0].message
