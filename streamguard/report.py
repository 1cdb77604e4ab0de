"""Transparency report: what StreamGuard did, under which policy, and how well it is measured.

Built from the audit log (volumes, states, actions, the policy in force, the
model versions that produced the verdicts, the log's own integrity check) and
from the latest bench results (``eer.json``: EER with its 95 % interval, false
positives and false negatives at the operating point with Wilson 95 %
intervals, leave-one-source-out EERs; ``speaker.json`` when present). Numbers
only; anything not measured says "not measured".

Rendered as JSON (the source of truth), Markdown and, where matplotlib is
importable, an SVG of verdicts over time. Runtime never requires matplotlib.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamguard.audit import AuditEntry, AuditLog, format_ts, parse_ts
from streamguard.policy import DEFAULT_POLICY, Policy

REPORT_VERSION = 1
POLICY_TYPES = ("policy_change", "policy")
SESSION_TYPES = ("verdict", "action", "notice", "identity", "session_open", "session_close",
                 "session")
NOT_MEASURED = "not measured"
_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


def wilson(errors: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """Wilson score 95 % interval of a proportion, or None when n is 0."""
    if n <= 0:
        return None
    p = errors / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


# -- audit log -------------------------------------------------------------------------------


def _volumes(entries: Iterable[AuditEntry]) -> dict[str, Any]:
    by_type: Counter[str] = Counter()
    verdict_states: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    action_rules: Counter[str] = Counter()
    notices: Counter[str] = Counter()
    identity: Counter[str] = Counter()
    models: Counter[str] = Counter()
    tenants: Counter[str] = Counter()
    sessions: set[tuple[str, str]] = set()
    last_state: dict[tuple[str, str], str] = {}
    final_state: dict[tuple[str, str], str] = {}
    reached: dict[tuple[str, str], set[str]] = defaultdict(set)
    windows: dict[tuple[str, str], int] = {}
    verdicts = final_verdicts = changes = 0
    timeline: list[tuple[str, str]] = []
    first_ts = last_ts = None
    for e in entries:
        first_ts = first_ts or e.ts
        last_ts = e.ts
        by_type[e.type] += 1
        tenants[e.tenant] += 1
        r = e.record
        stream = r.get("stream_id")
        key = (e.tenant, str(stream)) if stream is not None else None
        if key is not None and e.type in SESSION_TYPES:
            sessions.add(key)
        if e.type == "verdict":
            verdicts += 1
            state = str(r.get("state"))
            verdict_states[state] += 1
            timeline.append((e.ts, state))
            if r.get("model_version"):
                models[str(r["model_version"])] += 1
            if r.get("changed"):
                changes += 1
            if key is not None:
                last_state[key] = state
                reached[key].add(state)
                scored = r.get("windows_scored")
                if isinstance(scored, int):
                    windows[key] = max(windows.get(key, 0), scored)
                if r.get("final"):
                    final_state[key] = state
            if r.get("final"):
                final_verdicts += 1
        elif e.type == "action":
            actions[str(r.get("kind"))] += 1
            action_rules[str(r.get("rule"))] += 1
        elif e.type == "notice":
            notices[str(r.get("kind"))] += 1
        elif e.type == "identity":
            identity[str(r.get("status"))] += 1
    ended = {k: final_state.get(k, s) for k, s in last_state.items()}
    flagged = sum(1 for s in reached.values() if s & {"suspect", "synthetic"})
    return {
        "period": {"first": first_ts, "last": last_ts},
        "records": sum(by_type.values()),
        "records_by_type": dict(sorted(by_type.items())),
        "records_by_tenant": dict(sorted(tenants.items())),
        "sessions": len(sessions),
        "sessions_with_verdicts": len(last_state),
        "sessions_by_last_state": dict(sorted(Counter(ended.values()).items())),
        "sessions_flagged_suspect_or_synthetic": flagged,
        "sessions_closed_with_final_verdict": len(final_state),
        "windows_scored": sum(windows.values()),
        "verdicts": verdicts,
        "final_verdicts": final_verdicts,
        "state_changes": changes,
        "verdicts_by_state": dict(sorted(verdict_states.items())),
        "actions": sum(actions.values()),
        "actions_by_kind": dict(sorted(actions.items())),
        "actions_by_rule": dict(sorted(action_rules.items())),
        "notices_by_kind": dict(sorted(notices.items())),
        "identity_checks_by_status": dict(sorted(identity.items())),
        "model_versions_in_verdicts": dict(sorted(models.items())),
        "enrolments": by_type.get("enrolment", 0),
        "enrolments_refused": by_type.get("enrolment_refused", 0),
        "voiceprint_erasures": by_type.get("voiceprint_erasure", 0),
        "policy_changes": sum(by_type.get(t, 0) for t in POLICY_TYPES),
        "_timeline": timeline,
    }


def _timeline(points: list[tuple[str, str]]) -> dict[str, Any]:
    if not points:
        return {"bucket_seconds": None, "buckets": []}
    times = [parse_ts(ts).timestamp() for ts, _ in points]
    span = max(times) - min(times)
    size = next((b for b in _BUCKETS if span / b <= 48), _BUCKETS[-1])
    start = math.floor(min(times) / size) * size
    buckets: dict[int, Counter[str]] = defaultdict(Counter)
    for t, (_, state) in zip(times, points, strict=True):
        buckets[int((t - start) // size)][state] += 1
    return {"bucket_seconds": size, "buckets": [
        {"start": format_ts(datetime.fromtimestamp(start + i * size, UTC)),
         "counts": dict(sorted(buckets[i].items()))}
        for i in range(max(buckets) + 1)]}


def _policies(log: AuditLog, tenant: str | None) -> dict[str, Any]:
    latest: dict[str, dict[str, Any]] = {}
    for e in log.entries(tenant=tenant, types=POLICY_TYPES):
        data = e.record.get("policy")
        if not isinstance(data, dict):
            continue
        try:
            policy = Policy.from_dict(data).to_dict()
        except ValueError as exc:
            latest[e.tenant] = {"source": f"audit log seq {e.seq}", "seq": e.seq, "ts": e.ts,
                                "error": str(exc)}
            continue
        latest[e.tenant] = {"source": f"audit log seq {e.seq}", "seq": e.seq, "ts": e.ts,
                            "changed_by": e.record.get("changed_by"), "policy": policy}
    default = {"source": "streamguard.policy.DEFAULT_POLICY (no policy change in the log)",
               "seq": None, "ts": None, "policy": DEFAULT_POLICY.to_dict()}
    if tenant is not None:
        return {"in_force": latest.get(tenant, default), "by_tenant": {}}
    newest = max(latest.values(), key=lambda p: int(p["seq"])) if latest else default
    return {"in_force": newest, "by_tenant": dict(sorted(latest.items())), "default": default}


# -- bench results and model cards -----------------------------------------------------------


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _measured_at(path: Path, data: dict[str, Any]) -> str:
    when = data.get("when")
    if isinstance(when, str):
        return when
    return format_ts(datetime.fromtimestamp(path.stat().st_mtime, UTC)) + " (file time)"


def _operating_point(op: dict[str, Any]) -> dict[str, Any]:
    """FPR/FNR with counts and 95 % intervals; the bench's bootstrap CI if it gave one
    (``fpr_pct`` / ``fpr_ci95_pct`` schema), else a Wilson interval from the counts."""
    out: dict[str, Any] = {"threshold": op.get("threshold", op.get("threshold_margin"))}
    for rate, n_key, label in (("fpr", "n_bonafide", "false_positives"),
                               ("fnr", "n_spoof", "false_negatives")):
        value, n = op.get(rate), op.get(n_key)
        if value is None and isinstance(op.get(f"{rate}_pct"), int | float):
            value = op[f"{rate}_pct"] / 100
        if not isinstance(value, int | float) or not isinstance(n, int):
            out[rate] = None
            continue
        errors = round(value * n)
        bench_ci = op.get(f"{rate}_ci95_pct")
        if isinstance(bench_ci, list) and len(bench_ci) == 2:
            ci: Any = [bench_ci[0] / 100, bench_ci[1] / 100]
            method = "bench bootstrap"
        else:
            ci = list(w) if (w := wilson(errors, n)) else None
            method = "Wilson"
        out.update({rate: value, label: errors, n_key: n, f"{rate}_ci95": ci,
                    f"{rate}_ci_method": method})
    return out


def _row(corpus: str, name: str, model: dict[str, Any], condition: str, split: str,
         m: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    return {"corpus": corpus, "model": name, "version": model.get("version"),
            "calibration": model.get("calibration"), "shipped": name == "shipped",
            "condition": condition, "split": split, "eer_pct": m.get("eer_pct"),
            "eer_ci95_pct": m.get("eer_ci95_pct"), "operating_point": _operating_point(op)}


def detection_rates(bench_dir: Path | None) -> dict[str, Any]:
    """Detection numbers from ``eer.json`` (and ``speaker.json``) in ``bench_dir``."""
    eer_path = bench_dir / "eer.json" if bench_dir else None
    data = _load(eer_path) if eer_path else None
    if eer_path is None or data is None:
        return {"status": NOT_MEASURED, "source": str(eer_path) if eer_path else None}
    rows = []
    for name, model in sorted((data.get("models") or {}).items()):
        if not isinstance(model, dict):
            continue
        for condition, splits in model.items():
            if not isinstance(splits, dict):
                continue
            for split, m in splits.items():
                if isinstance(m, dict) and "eer_pct" in m:
                    rows.append(_row("shared speech corpus", name, model, condition, split, m,
                                     m.get("operating_point") or {}))
    generated = data.get("generated_test_split") or {}
    for name, model in sorted((generated.get("models") or {}).items()):
        if not isinstance(model, dict):
            continue
        for condition, rep in model.items():
            overall = rep.get("overall") if isinstance(rep, dict) else None
            if not isinstance(overall, dict) or "eer_pct" not in overall:
                continue
            rows.append(_row("generated test split", name, model, condition, "test", overall,
                             overall))
    unseen = data.get("unseen_families") or {}
    unseen_rows = _family_rows(unseen)
    loso = data.get("leave_one_family_out") or data.get("leave_one_source_out") or {}
    table = loso.get("table") or loso.get("families") or {}
    families = _numbers_by_family(table, ("eer_pct", "n_"))
    paired = data.get("leave_one_family_out_with_phase_cue") or {}
    paired_families = _numbers_by_family(paired.get("table") or {}, ("eer_", "n_"))
    out: dict[str, Any] = {
        "status": "measured", "source": str(eer_path),
        "measured_at": _measured_at(eer_path, data),
        "protocol": "EER with spoof as the positive class; FPR = genuine speech flagged, "
                    "FNR = synthetic speech missed, at the model's operating threshold; "
                    "EER interval from the bench; FPR/FNR interval from the bench's bootstrap "
                    "where it gives one, else Wilson 95 % from the counts",
        "corpus": data.get("corpus"), "test_split": data.get("test_split"),
        "generated_test_split": {k: generated.get(k) for k in
                                 ("protocol", "files", "bonafide", "spoof", "skipped")
                                 if k in generated} or NOT_MEASURED,
        "rows": rows, "per_family": _family_rows(generated),
        "unseen_families": {"protocol": unseen.get("protocol"),
                            "shipped_trained_on": unseen.get("shipped_trained_on"),
                            "per_family": unseen_rows} if unseen_rows else NOT_MEASURED,
        "leave_one_source_out": {"protocol": loso.get("protocol"), "families": families}
        if families else NOT_MEASURED,
        "leave_one_family_out_with_phase_cue": {
            "detector": paired.get("detector"), "protocol": paired.get("protocol"),
            "families": paired_families} if paired_families else NOT_MEASURED,
    }
    speaker = _load(bench_dir / "speaker.json") if bench_dir else None
    out["speaker_verification"] = _speaker_rows(speaker) if speaker else NOT_MEASURED
    return out


def _numbers_by_family(table: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    """Each family's entries whose names start with one of ``prefixes``, families sorted."""
    return {fam: {k: v for k, v in m.items() if k.startswith(prefixes)}
            for fam, m in sorted(table.items()) if isinstance(m, dict)}


def _family_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    """EER and FNR per synthesis family, per model and channel, of one bench section."""
    rows = []
    for name, model in sorted((section.get("models") or {}).items()):
        if not isinstance(model, dict):
            continue
        for condition, rep in model.items():
            if not isinstance(rep, dict):
                continue
            for fam, f in sorted((rep.get("per_family") or {}).items()):
                if isinstance(f, dict):
                    rows.append({"model": name, "condition": condition, "family": fam,
                                 **{k: f.get(k) for k in ("eer_pct", "eer_ci95_pct", "fnr_pct",
                                                          "fnr_ci95_pct", "n_spoof")}})
    return rows


def _speaker_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for condition in ("wideband", "mulaw8k"):
        for crop, tests in (data.get(condition) or {}).items():
            if not isinstance(tests, dict):
                continue
            for test, m in tests.items():
                if isinstance(m, dict) and "eer_pct" in m:
                    rows.append({"condition": condition, "speech": crop, "test": test,
                                 "eer_pct": m["eer_pct"], "eer_ci95_pct": m.get("ci95_pct"),
                                 "n_same": m.get("n_same"), "n_different": m.get("n_different")})
    return rows


def model_cards(dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """Title, file and (from a JSON sidecar) version of every ``# Model card`` page."""
    cards = []
    for directory in dirs:
        for path in sorted(Path(directory).glob("*.md")):
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            title = next((ln[2:].strip() for ln in lines if ln.startswith("# ")), "")
            if not title.lower().startswith("model card"):
                continue
            meta = _load(path.with_suffix(".json")) or {}
            cards.append({"title": title, "file": str(path), "name": meta.get("name"),
                          "version": meta.get("version")})
    return cards


# -- the report ------------------------------------------------------------------------------


def build_report(log: AuditLog, *, since: datetime | None = None, tenant: str | None = None,
                 bench_dir: Path | None = None, card_dirs: Sequence[Path] = (),
                 now: datetime | None = None) -> dict[str, Any]:
    volumes = _volumes(log.entries(tenant=tenant, since=since))
    timeline = _timeline(volumes.pop("_timeline"))
    integrity = log.verify()
    return {
        "report_version": REPORT_VERSION,
        "generated_at": format_ts(now or datetime.now(UTC)),
        "scope": {"since": format_ts(since) if since else None, "tenant": tenant,
                  "audit_log": str(log.path)},
        "audit_integrity": integrity.to_dict() | {"message": integrity.message()},
        "volumes": volumes,
        "timeline": timeline,
        "policy": _policies(log, tenant),
        "models": {"versions_in_verdicts": volumes["model_versions_in_verdicts"],
                   "cards": model_cards(card_dirs)},
        "detection": detection_rates(bench_dir),
        "charts": [],
    }


def _pct(x: Any) -> str:
    return f"{100 * x:.2f} %" if isinstance(x, int | float) else "–"


def _ci(ci: Any, scale: float = 100.0) -> str:
    if not isinstance(ci, list | tuple) or len(ci) != 2:
        return "–"
    return f"[{scale * ci[0]:.2f}, {scale * ci[1]:.2f}] %"


def _pct_ci(value: Any, ci: Any) -> str:
    """``value`` and ``ci`` already in percent."""
    if not isinstance(value, int | float):
        return NOT_MEASURED
    if isinstance(ci, list | tuple) and len(ci) == 2:
        return f"{value:.2f} % [{ci[0]:.2f}, {ci[1]:.2f}] %"
    return f"{value:.2f} %"


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join("–" if c is None else str(c) for c in row) + " |" for row in rows]
    return out


def _counts(title: str, counts: dict[str, int]) -> list[str]:
    if not counts:
        return [f"**{title}:** none", ""]
    return [f"**{title}**", "", *_table(("", "count"), sorted(counts.items())), ""]


def render_markdown(report: dict[str, Any]) -> str:
    v, scope = report["volumes"], report["scope"]
    integ = report["audit_integrity"]
    md = ["# StreamGuard transparency report", "",
          f"Generated {report['generated_at']} from `{scope['audit_log']}`"
          + (f", tenant `{scope['tenant']}`" if scope["tenant"] else ", all tenants")
          + (f", since {scope['since']}" if scope["since"] else "") + ".",
          f"Period covered: {v['period']['first'] or '–'} to {v['period']['last'] or '–'}.", "",
          "## Audit log integrity", "",
          ("Hash chain verified: " if integ["ok"] else "**Hash chain FAILED:** ")
          + integ["message"] + ".", "",
          "## Volumes", ""]
    md += _table(("measure", "count"), [
        ("audit records", v["records"]), ("sessions", v["sessions"]),
        ("sessions with verdicts", v["sessions_with_verdicts"]),
        ("sessions ever suspect or synthetic", v["sessions_flagged_suspect_or_synthetic"]),
        ("windows scored", v["windows_scored"]), ("verdicts", v["verdicts"]),
        ("state changes", v["state_changes"]), ("actions", v["actions"]),
        ("enrolments", v["enrolments"]), ("enrolments refused", v["enrolments_refused"]),
        ("voiceprint erasures", v["voiceprint_erasures"]),
        ("policy changes", v["policy_changes"])])
    md += ["", *_counts("Verdicts by state", v["verdicts_by_state"]),
           *_counts("Sessions by last state", v["sessions_by_last_state"]),
           *_counts("Actions by kind", v["actions_by_kind"]),
           *_counts("Actions by rule", v["actions_by_rule"]),
           *_counts("Notices by kind", v["notices_by_kind"]),
           *_counts("Identity checks by status", v["identity_checks_by_status"])]
    pol = report["policy"]["in_force"]
    md += ["## Policy in force", "", f"Source: {pol['source']}.", ""]
    if "policy" in pol:
        p = pol["policy"]
        md += [f"Policy `{p['name']}` version `{p['version']}`:", ""]
        md += _table(("rule", "state", "actions", "min P(synthetic)", "min interval low",
                      "cooldown s", "text"),
                     [(r["name"], r["state"], ", ".join(r["actions"]), r["min_probability"],
                       r["min_interval_low"], r["cooldown_s"], r.get("text"))
                      for r in p["rules"]])
        if p.get("identity_rules"):
            md += ["", "Identity rules (calls that claim an enrolled identity):", ""]
            md += _table(("rule", "identity status", "actions", "cooldown s", "text"),
                         [(r["name"], r["status"], ", ".join(r["actions"]), r["cooldown_s"],
                           r.get("text")) for r in p["identity_rules"]])
    else:
        md += [f"Invalid policy record: {pol.get('error')}"]
    others = report["policy"].get("by_tenant") or {}
    if len(others) > 1:
        md += ["", "Latest policy per tenant: " + "; ".join(
            f"`{t or '(none)'}` → {p.get('policy', {}).get('name')}@"
            f"{p.get('policy', {}).get('version')} (seq {p['seq']})"
            for t, p in others.items()) + "."]
    models = report["models"]
    md += ["", "## Models", ""]
    md += _counts("Model versions that produced the verdicts", models["versions_in_verdicts"])
    md += _table(("model card", "name", "version"),
                 [(c["title"], c["name"], c["version"]) for c in models["cards"]]) \
        if models["cards"] else ["Model cards: none found."]
    md += ["", *_render_detection(report["detection"])]
    md += ["## Charts", ""]
    if report["charts"]:
        md += [f"![verdicts over time]({c})" for c in report["charts"]]
    else:
        md += [report.get("charts_note") or "No chart."]
    return "\n".join(md).rstrip() + "\n"


def _render_detection(det: dict[str, Any]) -> list[str]:
    md = ["## Detection rates (latest bench runs)", ""]
    if det["status"] != "measured":
        return [*md, f"Detection rates: {NOT_MEASURED} (no bench results at "
                     f"{det.get('source') or 'any known location'}).", ""]
    corpus = det.get("corpus") or {}
    md += [f"Source `{det['source']}`, measured {det['measured_at']}. Corpus: "
           f"{corpus.get('files', '?')} files ({corpus.get('bonafide', '?')} genuine, "
           f"{corpus.get('spoof', '?')} synthetic) from "
           f"{', '.join(corpus.get('sources') or []) or '?'}. {det['protocol']}.", ""]
    rows = []
    for r in det["rows"]:
        op = r["operating_point"]
        fp = (f"{_pct(op.get('fpr'))} ({op.get('false_positives')}/{op.get('n_bonafide')}) "
              f"{_ci(op.get('fpr_ci95'))}" if op.get("fpr") is not None else NOT_MEASURED)
        fn = (f"{_pct(op.get('fnr'))} ({op.get('false_negatives')}/{op.get('n_spoof')}) "
              f"{_ci(op.get('fnr_ci95'))}" if op.get("fnr") is not None else NOT_MEASURED)
        eer = _pct_ci(r["eer_pct"], r["eer_ci95_pct"])
        rows.append((r["corpus"], r["model"], r["version"], r["condition"], r["split"], eer,
                     fp, fn))
    md += _table(("corpus", "model", "version", "channel", "split", "EER [95 % CI]",
                  "false positives: FPR (FP/genuine) [95 % CI]",
                  "false negatives: FNR (FN/synthetic) [95 % CI]"), rows)
    gen = det.get("generated_test_split")
    if isinstance(gen, dict) and gen.get("protocol"):
        md += ["", f"Generated test split: {gen.get('files')} files ({gen.get('bonafide')} "
                   f"genuine, {gen.get('spoof')} synthetic). {gen['protocol']}."]
    if det.get("per_family"):
        md += ["", "**Per synthesis family (generated test split)**", ""]
        md += _family_table(det["per_family"])
    unseen = det.get("unseen_families")
    if isinstance(unseen, dict):
        md += ["", "**Synthesis families the shipped model was never trained on**", "",
               f"{unseen.get('protocol') or ''}", ""]
        md += _family_table(unseen["per_family"])
    loso = det["leave_one_source_out"]
    md += ["", "**Unseen synthesis families (leave one source out)**", ""]
    if isinstance(loso, dict):
        md += [f"{loso.get('protocol') or ''}", ""]
        md += _table(("held-out family", "EER wideband %", "EER μ-law 8 kHz %", "n synthetic",
                      "n genuine"),
                     [(f, m.get("eer_pct_wideband"), m.get("eer_pct_mulaw8k"), m.get("n_spoof"),
                       m.get("n_bonafide")) for f, m in loso["families"].items()])
    else:
        md += [f"Unseen-family generalisation: {NOT_MEASURED}."]
    paired = det.get("leave_one_family_out_with_phase_cue")
    if isinstance(paired, dict):
        md += ["", f"**Unseen synthesis families, as the detector runs ({paired['detector']})**",
               "", f"{paired.get('protocol') or ''}", ""]
        md += _table(("held-out family", "EER wideband [95 % CI]",
                      "EER μ-law 8 kHz [95 % CI]", "n synthetic", "n genuine"),
                     [(f, *(_pct_ci(m.get(f"eer_pct_{ch}"), m.get(f"eer_ci95_pct_{ch}"))
                            for ch in ("wideband", "mulaw8k")),
                       m.get("n_spoof"), m.get("n_bonafide"))
                      for f, m in paired["families"].items()])
    md += ["", "**Speaker verification (impersonation of enrolled voices)**", ""]
    spk = det["speaker_verification"]
    if isinstance(spk, list) and spk:
        md += _table(("channel", "speech", "test", "EER [95 % CI]", "n same", "n different"),
                     [(s["condition"], s["speech"], s["test"],
                       f"{s['eer_pct']:.2f} % " + (f"[{s['eer_ci95_pct'][0]:.2f}, "
                                                   f"{s['eer_ci95_pct'][1]:.2f}] %"
                                                   if s["eer_ci95_pct"] else ""),
                       s["n_same"], s["n_different"]) for s in spk])
    else:
        md += [f"Speaker verification: {NOT_MEASURED}."]
    return [*md, ""]


def _family_table(rows: list[dict[str, Any]]) -> list[str]:
    return _table(("model", "channel", "family", "EER [95 % CI]", "FNR [95 % CI]",
                   "n synthetic"),
                  [(f["model"], f["condition"], f["family"],
                    _pct_ci(f["eer_pct"], f["eer_ci95_pct"]),
                    _pct_ci(f["fnr_pct"], f["fnr_ci95_pct"]), f["n_spoof"]) for f in rows])


def write_chart(report: dict[str, Any], path: Path) -> bool:
    """SVG of verdicts per time bucket and state; False when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    buckets = report["timeline"]["buckets"]
    states = sorted({s for b in buckets for s in b["counts"]})
    x = [parse_ts(b["start"]) for b in buckets]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bottom = [0] * len(buckets)
    width = (report["timeline"]["bucket_seconds"] or 60) / 86400 * 0.9
    for state in states:
        counts = [b["counts"].get(state, 0) for b in buckets]
        ax.bar(x, counts, width=width, bottom=bottom, label=state, align="edge")  # type: ignore[arg-type]
        bottom = [a + b for a, b in zip(bottom, counts, strict=True)]
    ax.set_ylabel(f"verdicts per {report['timeline']['bucket_seconds'] or '?'} s")
    ax.set_title("Verdicts over time by state")
    if states:
        ax.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, format="svg", metadata={"Date": None})
    plt.close(fig)
    return True


def write_report(report: dict[str, Any], out_dir: Path, *, chart: bool = True,
                 html: bool = False) -> list[Path]:
    """report.json, report.md (and verdicts.svg, report.html) in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    report["charts"] = []
    if not chart:
        report["charts_note"] = "Charts not requested."
    elif not report["timeline"]["buckets"]:
        report["charts_note"] = "No verdicts in the period, so no chart."
    elif write_chart(report, out_dir / "verdicts.svg"):
        report["charts"] = ["verdicts.svg"]
        written.append(out_dir / "verdicts.svg")
    else:
        report["charts_note"] = "Chart skipped: matplotlib is not installed."
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    markdown = render_markdown(report)
    (out_dir / "report.md").write_text(markdown)
    written += [out_dir / "report.json", out_dir / "report.md"]
    if html:
        (out_dir / "report.html").write_text(render_html(markdown))
        written.append(out_dir / "report.html")
    return written


def render_html(markdown: str) -> str:
    """Self-contained HTML of the Markdown report (headings, tables, paragraphs)."""
    import html as _html
    import re

    def inline(text: str) -> str:
        text = _html.escape(text)
        text = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', text)
        text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", text)

    body: list[str] = []
    table: list[list[str]] = []

    def close_table() -> None:
        if table:
            head, *rows = table
            body.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in head)
                        + "</tr>" + "".join("<tr>" + "".join(f"<td>{inline(c)}</td>"
                                                             for c in r) + "</tr>"
                                            for r in rows) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            if not set(line) <= set("|-"):
                table.append([c.strip() for c in line.strip("|").split("|")])
            continue
        close_table()
        if line.startswith("## "):
            body.append(f"<h2>{inline(line[3:])}</h2>")
        elif line.startswith("# "):
            body.append(f"<h1>{inline(line[2:])}</h1>")
        elif line.strip():
            body.append(f"<p>{inline(line)}</p>")
    close_table()
    style = ("body{font-family:sans-serif;max-width:70em;margin:2em auto}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em}")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>StreamGuard "
            f"transparency report</title><style>{style}</style></head><body>"
            + "\n".join(body) + "</body></html>\n")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``7d``, ``24h``, ``30m``, or an ISO date/datetime (UTC if no zone)."""
    from datetime import timedelta

    now = now or datetime.now(UTC)
    units = {"d": 86400, "h": 3600, "m": 60, "s": 1, "w": 7 * 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - timedelta(seconds=float(text[:-1]) * units[text[-1]])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"--since: expected 7d/24h/30m or an ISO date, got {text!r}") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)
