"""Segmentation backbones.

Each ``forward(x)`` returns ``(logits, features)`` where ``features`` maps the names in ``tap_names`` to
intermediate tensors (for consistency and adversarial losses); ``deepest_tap`` names the most abstract one
(the default discriminator input)."""
