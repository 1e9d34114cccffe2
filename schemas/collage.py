"""Op contracts of the ``collage`` family (Neural Collage on class-conditional CBN generators).

Every image of the model is named by a latent (a seed, a z, or the result_id of a `project` edit)
and a class (an id, a name, or a soft class vector). Masks are uploaded assets; inside the family
they arrive as one list ``masks`` in the canonical inputs, which regions and references index.
Layers are generator blocks, numbered from 0 (the coarsest, right after the first linear layer);
the manifest's ``block_resolutions`` gives each block's output size.
"""

from __future__ import annotations

from typing import Annotated, Any, Union

from pydantic import Field, model_validator

from schemas.common import LatentValue, Limits, Seed, Sha256Hex, StrictModel
from schemas.photo_fit import CROP_BOX_DESCRIPTION, FIT_DESCRIPTION, FIT_MODES, CropBox, FitMode

ClassRef = Union[int, str]  # a class index, or a name from the model's class list
MAX_PROJECT_CANDIDATES = 16


class CollageLatent(StrictModel):
    """One image of the model: exactly one of seed, z, projection; and its class."""

    seed: Seed | None = Field(default=None, description="seed of z (truncated normal, scaled by params.truncation)")
    z: list[LatentValue] | None = Field(default=None, description="latent z, length z_dim")
    projection: Sha256Hex | None = Field(default=None, description="result_id of a `project` edit of this model: its fitted z and class")
    class_id: ClassRef | None = Field(default=None, description="class index or name (see GET /v1/models: classes)")
    class_weights: dict[str, Annotated[float, Field(ge=0, le=1e6)]] | None = Field(
        default=None, description="soft class vector: class name (or index) -> weight >= 0; normalised to sum 1"
    )

    @model_validator(mode="after")
    def _one_latent_one_class(self) -> "CollageLatent":
        given = [name for name in ("seed", "z", "projection") if getattr(self, name) is not None]
        if len(given) > 1:
            raise ValueError(f"give exactly one of seed, z, projection (got {', '.join(given)})")
        if self.class_id is not None and self.class_weights is not None:
            raise ValueError("give class_id or class_weights, not both")
        return self


def class_index(ref: ClassRef, manifest: dict[str, Any], where: str, *, digits_name_index: bool = False) -> int:
    """A class reference -> its index. ``digits_name_index``: a digit string is an index too (only
    for class_weights keys, which JSON makes strings); elsewhere an index is a JSON integer."""
    classes = list(manifest.get("classes") or [])
    if isinstance(ref, bool):
        raise ValueError(f"{where} must be a class index or name, got {ref!r}")
    if isinstance(ref, int):
        if not 0 <= ref < len(classes):
            raise ValueError(f"{where} {ref} is not a class of model {manifest['name']!r}: indices are 0..{len(classes) - 1}")
        return ref
    if ref in classes:
        return classes.index(ref)
    if digits_name_index and ref.isdigit() and int(ref) < len(classes):
        return int(ref)
    shown = ", ".join(classes[:20]) + (", ..." if len(classes) > 20 else "")
    raise ValueError(f"{where} {ref!r} is not a class of model {manifest['name']!r}; classes are {shown}")


def canonical_class(latent: CollageLatent, manifest: dict[str, Any], where: str) -> dict[str, float] | None:
    """The class as {index: weight} (weights summing to 1, keys as strings), or None when not given."""
    if latent.class_id is not None:
        return {str(class_index(latent.class_id, manifest, f"{where}.class_id")): 1.0}
    if latent.class_weights is None:
        return None
    weights: dict[int, float] = {}
    for name, weight in latent.class_weights.items():
        if not weight >= 0 or weight == float("inf"):
            raise ValueError(f"{where}.class_weights[{name!r}] must be a finite number >= 0, got {weight}")
        index = class_index(name, manifest, f"{where}.class_weights key", digits_name_index=True)
        weights[index] = weights.get(index, 0.0) + float(weight)
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"{where}.class_weights must have a positive weight somewhere")
    return {str(k): round(v / total, 8) for k, v in sorted(weights.items()) if v > 0}


def canonical_latent(latent: CollageLatent, manifest: dict[str, Any], where: str, *, draw_seed=None) -> dict[str, Any]:
    """Latent and class as they enter the result hash; a projection stays a reference (the ingress
    resolves it to the fitted z and, unless a class is given here, the fitted class)."""
    klass = canonical_class(latent, manifest, where)
    if latent.projection is not None:
        out: dict[str, Any] = {"projection": latent.projection}
    elif latent.z is not None:
        z_dim = int(manifest["arch"]["z_dim"])
        if len(latent.z) != z_dim:
            raise ValueError(f"{where}.z must have {z_dim} numbers for this model, got {len(latent.z)}")
        out = {"z": [float(v) for v in latent.z]}
    elif latent.seed is not None:
        out = {"seed": latent.seed}
    elif draw_seed is not None:
        out = {"seed": draw_seed()}
    else:
        raise ValueError(f"{where} needs one of seed, z, projection")
    if klass is None and latent.projection is None:
        raise ValueError(f"{where} needs a class: class_id or class_weights")
    if klass is not None:
        out["class"] = klass
    return out


def check_layers(layers: list[int] | None, manifest: dict[str, Any], where: str) -> list[int]:
    """Block indices, sorted and unique; None means every block."""
    n_blocks = len(manifest.get("layers") or [])
    if layers is None:
        return list(range(n_blocks))
    if not layers:
        raise ValueError(f"{where} is empty: name at least one block, or leave it out for all")
    bad = sorted({layer for layer in layers if not 0 <= layer < n_blocks})
    if bad:
        raise ValueError(
            f"{where} has block(s) {bad} out of range: model {manifest['name']!r} has blocks 0..{n_blocks - 1} "
            f"(0 is the coarsest; output sizes {manifest.get('block_resolutions')})"
        )
    return sorted(set(layers))


Truncation = Field(default=1.0, gt=0.0, le=1.0, description="truncation of seeded z (and BigGAN's batch-norm statistics); 1 = none")
ResizeMasks = Field(default=False, description="resize masks to the model resolution instead of rejecting other sizes")


# ---- sample ------------------------------------------------------------------------------------


class SampleParams(StrictModel):
    truncation: float = Truncation


class SampleInputs(CollageLatent):
    """A seed is drawn by the server when no latent is given; the class is required."""


def prepare_sample(inputs: SampleInputs, params: SampleParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    return canonical_latent(inputs, manifest, "inputs", draw_seed=draw_seed)


# ---- masks (label_collage, feature_collage) -----------------------------------------------------


def fit_masks(images: dict[str, Any], params: Any, manifest: dict[str, Any]) -> dict[str, Any]:
    """Masks (uint8 H x W) -> float32 weights in [0, 1] at the model's size; grey levels are soft
    weights (feathered edges). Wrong size is an error unless params.resize_masks; empty is an error."""
    import numpy as np
    from PIL import Image

    resolution = int(manifest["resolution"])
    fitted = []
    for i, mask in enumerate(images.get("masks", [])):
        if mask.ndim == 3:
            mask = mask[..., 0]
        if mask.shape != (resolution, resolution):
            if not getattr(params, "resize_masks", False):
                raise ValueError(
                    f"mask {i} is {mask.shape[1]}x{mask.shape[0]} but model {manifest['name']!r} works at "
                    f"{resolution}x{resolution}; draw masks at the model's size or set params.resize_masks=true"
                )
            mask = np.asarray(Image.fromarray(mask).resize((resolution, resolution), Image.BILINEAR))
        weights = mask.astype(np.float32) / 255.0
        if not (weights >= 0.5).any():
            raise ValueError(f"mask {i} is empty (no pixel at least half white): paint the region in white")
        fitted.append(weights)
    return {**images, "masks": fitted}


# ---- label_collage (sCBN) -------------------------------------------------------------------------


class Region(StrictModel):
    mask: Sha256Hex = Field(description="asset id of a mask (white = region; grey = partial), model resolution")
    class_id: ClassRef = Field(description="class drawn inside the region: index or name")
    intensity: float = Field(default=1.0, gt=0.0, le=1.0, description="weight of the region's class inside it (1 = replace)")


class LabelCollageParams(StrictModel):
    layers: list[int] | None = Field(
        default=None, description="blocks whose CBNs take the spatial class map (default all); early blocks change shape, late ones texture"
    )
    truncation: float = Truncation
    resize_masks: bool = ResizeMasks


class LabelCollageInputs(StrictModel):
    base: CollageLatent = Field(description="the image edited; its class fills everything outside the regions")
    regions: list[Region] = Field(min_length=1, max_length=8, description="regions and the class each becomes")


def prepare_label_collage(
    inputs: LabelCollageInputs, params: LabelCollageParams, manifest: dict[str, Any], draw_seed, limits: Limits
) -> dict[str, Any]:
    layers = check_layers(params.layers, manifest, "params.layers")
    regions = [
        {"class": class_index(r.class_id, manifest, f"inputs.regions[{i}].class_id"), "intensity": r.intensity}
        for i, r in enumerate(inputs.regions)
    ]
    return {
        "base": canonical_latent(inputs.base, manifest, "inputs.base"),
        "masks": [r.mask for r in inputs.regions],
        "regions": regions,
        "layers": layers,
    }


# ---- feature_collage (feature blending) ----------------------------------------------------------


class FeatureReference(CollageLatent):
    mask: Sha256Hex = Field(description="asset id of a mask on the base (white = where the reference's features go)")
    layers: list[int] | None = Field(default=None, description="blocks at whose output features are blended (default all)")
    shift: tuple[int, int] = Field(default=(0, 0), description="(dx, dy) in output pixels: moves the reference's features before blending")


class FeatureCollageParams(StrictModel):
    truncation: float = Truncation
    resize_masks: bool = ResizeMasks


class FeatureCollageInputs(StrictModel):
    base: CollageLatent = Field(description="the image edited")
    references: list[FeatureReference] = Field(min_length=1, max_length=4, description="images whose features are pasted, in order")


def prepare_feature_collage(
    inputs: FeatureCollageInputs, params: FeatureCollageParams, manifest: dict[str, Any], draw_seed, limits: Limits
) -> dict[str, Any]:
    resolution = int(manifest["resolution"])
    references = []
    for i, ref in enumerate(inputs.references):
        where = f"inputs.references[{i}]"
        dx, dy = ref.shift
        if abs(dx) >= resolution or abs(dy) >= resolution:
            raise ValueError(f"{where}.shift {list(ref.shift)} moves the features off a {resolution}x{resolution} image")
        latent = CollageLatent(seed=ref.seed, z=ref.z, projection=ref.projection, class_id=ref.class_id, class_weights=ref.class_weights)
        if latent.seed is None and latent.z is None and latent.projection is None:
            raise ValueError(f"{where} needs one of seed, z, projection")
        references.append(
            {
                **canonical_latent(latent, manifest, where),
                "mask": i,
                "layers": check_layers(ref.layers, manifest, f"{where}.layers"),
                "shift": [dx, dy],
            }
        )
    return {
        "base": canonical_latent(inputs.base, manifest, "inputs.base"),
        "masks": [r.mask for r in inputs.references],
        "references": references,
    }


# ---- project (manifold projection) ---------------------------------------------------------------


class ProjectParams(StrictModel):
    steps: int = Field(default=150, ge=1, le=1000, description="optimisation steps on z (more: closer fit, slower)")
    learning_rate: float = Field(default=0.05, gt=0.0, le=1.0, description="Adam step size on z")
    class_id: ClassRef | None = Field(default=None, description="the image's class, when known")
    candidates: list[ClassRef] | None = Field(
        default=None,
        max_length=MAX_PROJECT_CANDIDATES,
        description="classes to try when class_id is not given (default: all, for models of at most 16 classes); the best fit wins",
    )
    search_fraction: float = Field(
        default=0.25, gt=0.0, le=1.0, description="share of the steps spent on every candidate before keeping the best"
    )
    truncation: float = Truncation
    resize: bool = Field(
        default=False, description="fit the whole image to the model resolution (params.fit) instead of rejecting other sizes"
    )
    crop_box: CropBox | None = Field(default=None, description=CROP_BOX_DESCRIPTION)
    fit: FitMode = Field(default=FIT_MODES[0], description=FIT_DESCRIPTION)


class ProjectInputs(StrictModel):
    image: Sha256Hex = Field(description="asset id of the RGB photo to project (model resolution, or see crop_box, resize, fit)")


def prepare_project(inputs: ProjectInputs, params: ProjectParams, manifest: dict[str, Any], draw_seed, limits: Limits) -> dict[str, Any]:
    n_classes = len(manifest.get("classes") or [])
    if params.class_id is not None:
        if params.candidates:
            raise ValueError("give params.class_id or params.candidates, not both")
        candidates = [class_index(params.class_id, manifest, "params.class_id")]
    elif params.candidates:
        candidates = sorted({class_index(c, manifest, "params.candidates entry") for c in params.candidates})
    elif n_classes <= MAX_PROJECT_CANDIDATES:
        candidates = list(range(n_classes))
    else:
        raise ValueError(
            f"model {manifest['name']!r} has {n_classes} classes: give params.class_id or "
            f"params.candidates (at most {MAX_PROJECT_CANDIDATES})"
        )
    return {"image": inputs.image, "candidates": candidates}


def fit_project_images(images: dict[str, Any], params: ProjectParams, manifest: dict[str, Any]) -> Any:
    from schemas.style import fit_project_images as fit_square

    return fit_square(images, params, manifest)
