"""Declared AI agents: disclosure by metadata, backed by the tenant's consent record.

A contact center that runs its own voice bot (or lets a vendor's bot call on
its behalf) declares it: the call's metadata names the agent (``ai_agent``),
and the tenant has registered that agent with a reference to the consent or
contract that allows it. Such a stream is ``disclosed_synthetic`` from its
first verdict: labelled, never held. A declaration that matches no
registered agent is reported and not trusted, since anyone can write
metadata.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Session metadata key naming the declared agent.
AGENT_KEY = "ai_agent"


@dataclass(frozen=True, slots=True)
class DeclaredAgent:
    tenant: str
    agent_id: str
    consent_ref: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "declaration", "tenant": self.tenant, "agent_id": self.agent_id,
                "consent_ref": self.consent_ref}


def find_declared(agents: tuple[DeclaredAgent, ...], tenant: str,
                  meta: Mapping[str, Any]) -> tuple[str | None, DeclaredAgent | None]:
    """The agent id the metadata declares, and the tenant's matching registration."""
    claimed = meta.get(AGENT_KEY)
    if not claimed:
        return None, None
    agent_id = str(claimed)
    match = next((a for a in agents if a.tenant == tenant and a.agent_id == agent_id), None)
    return agent_id, match
