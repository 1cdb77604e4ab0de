"""WebRTC edge (aiortc): WHIP ingest for sidecar analysis, WHEP inline relay."""
