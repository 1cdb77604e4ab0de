"""Published policy: which verdicts lead to which actions.

Rules are data, so a tenant's policy can be shown, versioned and audited (the
Partnership on AI practice of publishing the policy that drives actions).
Actions are protocol-neutral; each adapter maps them onto its wire format
(play audio, stop forwarding, post a webhook …).

Default policy, in words: warn the agent when a call becomes ``suspect``;
hold it when it is ``synthetic`` and even the low end of the uncertainty
interval is high; release the hold when the call falls back to ``clear``;
label, never hold, ``disclosed_synthetic`` speech. When a call claims an
identity: ask for another factor (``step_up``) on a voice that is not the
claimed person's, and warn and step up on a matching but synthetic voice.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streamguard.events import (
    Action,
    ActionKind,
    CampaignEvent,
    IdentityCheck,
    State,
    Verdict,
    WatchlistMatch,
)


@dataclass(frozen=True, slots=True)
class Rule:
    """Fire ``actions`` when a verdict is in ``state`` with enough confidence.

    ``min_interval_low`` asks that the whole uncertainty interval clear a bar,
    which is what "high confidence" means here. ``cooldown_s`` (media time)
    keeps a rule from repeating itself every window.
    """

    name: str
    state: State
    actions: tuple[ActionKind, ...]
    min_probability: float = 0.0
    min_interval_low: float = 0.0
    cooldown_s: float = 30.0
    text: str | None = None

    def matches(self, verdict: Verdict) -> bool:
        if verdict.state is not self.state or verdict.probability is None:
            return False
        low = verdict.interval[0] if verdict.interval else 0.0
        return verdict.probability >= self.min_probability and low >= self.min_interval_low


@dataclass(frozen=True, slots=True)
class IdentityRule:
    """Fire ``actions`` when an identity check turns to ``status`` (e.g. ``voice_mismatch``)."""

    name: str
    status: str
    actions: tuple[ActionKind, ...]
    cooldown_s: float = 60.0
    text: str | None = None


@dataclass(frozen=True, slots=True)
class FleetRule:
    """Fire ``actions`` on a fleet event: ``event`` is ``campaign`` or ``watchlist``.

    ``kinds`` narrows campaign rules to some kinds (``same_voice``,
    ``same_script``, ``replay``); empty means all. Fires at most once per
    campaign (or watchlist entry) per call, and not again within ``cooldown_s``.
    """

    name: str
    event: str
    actions: tuple[ActionKind, ...]
    kinds: tuple[str, ...] = ()
    cooldown_s: float = 60.0
    text: str | None = None

    def __post_init__(self) -> None:
        if self.event not in ("campaign", "watchlist"):
            raise ValueError(f"fleet rule {self.name!r}: event must be campaign or watchlist")


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    version: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    identity_rules: tuple[IdentityRule, ...] = field(default_factory=tuple)
    fleet_rules: tuple[FleetRule, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for rule in self.rules:
            if rule.state is State.DISCLOSED_SYNTHETIC and ActionKind.HOLD in rule.actions:
                raise ValueError(f"rule {rule.name!r}: disclosed synthetic media is never held")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version,
            "rules": [{**asdict(r), "state": r.state.value,
                       "actions": [a.value for a in r.actions]} for r in self.rules],
            "identity_rules": [{**asdict(r), "actions": [a.value for a in r.actions]}
                               for r in self.identity_rules],
            "fleet_rules": [{**asdict(r), "actions": [a.value for a in r.actions],
                             "kinds": list(r.kinds)} for r in self.fleet_rules],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Policy:
        try:
            rules = tuple(
                Rule(name=str(r["name"]), state=State(r["state"]),
                     actions=tuple(ActionKind(a) for a in r["actions"]),
                     min_probability=float(r.get("min_probability", 0.0)),
                     min_interval_low=float(r.get("min_interval_low", 0.0)),
                     cooldown_s=float(r.get("cooldown_s", 30.0)), text=r.get("text"))
                for r in data["rules"]
            )
            identity_rules = tuple(
                IdentityRule(name=str(r["name"]), status=str(r["status"]),
                             actions=tuple(ActionKind(a) for a in r["actions"]),
                             cooldown_s=float(r.get("cooldown_s", 60.0)), text=r.get("text"))
                for r in data.get("identity_rules", ())
            )
            fleet_rules = tuple(
                FleetRule(name=str(r["name"]), event=str(r["event"]),
                          actions=tuple(ActionKind(a) for a in r["actions"]),
                          kinds=tuple(str(k) for k in r.get("kinds", ())),
                          cooldown_s=float(r.get("cooldown_s", 60.0)), text=r.get("text"))
                for r in data.get("fleet_rules", ())
            )
            return cls(str(data["name"]), str(data["version"]), rules, identity_rules,
                       fleet_rules)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid policy: {exc}") from exc


DEFAULT_POLICY = Policy(
    name="default",
    version="1",
    rules=(
        Rule("warn-on-suspect", State.SUSPECT, (ActionKind.WARN,), min_probability=0.5,
             text="Caution: this caller's voice may be synthetic. Verify identity."),
        Rule("hold-on-synthetic", State.SYNTHETIC, (ActionKind.WARN, ActionKind.HOLD),
             min_probability=0.85, min_interval_low=0.75,
             text="This caller's voice appears to be synthetic. The call is on hold."),
        Rule("label-disclosed", State.DISCLOSED_SYNTHETIC, (ActionKind.LABEL,),
             text="This caller is a disclosed AI voice."),
    ),
    identity_rules=(
        IdentityRule("step-up-on-voice-mismatch", "voice_mismatch", (ActionKind.STEP_UP,),
                     text="The voice does not match the claimed customer's voiceprint. "
                          "Ask for another factor."),
        IdentityRule("warn-on-cloned-voice", "cloned_voice",
                     (ActionKind.WARN, ActionKind.STEP_UP),
                     text="The voice matches the claimed customer but appears synthetic: "
                          "a possible voice clone. Ask for another factor."),
    ),
    fleet_rules=(
        FleetRule("notify-on-campaign", "campaign", (ActionKind.NOTIFY, ActionKind.WARN),
                  text="This call is one of several with the same voice or recording: "
                       "a possible fraud campaign."),
        FleetRule("step-up-on-watchlist", "watchlist", (ActionKind.WARN, ActionKind.STEP_UP),
                  text="The caller's voice matches a known fraud voice on the watchlist. "
                       "Ask for another factor."),
    ),
)


class PolicyEngine:
    """Applies a policy to one stream's verdicts; remembers holds and cooldowns.

    A stream judged by several detectors (voice and face) stays on hold until
    every detector that asked for the hold has come back clear.
    """

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self._held_by: set[str] = set()
        self._last_fired: dict[str, float] = {}
        self._fired_for: set[str] = set()

    @property
    def on_hold(self) -> bool:
        return bool(self._held_by)

    def evaluate(self, verdict: Verdict) -> list[Action]:
        if verdict.final:
            return []
        actions: list[Action] = []
        for rule in self.policy.rules:
            if not rule.matches(verdict):
                continue
            last = self._last_fired.get(rule.name)
            if last is not None and verdict.end - last < rule.cooldown_s:
                continue
            self._last_fired[rule.name] = verdict.end
            for kind in rule.actions:
                if kind is ActionKind.HOLD:
                    already = self.on_hold
                    self._held_by.add(verdict.detector)
                    if already:
                        continue
                actions.append(self._action(kind, rule.name, verdict, rule.text))
        if (verdict.detector in self._held_by
                and verdict.state in (State.CLEAR, State.DISCLOSED_SYNTHETIC)):
            self._held_by.discard(verdict.detector)
            if not self._held_by:
                actions.append(self._action(ActionKind.RELEASE, "release-when-clear", verdict,
                                            None))
        return actions

    def evaluate_identity(self, check: IdentityCheck, state: State,
                          probability: float | None,
                          interval: tuple[float, float] | None) -> list[Action]:
        """Actions for an identity check that just changed status."""
        if check.final or check.status == check.previous_status:
            return []
        actions: list[Action] = []
        for rule in self.policy.identity_rules:
            if rule.status != check.status:
                continue
            last = self._last_fired.get(rule.name)
            if last is not None and check.at - last < rule.cooldown_s:
                continue
            self._last_fired[rule.name] = check.at
            similarity = check.similarity["value"] if check.similarity else None
            reason = f"identity {check.status} for {check.claimed_id!r}" + (
                f", similarity {similarity:.2f}" if similarity is not None else "")
            for kind in rule.actions:
                actions.append(Action(
                    kind=kind, stream_id=check.stream_id, tenant=check.tenant, rule=rule.name,
                    reason=reason, state=state, probability=probability, interval=interval,
                    at=check.at, policy_version=f"{self.policy.name}@{self.policy.version}",
                    text=rule.text))
        return actions

    def evaluate_fleet(self, event: CampaignEvent | WatchlistMatch, state: State,
                       probability: float | None,
                       interval: tuple[float, float] | None) -> list[Action]:
        """Actions for a campaign or watchlist event delivered to this stream."""
        if isinstance(event, CampaignEvent):
            name, key = "campaign", event.campaign_id
            reason = (f"campaign {event.campaign_id} ({event.kind}, "
                      f"{len(event.calls)} calls)")
        else:
            name, key = "watchlist", event.entry_id
            reason = (f"watchlist entry {event.entry_id!r} ({event.label}), similarity "
                      f"{float(event.similarity['value']):.2f}")
        actions: list[Action] = []
        for rule in self.policy.fleet_rules:
            if rule.event != name or (isinstance(event, CampaignEvent) and rule.kinds
                                      and event.kind not in rule.kinds):
                continue
            once = f"{rule.name}/{key}"
            last = self._last_fired.get(rule.name)
            if once in self._fired_for or (last is not None and event.at - last
                                           < rule.cooldown_s):
                continue
            self._fired_for.add(once)
            self._last_fired[rule.name] = event.at
            for kind in rule.actions:
                if kind is ActionKind.HOLD and (self.on_hold
                                                or state is State.DISCLOSED_SYNTHETIC):
                    continue  # disclosed synthetic speech is never held
                if kind is ActionKind.HOLD:
                    self._held_by.add(name)  # released by an operator, not by a verdict
                actions.append(Action(
                    kind=kind, stream_id=event.stream_id or "", tenant=event.tenant,
                    rule=rule.name, reason=reason, state=state, probability=probability,
                    interval=interval, at=event.at,
                    policy_version=f"{self.policy.name}@{self.policy.version}", text=rule.text))
        return actions

    def _action(self, kind: ActionKind, rule: str, verdict: Verdict, text: str | None) -> Action:
        reason = (f"state {verdict.state.value}, P(synthetic)={verdict.probability:.2f}"
                  if verdict.probability is not None else f"state {verdict.state.value}")
        return Action(kind=kind, stream_id=verdict.stream_id, tenant=verdict.tenant, rule=rule,
                      reason=reason, state=verdict.state, probability=verdict.probability,
                      interval=verdict.interval, at=verdict.end,
                      policy_version=f"{self.policy.name}@{self.policy.version}", text=text)
