"""The speaker: per-node election of VIP owners and the node's desired data-plane state."""
