"""Crystal property models: backbones (PRDNet, CGCNN, SchNet, MEGNet, ALIGNN, Matformer,
iComFormer; one file each), the diffraction plug-in and the registry.

``build_model(spec, task_kind)`` is the entry point; see :mod:`prdnet.models.registry`.
"""

from prdnet.models.registry import build_model, count_parameters, load_presets

__all__ = ["build_model", "count_parameters", "load_presets"]
