"""The ``person`` family's ops, each declared once (torch-free: the ingress imports it).

The ``collage.families`` entry point ``person`` names this module; see ``schemas.ops.FamilySpec``.
Every request of one model shares the model's fixed image size, so a group of ``recompose`` or
``sample`` tasks is one tensor batch; an ``interpolate`` task is a batch of its own steps.
"""

from __future__ import annotations

from typing import Any, Hashable

from schemas import person
from schemas.ops import FamilySpec, OpSpec


def kept_factors(task: Any, params: Any) -> Hashable:
    return tuple(task.inputs.get("keep", ()))  # one image size per model; sample batches share the kept factors


FAMILY = FamilySpec(
    "person",
    "deployments.person.deployment:PersonDeployment",
    [
        OpSpec(
            name="recompose",
            description="Disentangled person generation: the person (foreground) of one image in front of the background of "
            "another, in the pose of given keypoints, of an example image or of the foreground image.",
            params_model=person.RecomposeParams,
            inputs_model=person.RecomposeInputs,
            prepare=person.prepare_recompose,
            image_inputs={"foreground": "RGB", "background": "RGB"},
            fit_images=person.fit_recompose_images,
            handler="run_recompose",
            group_key=kept_factors,
        ),
        OpSpec(
            name="sample",
            description="Keep some factors (foreground, background, pose) of an image and sample the others from noise by the "
            "Stage II mappings (seeded); extras.keypoints gives the pose drawn.",
            params_model=person.SampleParams,
            inputs_model=person.SampleInputs,
            prepare=person.prepare_sample,
            image_inputs={"image": "RGB"},
            fit_images=person.fit_person_images,
            handler="run_sample",
            group_key=kept_factors,
        ),
        OpSpec(
            name="interpolate",
            description="N images from one image to another in one factor's embedding space (the other factors of the first), "
            "side by side as one strip; extras give each image's x offset and pose.",
            params_model=person.InterpolateParams,
            inputs_model=person.InterpolateInputs,
            prepare=person.prepare_interpolate,
            image_inputs={"start": "RGB", "end": "RGB"},
            fit_images=person.fit_person_images,
            handler="run_interpolate",
            group_key=kept_factors,
        ),
    ],
)
__getattr__ = FAMILY.module_getattr
