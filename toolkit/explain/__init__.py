"""`tk explain`: the explainer and its probes (feature maps, Grad-CAM, activation maximization)."""
