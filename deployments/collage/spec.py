"""The ``collage`` family's ops, each declared once (torch-free: the ingress imports it).

The ``collage.families`` entry point ``collage`` names this module; see ``schemas.ops.FamilySpec``.
Every op of a (model, truncation) group runs as one tensor batch: BigGAN's batch-norm statistics
depend on the truncation, so one forward pass takes one value.
"""

from __future__ import annotations

from typing import Any, Hashable

from schemas import collage
from schemas.ops import FamilySpec, OpSpec


def one_truncation(task: Any, params: Any) -> Hashable:
    return (params.truncation,)


def project_group(task: Any, params: collage.ProjectParams) -> Hashable:
    # one optimisation loop: one step count, rate and search schedule (and one truncation)
    return params.steps, params.learning_rate, params.search_fraction, params.truncation


FAMILY = FamilySpec(
    "collage",
    "deployments.collage.deployment:CollageDeployment",
    [
        OpSpec(
            name="sample",
            description="Generate an image of a class (id, name or soft class vector) from a seed or z, with truncation.",
            params_model=collage.SampleParams,
            inputs_model=collage.SampleInputs,
            prepare=collage.prepare_sample,
            latent_inputs=("",),
            handler="run_sample",
            group_key=one_truncation,
            bucketed=True,
        ),
        OpSpec(
            name="label_collage",
            description="Neural Collage sCBN: regions (masks) of the base image take other classes; the conditional batch "
            "norms of the chosen blocks mix the classes per pixel (early blocks: shape, late blocks: texture).",
            params_model=collage.LabelCollageParams,
            inputs_model=collage.LabelCollageInputs,
            prepare=collage.prepare_label_collage,
            image_inputs={"masks": "L"},
            fit_images=collage.fit_masks,
            latent_inputs=("base",),
            handler="run_label_collage",
            group_key=one_truncation,
            bucketed=True,
        ),
        OpSpec(
            name="feature_collage",
            description="Neural Collage feature blending: paste references' intermediate features into the base under "
            "masks, at chosen blocks, optionally shifted: F = (1 - M) F_base + M shift(F_ref).",
            params_model=collage.FeatureCollageParams,
            inputs_model=collage.FeatureCollageInputs,
            prepare=collage.prepare_feature_collage,
            image_inputs={"masks": "L"},
            fit_images=collage.fit_masks,
            latent_inputs=("base", "references"),
            handler="run_feature_collage",
            group_key=one_truncation,
            bucketed=True,
        ),
        OpSpec(
            name="project",
            description="Manifold projection: find z (and the class, among candidates) whose image matches an uploaded "
            "image, so the collage ops can edit real photos; returns the fit and extras.z / extras.class.",
            params_model=collage.ProjectParams,
            inputs_model=collage.ProjectInputs,
            prepare=collage.prepare_project,
            image_inputs={"image": "RGB"},
            fit_images=collage.fit_project_images,
            latent_keys=("z", "class"),
            handler="run_project",
            group_key=project_group,
        ),
    ],
)
__getattr__ = FAMILY.module_getattr
