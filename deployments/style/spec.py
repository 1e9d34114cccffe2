"""The ``style`` family's ops, each declared once (torch-free: the ingress imports it).

The ``collage.families`` entry point ``style`` names this module; see ``schemas.ops.FamilySpec``.
"""

from __future__ import annotations

from typing import Any, Hashable

from schemas import style
from schemas.ops import FamilySpec, MetadataEdit, ModelAttachment, OpSpec


def project_group(task: Any, params: style.ProjectParams) -> Hashable:
    # one optimisation loop needs one image size, step count, rate and latent space
    return task.images["image"].shape, params.steps, params.learning_rate, params.latent_space


def catalog_group(task: Any, params: style.CatalogParams) -> Hashable:
    return id(task)  # each build is its own job


def one_catalog_group(task: Any, params: Any) -> Hashable:
    return task.inputs["catalog"]  # one catalog per batch


def one_batch(task: Any, params: Any) -> Hashable:
    return ()  # every sample request of a model maps to one W+ batch of the same output shape


FAMILY = FamilySpec(
    "style",
    "deployments.style.deployment:StyleDeployment",
    [
        OpSpec(
            name="sample",
            description="Generate an image from a seed or a z/w latent, with truncation psi.",
            params_model=style.SampleParams,
            inputs_model=style.SampleInputs,
            prepare=style.prepare_sample,
            handler="run_sample",
            group_key=one_batch,
            bucketed=True,
        ),
        OpSpec(
            name="project",
            description="Find the W/W+ latent whose image matches an uploaded image; returns the fit and extras.w.",
            params_model=style.ProjectParams,
            inputs_model=style.ProjectInputs,
            prepare=style.prepare_project,
            image_inputs={"image": "RGB"},
            fit_images=style.fit_project_images,
            latent_keys=("w",),
            handler="run_project",
            group_key=project_group,
        ),
        OpSpec(
            name="catalog",
            description="Find the model's parts: spherical k-means of layer activations over generated samples, "
            "contribution matrices per layer; stores the catalog next to the model and returns part maps of samples.",
            params_model=style.CatalogParams,
            inputs_model=style.CatalogInputs,
            prepare=style.prepare_catalog,
            handler="run_catalog",
            group_key=catalog_group,
            required_scope="admin",
            scope_reason="the catalog op (it replaces the model's part catalog for every client)",
            invalidates=("model",),  # the manifest carries the catalog's metadata: the next request sees the new one
        ),
        OpSpec(
            name="part_map",
            description="Colour-coded per-pixel part (cluster) map of an image of the model; extras give the colours.",
            params_model=style.PartMapParams,
            inputs_model=style.PartMapInputs,
            prepare=style.prepare_part_map,
            latent_inputs=("target",),
            handler="run_part_map",
            group_key=one_catalog_group,
            bucketed=True,
        ),
        OpSpec(
            name="local_transfer",
            description="Editing in Style: give the target the reference's style in one part (catalog labels or a mask), "
            "by conditioned interpolation of the style coefficients of the channels that draw it.",
            params_model=style.LocalTransferParams,
            inputs_model=style.LocalTransferInputs,
            prepare=style.prepare_local_transfer,
            image_inputs={"mask": "L"},
            fit_images=style.fit_mask_images,
            latent_inputs=("target", "reference"),
            handler="run_local_transfer",
            group_key=one_catalog_group,
            bucketed=True,
        ),
    ],
    attachments=[
        ModelAttachment(
            name=style.CATALOG,
            title="part catalog",
            info=style.CatalogInfo,
            how_to_build="build one with the 'catalog' op or `collage catalog build`",
            description="part catalog (style models that have one): what local_transfer can name",
            edits=(
                MetadataEdit(
                    name="labels",
                    body=style.CatalogLabels,
                    apply=style.apply_labels,
                    summary='Name clusters of a model\'s part catalog (e.g. {"labels": {"3": "eyes"}}); admin scope',
                ),
            ),
        )
    ],
)
__getattr__ = FAMILY.module_getattr
