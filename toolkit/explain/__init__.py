"""`tk explain maps|filters|gradcam`: feature maps, activation maximization, Grad-CAM.

A tk model is `image 0..255 -> Preprocess -> backbone (nested Model) -> head (nested Model)`;
explainer.py takes it apart once and each probe module (feature_maps, maximize, gradcam) draws
from it. Outputs go to RUN/explain/, written atomically, named by what they show
(featuremaps_<image>_<layer>.png, gradcam_<image>_<class>.png, filters_<layer>.png).
"""
