"""textsynth: labeled synthetic text datasets from a local language model."""
