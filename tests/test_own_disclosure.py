"""Our own injected prompts carry our watermark; exported reports can be signed."""

from __future__ import annotations

import json
import os
import stat
import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.cli import main
from gateway.prompts_store import (
    DISCLOSURE_KEY_ID,
    DISCLOSURE_VENDOR_ID,
    Prompts,
    disclosure_key,
)
from streamguard.media import pcm16_to_bytes, ulaw_decode, ulaw_encode
from streamguard.watermark import Status, WatermarkKey, detect

SECRET = "5a" * 32


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("STREAMGUARD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("STREAMGUARD_DISCLOSURE_SECRET", raising=False)
    return tmp_path / "data"


@pytest.fixture(scope="module")
def prompts() -> Prompts:
    mp = pytest.MonkeyPatch()
    mp.setenv("STREAMGUARD_DISCLOSURE_SECRET", SECRET)
    try:
        return Prompts.bundled()
    finally:
        mp.undo()


def test_installation_key_created_once_private(data_dir: Path) -> None:
    key = disclosure_key()
    assert (key.vendor_id, key.key_id) == (DISCLOSURE_VENDOR_ID, DISCLOSURE_KEY_ID) == (0, 1)
    path = data_dir / "disclosure.key"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert disclosure_key().secret == key.secret  # reused, not regenerated
    assert len(key.secret) == 32


def test_env_secret_wins(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMGUARD_DISCLOSURE_SECRET", SECRET)
    assert disclosure_key().secret == bytes.fromhex(SECRET)
    assert not (data_dir / "disclosure.key").exists()
    monkeypatch.setenv("STREAMGUARD_DISCLOSURE_SECRET", "zz")
    with pytest.raises(ValueError, match="hex"):
        disclosure_key()


@pytest.mark.parametrize("name", ["warning", "hold"])
def test_prompts_carry_our_mark_at_8k_and_ulaw(prompts: Prompts, name: str) -> None:
    key = WatermarkKey(0, 1, bytes.fromhex(SECRET))
    pcm = getattr(prompts, name)
    assert pcm.dtype == np.int16
    for audio in (pcm, ulaw_decode(ulaw_encode(pcm))):
        found = detect(audio, 8000, [key])
        assert found is not None and found.status is Status.VERIFIED
        assert (found.vendor_id, found.key_id) == (0, 1)
    other = WatermarkKey(0, 1, b"\x01" * 32)  # another installation's key: not verified
    found = detect(pcm, 8000, [other])
    assert found is None or found.status is not Status.VERIFIED


def test_hold_music_left_unmarked(prompts: Prompts) -> None:
    found = detect(prompts.hold_music, 8000, [WatermarkKey(0, 1, bytes.fromhex(SECRET))])
    assert found is None or found.status is not Status.VERIFIED


def test_detect_own_cli(prompts: Prompts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMGUARD_DISCLOSURE_SECRET", SECRET)
    path = tmp_path / "warning.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm16_to_bytes(prompts.warning))
    assert main(["watermark", "detect", "--json", "--own", str(path)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["watermark"]["status"] == "verified"
    assert main(["watermark", "detect", "--json", str(path)]) == 0  # no key: not verified
    assert json.loads(capsys.readouterr().out)["watermark"]["status"] != "verified"


def test_report_sign_and_verify(data_dir: Path, tmp_path: Path,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from streamguard.audit import AuditLog

    out = tmp_path / "report"
    db = tmp_path / "audit.sqlite3"
    AuditLog(db).close()
    assert main(["report", "--db", str(db), "--out", str(out), "--no-chart", "--sign"]) == 0
    assert (out / "report.json.sig.json").exists() and (out / "report-signing.pub.pem").exists()
    key_file = data_dir / "report-signing.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    capsys.readouterr()
    assert main(["report", "verify", str(out)]) == 0
    assert "installation" in capsys.readouterr().out
    report = out / "report.json"
    report.write_text(report.read_text().replace('"records"', '"recordz"', 1))
    assert main(["report", "verify", str(out)]) == 1
    assert "does NOT match" in capsys.readouterr().err
    assert main(["report", "verify", str(tmp_path / "nowhere")]) == 1
    assert main(["report", "verify"]) == 2
