"""C2PA provenance: signed test assets made with c2pa-python's own Builder and a throwaway
ES256 certificate chain (test root CA -> signer) generated here with ``cryptography``."""

from __future__ import annotations

import datetime
import io
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from gateway.cli import main
from streamguard.provenance import (
    MAX_WALK_ITEMS,
    ProvenanceError,
    _summarise,
    _walk,
    read_provenance,
)

c2pa = pytest.importorskip("c2pa")
x509 = pytest.importorskip("cryptography.x509")
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "StreamGuard Test CA")])


def _usage(sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=not sign, crl_sign=not sign, encipher_only=False,
                         decipher_only=False)


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    """A root CA and an ES256 signing certificate (c2pa-rs refuses a self-signed leaf)."""
    now = datetime.datetime.now(datetime.UTC)
    life = (now - datetime.timedelta(days=1), now + datetime.timedelta(days=7))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("Test Root")).issuer_name(_name("Test Root"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(life[0]).not_valid_after(life[1])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(_usage(False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder().subject_name(_name("Test Generator Signer"))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(life[0]).not_valid_after(life[1])
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_usage(True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    return {"chain": (leaf.public_bytes(pem) + ca.public_bytes(pem)).decode(),
            "key": key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()).decode(),
            "root": ca.public_bytes(pem).decode()}


def _jpeg() -> bytes:
    from PIL import Image

    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def _wav() -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.sin(np.arange(16000) / 5) * 3000).astype("<i2").tobytes())
    return buf.getvalue()


def sign(pki: dict[str, str], data: bytes, mime: str, source_type: str | None) -> bytes:
    action: dict[str, str] = {"action": "c2pa.created"}
    if source_type:
        action["digitalSourceType"] = IPTC + source_type
    manifest = {"claim_generator_info": [{"name": "TestGen", "version": "2.0"}],
                "title": "test asset",
                "assertions": [{"label": "c2pa.actions", "data": {"actions": [action]}}]}
    info = c2pa.C2paSignerInfo(c2pa.C2paSigningAlg.ES256, pki["chain"].encode(),
                               pki["key"].encode(), None)
    out = io.BytesIO()
    with c2pa.Signer.from_info(info) as signer, c2pa.Builder(manifest) as builder:
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


@pytest.fixture(scope="module")
def assets(pki: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("c2pa")
    files = {
        "ai.jpg": sign(pki, _jpeg(), "image/jpeg", "trainedAlgorithmicMedia"),
        "camera.jpg": sign(pki, _jpeg(), "image/jpeg", "digitalCapture"),
        "composite.jpg": sign(pki, _jpeg(), "image/jpeg", "compositeWithTrainedAlgorithmicMedia"),
        "ai.wav": sign(pki, _wav(), "audio/wav", "trainedAlgorithmicMedia"),
        "plain.jpg": _jpeg(),
        "corrupt.jpg": b"\xff\xd8\xff\xe0" + b"\x00garbage" * 10,
        "empty.jpg": b"",
    }
    signed = bytearray(files["ai.jpg"])
    signed[-300] ^= 0xFF  # flip bits in the image data, after the manifest
    files["tampered.jpg"] = bytes(signed)
    out = {}
    for name, data in files.items():
        (d / name).write_bytes(data)
        out[name] = d / name
    return out


def test_ai_declared_signed_image(assets: dict[str, Path]) -> None:
    p = read_provenance(assets["ai.jpg"])
    assert p.state == "valid"  # signature checks out; the test CA is on no trust list
    assert p.claim_generator == "TestGen 2.0"
    assert p.signer["common_name"] == "Test Generator Signer"
    assert p.signer["issuer"] == "StreamGuard Test CA"
    assert p.ai_generated and p.declares_ai
    assert p.digital_source_types == (IPTC + "trainedAlgorithmicMedia",)
    assert p.errors == ()


def test_trust_anchor_makes_it_trusted(assets: dict[str, Path], pki: dict[str, str]) -> None:
    assert read_provenance(assets["ai.jpg"], trust_anchors=pki["root"]).state == "trusted"


def test_camera_capture_is_not_ai_and_composite_is(assets: dict[str, Path]) -> None:
    camera = read_provenance(assets["camera.jpg"])
    assert camera.state == "valid" and not camera.ai_generated
    assert read_provenance(assets["composite.jpg"]).ai_generated


def test_audio_manifest(assets: dict[str, Path]) -> None:
    p = read_provenance(assets["ai.wav"])
    assert p.state == "valid" and p.ai_generated


def test_tampered_asset_is_invalid(assets: dict[str, Path]) -> None:
    p = read_provenance(assets["tampered.jpg"])
    assert p.state == "invalid"
    assert "assertion.dataHash.mismatch" in {e["code"] for e in p.errors}
    assert not p.declares_ai  # an invalid manifest's claims are not trusted


def test_absent_and_hostile_files(assets: dict[str, Path], tmp_path: Path) -> None:
    assert read_provenance(assets["plain.jpg"]).state == "absent"
    assert read_provenance(assets["empty.jpg"]).state == "absent"
    with pytest.raises(ProvenanceError, match=r"corrupt\.jpg"):
        read_provenance(assets["corrupt.jpg"])
    with pytest.raises(ProvenanceError, match="no such file"):
        read_provenance(tmp_path / "missing.jpg")
    with pytest.raises(ProvenanceError, match="too large"):
        read_provenance(assets["ai.jpg"], max_bytes=100)
    junk = tmp_path / "random.bin"
    junk.write_bytes(np.random.default_rng(2).bytes(5000))
    with pytest.raises(ProvenanceError):
        read_provenance(junk)


def test_malformed_stores_never_crash() -> None:
    assert _summarise([]).state == "invalid"
    assert _summarise({"manifests": "x"}).state == "invalid"
    deep: dict[str, object] = {}
    node = deep
    for _ in range(10_000):  # deeper than Python's recursion limit
        node["d"] = {}
        node = node["d"]  # type: ignore[assignment]
    store = {"active_manifest": "m", "manifests": {"m": {"assertions": [{"data": deep}]}}}
    assert _summarise(store).state == "valid"
    wide = {"data": [{"x": i} for i in range(MAX_WALK_ITEMS * 2)]}
    assert sum(1 for _ in _walk(wide)) <= MAX_WALK_ITEMS


def test_scan_reports_provenance_for_images(assets: dict[str, Path], level_model: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["scan", "--json", "--model", str(level_model), str(assets["ai.jpg"]),
                 str(assets["tampered.jpg"]), str(assets["empty.jpg"])])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert code == 1  # the empty image has no pixels
    ai, tampered, empty = lines
    assert ai["kind"] == "image" and ai["verdict"] is None
    assert ai["provenance"]["state"] == "valid" and ai["provenance"]["ai_generated"]
    assert ai["provenance"]["signer"]["common_name"] == "Test Generator Signer"
    assert "too small" in ai["image_watermark"]["error"]
    assert tampered["provenance"]["state"] == "invalid"
    assert "no pixels" in empty["error"]
