import json
import subprocess
import sys

import av
import numpy as np
import pytest

from gateway.cli import main

from .conftest import REPO, voiced


def write_wav(path, pcm, rate=16000):
    with av.open(str(path), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = rate
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.fixture
def files(tmp_path):
    quiet = write_wav(tmp_path / "quiet.wav", voiced(6, 0.03))
    loud = write_wav(tmp_path / "loud.wav", voiced(6, 0.8), rate=8000)
    short = write_wav(tmp_path / "short.wav", voiced(0.4, 0.3))
    silent = write_wav(tmp_path / "silent.wav", np.zeros(16000 * 3, dtype=np.int16))
    junk = tmp_path / "junk.mp3"
    junk.write_bytes(b"\x00\x11garbage" * 100)
    return {"quiet": quiet, "loud": loud, "short": short, "silent": silent, "junk": junk,
            "missing": tmp_path / "nope.wav"}


def test_scan_json_lines_and_exit_code(files, level_model, capsys):
    order = ["quiet", "junk", "loud", "short", "silent", "missing"]
    code = main(["scan", "--json", "--model", str(level_model), *[str(files[k]) for k in order]])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # some files failed, the others were still scanned
    by_name = {rec["path"].rsplit("/", 1)[-1]: rec for rec in lines}
    assert [rec["path"] for rec in lines] == [str(files[k]) for k in order]
    quiet, loud = by_name["quiet.wav"], by_name["loud.wav"]
    assert quiet["verdict"] == "clear" and loud["verdict"] == "synthetic"
    for rec in (quiet, loud):
        low, high = rec["interval"]
        assert low <= rec["probability"] <= high
        assert rec["windows"] and {"start", "end", "score", "probability"} <= set(rec["windows"][0])
    assert loud["probability"] > 0.85 > 0.15 > quiet["probability"]
    assert "error" in by_name["junk.mp3"] and "junk.mp3" in by_name["junk.mp3"]["error"]
    assert "too short" in by_name["short.wav"]["error"]
    assert "no such file" in by_name["nope.wav"]["error"]
    silent = by_name["silent.wav"]
    assert silent["verdict"] == "listening" and silent["probability"] is None
    assert silent["note"] == "not enough speech to score"


def test_scan_human_output(files, level_model, capsys):
    assert main(["scan", "--model", str(level_model), str(files["loud"])]) == 0
    out = capsys.readouterr().out
    assert "verdict: SYNTHETIC" in out and "P(synthetic)=" in out


def test_missing_model_is_a_usage_error(files, tmp_path, capsys):
    code = main(["scan", "--model", str(tmp_path / "absent.onnx"), str(files["quiet"])])
    assert code == 2 and "model error" in capsys.readouterr().err


def test_console_script_runs(files, level_model):
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "scan", "--json", "--model", str(level_model),
         str(files["quiet"])], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "clear"


def test_demo_streams_live_verdicts_for_each_call(files, level_model, capsys, tmp_path):
    audit_db = tmp_path / "audit.sqlite3"
    code = main(["demo", "--speed", "50", "--model", str(level_model), "--audit-db",
                 str(audit_db), str(files["quiet"]), str(files["loud"])])
    out = capsys.readouterr().out
    assert code == 0
    assert "FINAL CLEAR" in out and "FINAL SYNTHETIC" in out
    assert "<- was listening" in out
    assert "ACTION HOLD" in out
    assert "streamguard:hold reached the call" in out  # replayed through the gateway
    from streamguard.audit import AuditLog

    with AuditLog(audit_db) as log:
        assert log.verify().ok
        kinds = {e.type for e in log.entries()}
    assert {"call_started", "verdict", "action", "call_ended"} <= kinds


def test_scan_video_reports_a_face_timeline_per_face(capsys):
    clip = REPO.parent / "shared" / "reference" / "face" / "media" / \
        "astronaut_faceswap_640x480_25fps_5s.mp4"
    if not clip.exists():
        pytest.skip("shared face media missing")
    assert main(["scan", "--json", str(clip)]) == 0
    record = json.loads(capsys.readouterr().out.splitlines()[0])
    assert record["kind"] == "video" and record["verdict"] is None
    faces = record["faces"]
    if "unavailable" in faces:
        pytest.skip(faces["unavailable"])
    face = faces["participants"]["face-1"]
    assert face["verdict"] == "synthetic" and len(face["windows"]) >= 4
