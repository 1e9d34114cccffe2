"""The op table: for each family, the ops it serves and their parameter and input contracts.

The ingress validates every edit against this table before anything reaches a generator, and
``GET /v1/models`` publishes it. Families register their ops here (pure pydantic, no torch), so
the ingress stays light.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from pydantic import BaseModel

from schemas import collage, ingan, inpaint, person, style, warp
from schemas.common import Limits


@dataclasses.dataclass(frozen=True)
class OpSpec:
    name: str
    description: str
    params_model: type[BaseModel]
    inputs_model: type[BaseModel]
    # (inputs, params, manifest, draw_seed, limits) -> canonical inputs dict; raises ValueError on a bad
    # shape or a request above the service's limits (schemas.common.Limits, which the caller passes)
    prepare: Callable[[Any, Any, dict[str, Any], Callable[[], int], Limits], dict[str, Any]]
    # input fields that hold image asset ids (or lists of them), with the Pillow mode they are decoded to
    image_inputs: dict[str, str] = dataclasses.field(default_factory=dict)
    # (decoded images, params, manifest) -> images the family can run as they are; ValueError if not
    fit_images: Callable[[dict[str, Any], Any, dict[str, Any]], dict[str, Any]] | None = None
    # input fields holding a latent reference (or a list of them) whose {"projection": result_id}
    # the ingress resolves to the fitted latent that the `project` edit stored; "" = the inputs themselves
    latent_inputs: tuple[str, ...] = ()

    def info(self, manifest: dict[str, Any] | None = None) -> dict[str, Any]:
        """The op's published contract, with the defaults of ``manifest``'s model where it has its own."""
        params_schema = self.params_model.model_json_schema()
        for name, value in self.model_defaults(manifest).items():
            params_schema["properties"][name]["default"] = value
        return {
            "name": self.name,
            "description": self.description,
            "params_schema": params_schema,
            "inputs_schema": self.inputs_model.model_json_schema(),
        }

    def model_defaults(self, manifest: dict[str, Any] | None) -> dict[str, Any]:
        """The model's own defaults for this op (its manifest's ``param_defaults``), if any."""
        return ((manifest or {}).get("param_defaults") or {}).get(self.name, {})

    def params_with_defaults(self, params: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
        """A request's params over the model's own defaults for this op."""
        return {**self.model_defaults(manifest), **params}


OPS: dict[str, dict[str, OpSpec]] = {
    "style": {
        "sample": OpSpec(
            name="sample",
            description="Generate an image from a seed or a z/w latent, with truncation psi.",
            params_model=style.SampleParams,
            inputs_model=style.SampleInputs,
            prepare=style.prepare_sample,
        ),
        "project": OpSpec(
            name="project",
            description="Find the W/W+ latent whose image matches an uploaded image; returns the fit and extras.w.",
            params_model=style.ProjectParams,
            inputs_model=style.ProjectInputs,
            prepare=style.prepare_project,
            image_inputs={"image": "RGB"},
            fit_images=style.fit_project_images,
        ),
        "catalog": OpSpec(
            name="catalog",
            description="Find the model's parts: spherical k-means of layer activations over generated samples, "
            "contribution matrices per layer; stores the catalog next to the model and returns part maps of samples.",
            params_model=style.CatalogParams,
            inputs_model=style.CatalogInputs,
            prepare=style.prepare_catalog,
        ),
        "part_map": OpSpec(
            name="part_map",
            description="Colour-coded per-pixel part (cluster) map of an image of the model; extras give the colours.",
            params_model=style.PartMapParams,
            inputs_model=style.PartMapInputs,
            prepare=style.prepare_part_map,
            latent_inputs=("target",),
        ),
        "local_transfer": OpSpec(
            name="local_transfer",
            description="Editing in Style: give the target the reference's style in one part (catalog labels or a mask), "
            "by conditioned interpolation of the style coefficients of the channels that draw it.",
            params_model=style.LocalTransferParams,
            inputs_model=style.LocalTransferInputs,
            prepare=style.prepare_local_transfer,
            image_inputs={"mask": "L"},
            fit_images=style.fit_mask_images,
            latent_inputs=("target", "reference"),
        ),
    },
    "collage": {
        "sample": OpSpec(
            name="sample",
            description="Generate an image of a class (id, name or soft class vector) from a seed or z, with truncation.",
            params_model=collage.SampleParams,
            inputs_model=collage.SampleInputs,
            prepare=collage.prepare_sample,
            latent_inputs=("",),
        ),
        "label_collage": OpSpec(
            name="label_collage",
            description="Neural Collage sCBN: regions (masks) of the base image take other classes; the conditional batch "
            "norms of the chosen blocks mix the classes per pixel (early blocks: shape, late blocks: texture).",
            params_model=collage.LabelCollageParams,
            inputs_model=collage.LabelCollageInputs,
            prepare=collage.prepare_label_collage,
            image_inputs={"masks": "L"},
            fit_images=collage.fit_masks,
            latent_inputs=("base",),
        ),
        "feature_collage": OpSpec(
            name="feature_collage",
            description="Neural Collage feature blending: paste references' intermediate features into the base under "
            "masks, at chosen blocks, optionally shifted: F = (1 - M) F_base + M shift(F_ref).",
            params_model=collage.FeatureCollageParams,
            inputs_model=collage.FeatureCollageInputs,
            prepare=collage.prepare_feature_collage,
            image_inputs={"masks": "L"},
            fit_images=collage.fit_masks,
            latent_inputs=("base", "references"),
        ),
        "project": OpSpec(
            name="project",
            description="Manifold projection: find z (and the class, among candidates) whose image matches an uploaded "
            "image, so the collage ops can edit real photos; returns the fit and extras.z / extras.class.",
            params_model=collage.ProjectParams,
            inputs_model=collage.ProjectInputs,
            prepare=collage.prepare_project,
            image_inputs={"image": "RGB"},
            fit_images=collage.fit_project_images,
        ),
    },
    "inpaint": {
        "inpaint": OpSpec(
            name="inpaint",
            description="EdgeConnect: complete the edges inside the hole (mask white = hole), then the image along them; "
            "optional user-drawn edges steer the structure; returns the image and extras.edges_asset_id (the edge map).",
            params_model=inpaint.InpaintParams,
            inputs_model=inpaint.InpaintInputs,
            prepare=inpaint.prepare_inpaint,
            image_inputs={"image": "RGB", "mask": "L", "edges": "L"},
            fit_images=inpaint.fit_inpaint_images,
        ),
    },
    "warp": {
        "pose_transfer": OpSpec(
            name="pose_transfer",
            description="Soft-Gated Warping-GAN: the person of the image (with its keypoints and LIP parsing) in the target "
            "pose; returns the image and extras.parsing_asset_id (the predicted target parsing, colour-coded).",
            params_model=warp.PoseTransferParams,
            inputs_model=warp.PoseTransferInputs,
            prepare=warp.prepare_pose_transfer,
            image_inputs={"image": "RGB", "parsing": "L"},
            fit_images=warp.fit_pose_transfer_images,
        ),
    },
    "ingan": {
        "retarget": OpSpec(
            name="retarget",
            description="InGAN: the model's image at other sizes and aspects (sides snapped to the model's size_multiple) or "
            "warped by a top-corner homography, one forward pass each; several outputs form a strip. Models come from "
            "fit jobs (POST /v1/jobs with {\"fit\": {...}}).",
            params_model=ingan.RetargetParams,
            inputs_model=ingan.RetargetInputs,
            prepare=ingan.prepare_retarget,
        ),
    },
    "person": {
        "recompose": OpSpec(
            name="recompose",
            description="Disentangled person generation: the person (foreground) of one image in front of the background of "
            "another, in the pose of given keypoints, of an example image or of the foreground image.",
            params_model=person.RecomposeParams,
            inputs_model=person.RecomposeInputs,
            prepare=person.prepare_recompose,
            image_inputs={"foreground": "RGB", "background": "RGB"},
            fit_images=person.fit_person_images,
        ),
        "sample": OpSpec(
            name="sample",
            description="Keep some factors (foreground, background, pose) of an image and sample the others from noise by the "
            "Stage II mappings (seeded); extras.keypoints gives the pose drawn.",
            params_model=person.SampleParams,
            inputs_model=person.SampleInputs,
            prepare=person.prepare_sample,
            image_inputs={"image": "RGB"},
            fit_images=person.fit_person_images,
        ),
        "interpolate": OpSpec(
            name="interpolate",
            description="N images from one image to another in one factor's embedding space (the other factors of the first), "
            "side by side as one strip; extras give each image's x offset and pose.",
            params_model=person.InterpolateParams,
            inputs_model=person.InterpolateInputs,
            prepare=person.prepare_interpolate,
            image_inputs={"start": "RGB", "end": "RGB"},
            fit_images=person.fit_person_images,
        ),
    },
}


def get_op(family: str, op: str) -> OpSpec | None:
    return OPS.get(family, {}).get(op)
