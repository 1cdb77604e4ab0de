"""Published policy: which verdicts lead to which actions.

Rules are data, so a tenant's policy can be shown, versioned and audited (the
Partnership on AI practice of publishing the policy that drives actions).
Actions are protocol-neutral; each adapter maps them onto its wire format
(play audio, stop forwarding, post a webhook …).

Default policy, in words: warn the agent when a call becomes ``suspect``;
hold it when it is ``synthetic`` and even the low end of the uncertainty
interval is high; release the hold when the call falls back to ``clear``;
label, never hold, ``disclosed_synthetic`` speech.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from streamguard.events import Action, ActionKind, State, Verdict


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
class Policy:
    name: str
    version: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for rule in self.rules:
            if rule.state is State.DISCLOSED_SYNTHETIC and ActionKind.HOLD in rule.actions:
                raise ValueError(f"rule {rule.name!r}: disclosed synthetic media is never held")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version,
            "rules": [{**asdict(r), "state": r.state.value,
                       "actions": [a.value for a in r.actions]} for r in self.rules],
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
            return cls(str(data["name"]), str(data["version"]), rules)
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
)


class PolicyEngine:
    """Applies a policy to one stream's verdicts; remembers holds and cooldowns."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.on_hold = False
        self._last_fired: dict[str, float] = {}

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
                if kind is ActionKind.HOLD and self.on_hold:
                    continue
                if kind is ActionKind.HOLD:
                    self.on_hold = True
                actions.append(self._action(kind, rule.name, verdict, rule.text))
        if self.on_hold and verdict.state in (State.CLEAR, State.DISCLOSED_SYNTHETIC):
            self.on_hold = False
            actions.append(self._action(ActionKind.RELEASE, "release-when-clear", verdict, None))
        return actions

    def _action(self, kind: ActionKind, rule: str, verdict: Verdict, text: str | None) -> Action:
        reason = (f"state {verdict.state.value}, P(synthetic)={verdict.probability:.2f}"
                  if verdict.probability is not None else f"state {verdict.state.value}")
        return Action(kind=kind, stream_id=verdict.stream_id, tenant=verdict.tenant, rule=rule,
                      reason=reason, state=verdict.state, probability=verdict.probability,
                      interval=verdict.interval, at=verdict.end,
                      policy_version=f"{self.policy.name}@{self.policy.version}", text=text)
