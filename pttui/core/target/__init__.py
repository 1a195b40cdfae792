"""What a checkpoint is compared with: models built on the meta device, reference checkpoints, factories."""

from pttui.core.base.face import face

__getattr__, __dir__ = face(__name__, {
    "factory_scan": ("factory_keywords", "file_factories",),
    "model_args": ("parse_model_args",),
    "targets": ("SPEC_FORMS", "load_target", "special_file",),
    "torchvision_catalog": ("torchvision_keywords", "torchvision_models",),
})
