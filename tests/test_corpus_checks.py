"""Corpus generator / trainer fail loudly on a missing engine, voice or family.

Fast: no TTS is run and nothing is trained (PATH and imports are monkeypatched).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[1] / "models"

pytest.importorskip("scipy")
pytest.importorskip("soundfile")


@pytest.fixture()
def sc(monkeypatch):
    monkeypatch.syspath_prepend(str(MODELS))
    import synth_corpus

    return synth_corpus


def test_missing_espeak_names_install_command(sc, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # empty dir: no espeak-ng, flite, text2wave
    with pytest.raises(sc.MissingEngineError) as err:
        sc.check_engines(["espeak-ng"])
    msg = str(err.value)
    assert "espeak-ng" in msg and "apt-get install espeak-ng" in msg


def test_all_missing_engines_reported_together(sc, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(sc.MissingEngineError) as err:
        sc.check_engines(["flite", "festival-hts"])
    msg = str(err.value)
    assert "apt-get install flite" in msg and "apt-get install festival" in msg


def test_missing_festival_voice(sc, monkeypatch, tmp_path):
    (tmp_path / "text2wave").write_text("#!/bin/sh\n")
    (tmp_path / "text2wave").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sc, "FESTIVAL_VOICES", tmp_path / "no-voices")
    with pytest.raises(sc.MissingEngineError, match="festvox-us-slt-hts"):
        sc.check_engines(["festival-hts"])


def test_missing_python_engine(sc, monkeypatch):
    monkeypatch.setitem(sys.modules, "piper", None)  # import piper -> ImportError
    with pytest.raises(sc.MissingEngineError, match="pip install piper-tts"):
        sc.check_engines(["piper-joe"])


def test_generator_exits_nonzero_before_writing(sc, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    out = tmp_path / "corpus"
    rc = sc.main(["--out", str(out), "--families", "espeak-ng", "--no-fetch"])
    assert rc != 0
    assert "apt-get install espeak-ng" in capsys.readouterr().err
    assert not out.exists()  # nothing generated, no READY


def test_trainer_refuses_a_family_with_zero_files(monkeypatch, tmp_path):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(MODELS))
    import train_voice_clone as tvc

    def item(label, family, split):
        return tvc.Item(key=f"{family}/{split}", path=Path("x.flac"), label=label,
                        family=family, speaker="s", text="", source="corpus", split=split)

    items = [item(0, "librispeech", "train"), item(1, "piper-joe", "train"),
             item(1, "espeak-ng", "test")]  # espeak-ng: nothing to train on
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tvc.MissingFamilyError) as err:
        tvc.check_families(items, ["espeak-ng", "piper-joe"])
    msg = str(err.value)
    assert "'espeak-ng' has 0 training files" in msg and "apt-get install espeak-ng" in msg
    items.append(item(1, "espeak-ng", "train"))
    tvc.check_families(items, ["espeak-ng", "piper-joe"])  # complete: no error
    counts = tvc.family_counts(items)
    assert counts[("spoof", "espeak-ng")]["train"] == 1


def test_sdist_fetched_from_the_simple_index_with_its_hash_checked(sc, monkeypatch, tmp_path):
    """pip download would build an sdist's metadata; we take the archive as the index lists it."""
    import hashlib
    import http.server
    import threading

    archive = b"not really a tarball"
    digest = hashlib.sha256(archive).hexdigest()
    pages = {"/simple/py-sptk/": (f'<a href="/files/Py_SPTK-1.0.1.tar.gz#sha256={digest}">'
                                  "Py_SPTK-1.0.1.tar.gz</a>").encode(),
             "/files/Py_SPTK-1.0.1.tar.gz": archive}

    class Index(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = pages.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Index)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(sc, "PYPI_SIMPLE", f"http://127.0.0.1:{server.server_port}/simple")
        got = sc.download_sdist("Py_SPTK==1.0.1", tmp_path)
        assert got == tmp_path / "Py_SPTK-1.0.1.tar.gz" and got.read_bytes() == archive
        got.unlink()
        pages["/files/Py_SPTK-1.0.1.tar.gz"] = b"tampered"
        assert sc.download_sdist("Py_SPTK==1.0.1", tmp_path) is None
        assert not any(tmp_path.iterdir())  # a bad archive is not kept
        assert sc.download_sdist("Py_SPTK==9.9", tmp_path) is None  # not on the index
    finally:
        server.shutdown()


@pytest.mark.parametrize("other", [
    ["--time-branch"],
    ["--seeds", "0,1,2"],  # an ensemble's rows are not one seed's
    ["--split-seed", "1"],  # other genuine test files
    ["--crowd", "0.15"],
    ["--vocalisations"],
])
def test_loso_refuses_to_merge_rows_of_another_recipe(tmp_path, capsys, other):
    pytest.importorskip("torch")
    from bench import loso

    table = tmp_path / "loso.json"
    before = ('{"steps": 400, "seed": 0, "corpus": "shared + generated", '
              '"families": {"espeak-ng": {}}}')  # written before the recipe flags existed
    table.write_text(before)
    rc = loso.main(["--merge", "--out", str(table), *other, "--families", "flite"])
    assert rc == 2 and "another recipe" in capsys.readouterr().err
    assert table.read_text() == before
