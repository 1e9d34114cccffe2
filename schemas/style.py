"""Op contracts of the ``style`` family (StyleGAN2)."""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas.common import LatentValue, Limits, Seed, Sha256Hex, StrictModel
from schemas.ops import FittedImages
from schemas.photo_fit import CROP_BOX_DESCRIPTION, FIT_DESCRIPTION, FIT_MODES, CropBox, FitMode, plan_fit

# Defaults of the sequential query (deployments/style/editing.py). The official code
# (IVRL/GANLocalEditing, StyleInterpolator) takes rho and epsilon without defaults; these are ours:
# rho 0.1 keeps channels with at least 10% of their energy inside the part; epsilon 10 lets about
# 10-20 channels per layer through.
SEQUENTIAL_RHO = 0.1
SEQUENTIAL_EPSILON = 10.0


class SampleParams(StrictModel):
    truncation: float = Field(default=1.0, ge=0.0, le=2.0, description="psi: 1 = no truncation, 0 = the mean image")


class SampleInputs(StrictModel):
    seed: Seed | None = Field(default=None, description="seed of z ~ N(0, I); drawn by the server when nothing is given")
    z: list[LatentValue] | None = Field(default=None, description="latent z, length style_dim")
    w: list[LatentValue] | None = Field(default=None, description="latent w, length style_dim (or n_latent*style_dim for W+)")

    @model_validator(mode="after")
    def _at_most_one(self) -> "SampleInputs":
        given = [name for name in ("seed", "z", "w") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give at most one of seed, z, w (got {', '.join(given)})")
        return self


def prepare_sample(inputs: SampleInputs, params: SampleParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    """Canonical inputs of `sample`: a seed is drawn when nothing is given; latent lengths are checked."""
    style_dim = int(manifest["arch"]["style_dim"])
    n_latent = int(manifest.get("n_latent") or 0)
    if inputs.z is not None:
        if len(inputs.z) != style_dim:
            raise ValueError(f"inputs.z must have {style_dim} numbers for this model, got {len(inputs.z)}")
        return {"z": [float(v) for v in inputs.z]}
    if inputs.w is not None:
        allowed = {style_dim, n_latent * style_dim} - {0}
        if len(inputs.w) not in allowed:
            raise ValueError(f"inputs.w must have {style_dim} numbers (or {n_latent}x{style_dim} for W+), got {len(inputs.w)}")
        return {"w": [float(v) for v in inputs.w]}
    return {"seed": inputs.seed if inputs.seed is not None else draw_seed()}


class ProjectParams(StrictModel):
    steps: int = Field(default=100, ge=1, le=1000, description="optimisation steps (more: closer fit, slower)")
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0, description="Adam step size on the latent")
    latent_space: Literal["w", "w+"] = Field(default="w+", description="one w for all layers, or one per layer")
    resize: bool = Field(
        default=False, description="fit the whole image to the model resolution (params.fit) instead of rejecting other sizes"
    )
    crop_box: CropBox | None = Field(default=None, description=CROP_BOX_DESCRIPTION)
    fit: FitMode = Field(default=FIT_MODES[0], description=FIT_DESCRIPTION)


class ProjectInputs(StrictModel):
    image: Sha256Hex = Field(description="asset id of the RGB photo to project (model resolution, or see crop_box, resize, fit)")


def prepare_project(inputs: ProjectInputs, params: ProjectParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    return {"image": inputs.image}


def fit_project_images(images: dict[str, Any], params: Any, manifest: dict[str, Any]) -> FittedImages:
    """The photo at the model's square size: its ``crop_box`` fitted by ``fit``, or all of it (fitted
    only with ``resize``; else it must be the model's size); ``extras.fit.image`` says what was done
    (schemas/photo_fit.py). Shared by collage's ``project``, whose params have the same fields."""
    resolution = int(manifest["resolution"])
    image = images["image"]
    fit = plan_fit(
        (image.shape[1], image.shape[0]),
        (resolution, resolution),
        params.crop_box,
        params.resize,
        params.fit,
        "inputs.image",
        manifest["name"],
    )
    return FittedImages({**images, "image": fit.apply(image)}, {"fit": {"image": fit.extras()}})


# ---- the part catalog: an attachment of a style model (its metadata in GET /v1/models) ----------
# A cluster's label: the catalog stores the labels, local_transfer names parts by them.
LABEL_PATTERN = r"^[a-z][a-z0-9_\-]{0,31}$"
CATALOG = "catalog"  # the attachment's name: its files catalog.safetensors and catalog.json, its field in GET /v1/models


class CatalogLayer(BaseModel):
    name: str = Field(description="style layer, e.g. 'convs.3'")
    channels: int
    resolution: int = Field(description="output resolution of the layer")
    to_rgb: bool


class CatalogInfo(BaseModel):
    """The part catalog of a style model (``models/<name>/catalog.json``): what local_transfer can name."""

    k: int = Field(description="number of clusters")
    labels: list[str] = Field(description="name of each cluster, by index (several clusters may share one)")
    cluster_layer: str = Field(description="style layer whose input activations were clustered")
    layers: list[CatalogLayer] = Field(description="layers with a contribution matrix")
    n_samples: int | None = None
    seed: int | None = None
    sha256: str = Field(description="sha256 of catalog.safetensors")
    created_at: str | None = None


class CatalogLabels(BaseModel):
    """The body of ``PUT /v1/models/{name}/catalog/labels``."""

    model_config = ConfigDict(extra="forbid")

    labels: dict[int, Annotated[str, Field(pattern=LABEL_PATTERN)]] = Field(
        description='cluster index -> new name, e.g. {"3": "eyes"}', min_length=1
    )


def relabel(labels: list[str], renames: dict[int, str]) -> list[str]:
    """Catalog labels with clusters renamed (index -> name); ValueError for a cluster that does not exist."""
    names = list(labels)
    for index, name in renames.items():
        if not 0 <= index < len(names):
            raise ValueError(f"cluster {index} does not exist; the catalog has clusters 0..{len(names) - 1}")
        names[index] = name
    return names


def apply_labels(meta: dict[str, Any], body: CatalogLabels) -> dict[str, Any]:
    """The catalog metadata with ``body``'s clusters renamed; the tensors and their sha256 stay as they are."""
    return {**meta, "labels": relabel(meta["labels"], body.labels)}


# ---- Editing in Style: latents, catalog, part maps, local transfer ---------------------------------


class LatentRef(StrictModel):
    """One image of the model, named by exactly one of: a seed, a z or w latent, or a projection."""

    seed: Seed | None = Field(default=None, description="seed of z ~ N(0, I)")
    z: list[LatentValue] | None = Field(default=None, description="latent z, length style_dim")
    w: list[LatentValue] | None = Field(default=None, description="latent w, length style_dim or n_latent*style_dim (W+)")
    projection: Sha256Hex | None = Field(default=None, description="result_id of a `project` edit of this model: its fitted latent")

    @model_validator(mode="after")
    def _exactly_one(self) -> "LatentRef":
        given = [name for name in ("seed", "z", "w", "projection") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of seed, z, w, projection (got {', '.join(given) or 'none'})")
        return self


def canonical_latent(ref: LatentRef, manifest: dict[str, Any], field: str) -> dict[str, Any]:
    """The latent as it enters the result hash; a projection stays a reference (resolved by the ingress)."""
    if ref.projection is not None:
        return {"projection": ref.projection}
    if ref.seed is not None:
        return {"seed": ref.seed}
    try:
        return prepare_sample(SampleInputs(z=ref.z, w=ref.w), SampleParams(), manifest, lambda: 0)
    except ValueError as exc:
        raise ValueError(str(exc).replace("inputs.", f"inputs.{field}.")) from None


def _catalog_of(manifest: dict[str, Any]) -> dict[str, Any]:
    catalog = manifest.get("catalog")
    if not catalog:
        raise ValueError(f"model {manifest['name']!r} has no part catalog yet: run the 'catalog' op (or `collage catalog build`) first")
    return catalog


class CatalogParams(StrictModel):
    k: int = Field(default=8, ge=2, le=32, description="number of parts (spherical k-means clusters)")
    n_samples: int = Field(default=200, ge=8, le=1000, description="generated samples whose activations are clustered")
    cluster_layer: str | None = Field(
        default=None, description="style layer whose input is clustered (default: the plain conv at half resolution)"
    )
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="seed of the samples and of the k-means initialisation")
    truncation: float = Field(default=1.0, ge=0.0, le=1.0, description="psi of the samples")
    iterations: int = Field(default=50, ge=1, le=300, description="k-means iterations at most")
    labels: list[str] | None = Field(default=None, description="names of the k clusters in order (default cluster_0 ...)")

    @model_validator(mode="after")
    def _labels_match_k(self) -> "CatalogParams":
        if self.labels is not None:
            if len(self.labels) != self.k:
                raise ValueError(f"labels must name all {self.k} clusters, got {len(self.labels)}")
            bad = [label for label in self.labels if not re.fullmatch(LABEL_PATTERN, label)]
            if bad:
                raise ValueError(f"labels must match {LABEL_PATTERN}, got {bad}")
        return self


class CatalogInputs(StrictModel):
    """The catalog op reads no inputs: the samples come from params.seed."""


def prepare_catalog(inputs: CatalogInputs, params: CatalogParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    layers = style_layer_names(int(manifest["resolution"]))
    if params.cluster_layer is not None and params.cluster_layer not in layers:
        raise ValueError(f"params.cluster_layer {params.cluster_layer!r} is not a style layer; layers are {layers}")
    # The current catalog is part of the request: rebuilding after another catalog replaced it recomputes.
    current = (manifest.get("catalog") or {}).get("sha256")
    return {"current_catalog": current}


class PartMapParams(StrictModel):
    truncation: float = Field(default=1.0, ge=0.0, le=2.0, description="psi for seed/z targets")


class PartMapInputs(StrictModel):
    target: LatentRef = Field(description="the image whose parts are shown")


def prepare_part_map(inputs: PartMapInputs, params: PartMapParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    return {"target": canonical_latent(inputs.target, manifest, "target"), "catalog": _catalog_of(manifest)["sha256"]}


QueryRule = Literal["simple", "sequential", "global"]


class LocalTransferParams(StrictModel):
    parts: list[str] = Field(default_factory=list, description="catalog labels of the part(s) to transfer, e.g. ['eyes']")
    query: QueryRule = Field(
        default="sequential",
        description="channel selection: sequential (greedy, paper), simple (q=min(1, strength*M)), global (q=strength everywhere)",
    )
    strength: float = Field(
        default=1.0,
        ge=0.0,
        le=100.0,
        description="lambda: scales q in the simple rule; the blend weight (<= 1) in global; unused by sequential",
    )
    rho: float = Field(default=SEQUENTIAL_RHO, ge=0.0, le=1.0, description="sequential rule: a channel needs M above rho")
    epsilon: float = Field(
        default=SEQUENTIAL_EPSILON, gt=0.0, le=1000.0, description="sequential rule: budget of the cumulative (1 - M) over chosen channels"
    )
    layers: list[str] | None = Field(default=None, description="style layers to edit (default: all); see the catalog's layer table")
    truncation: float = Field(default=1.0, ge=0.0, le=2.0, description="psi for seed/z latents")

    @model_validator(mode="after")
    def _strength_in_range(self) -> "LocalTransferParams":
        if self.query == "global" and self.strength > 1.0:
            raise ValueError(f"global transfer blends with weight strength in [0, 1], got {self.strength}")
        return self


class LocalTransferInputs(StrictModel):
    target: LatentRef = Field(description="S: the image that is edited")
    reference: LatentRef = Field(description="R: the image the part's style comes from")
    mask: Sha256Hex | None = Field(
        default=None, description="asset id of a mask on S (white = part), model resolution; instead of params.parts"
    )


def prepare_local_transfer(
    inputs: LocalTransferInputs, params: LocalTransferParams, manifest: dict[str, Any], draw_seed, limits: Limits
) -> dict[str, Any]:
    catalog = _catalog_of(manifest)
    canonical: dict[str, Any] = {
        "target": canonical_latent(inputs.target, manifest, "target"),
        "reference": canonical_latent(inputs.reference, manifest, "reference"),
        "catalog": catalog["sha256"],
    }
    layer_names = [layer["name"] for layer in catalog["layers"]]
    unknown_layers = sorted(set(params.layers or []) - set(layer_names))
    if unknown_layers:
        raise ValueError(f"params.layers has unknown layer(s) {unknown_layers}; layers are {layer_names}")
    if params.layers is not None and not params.layers:
        raise ValueError("params.layers is empty: name at least one layer, or leave it out for all")
    if params.query == "global":
        if params.parts or inputs.mask:
            raise ValueError("a global transfer takes no parts and no mask")
        return canonical
    if bool(params.parts) == bool(inputs.mask):
        raise ValueError("name the part to transfer with params.parts (catalog labels) or inputs.mask, exactly one")
    if inputs.mask is not None:
        canonical["mask"] = inputs.mask
        return canonical
    clusters = sorted({k for part in params.parts for k in clusters_of(catalog["labels"], part)})
    canonical["clusters"] = clusters  # labels resolved: renaming a cluster keeps the result id
    return canonical


def clusters_of(labels: list[str], part: str) -> list[int]:
    """Cluster indices named ``part``; ``cluster_<k>`` also names cluster k. ValueError if none."""
    found = [k for k, label in enumerate(labels) if label == part]
    if not found and re.fullmatch(r"cluster_\d+", part) and int(part[8:]) < len(labels):
        found = [int(part[8:])]
    if not found:
        raise ValueError(f"unknown part {part!r}; this catalog has {sorted(set(labels))}")
    return found


def fit_mask_images(images: dict[str, Any], params: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """A mask must be the model's size; it is binarised at 128 and must not be empty."""
    mask = images.get("mask")
    if mask is None:
        return images
    resolution = int(manifest["resolution"])
    if mask.shape[:2] != (resolution, resolution):
        raise ValueError(
            f"inputs.mask is {mask.shape[1]}x{mask.shape[0]} but model {manifest['name']!r} works at "
            f"{resolution}x{resolution}: draw the mask at the model's size"
        )
    binary = mask >= 128
    if not binary.any():
        raise ValueError("inputs.mask is empty (all black): paint the part to transfer in white")
    return {**images, "mask": binary}


def style_layer_names(resolution: int) -> list[str]:
    """Style layer names of a StyleGAN2 of this resolution, in synthesis order (torch-free mirror
    of ``Generator.style_layers``)."""
    names = ["conv1", "to_rgb1"]
    for k in range(int(math.log2(resolution)) - 2):
        names += [f"convs.{2 * k}", f"convs.{2 * k + 1}", f"to_rgbs.{k}"]
    return names
