"""Asset upload and download contract."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from schemas.common import Sha256Hex, StrictModel

AssetKind = Literal["image", "data"]


class AssetUploadJSON(StrictModel):
    """Body of ``POST /v1/assets`` when sent as JSON instead of multipart."""

    data_base64: str = Field(description="the file's bytes, base64-encoded")
    content_type: str = Field(default="image/png", description="media type of the bytes")
    kind: AssetKind = Field(default="image", description="'image' is decoded and checked; 'data' is stored as is")


# The multipart form of ``POST /v1/assets`` (parsed by the handler itself, so described by hand).
ASSET_UPLOAD_FORM_SCHEMA = {
    "title": "AssetUploadForm",
    "description": "Body of ``POST /v1/assets`` as multipart/form-data: the file, and what kind of asset it is.",
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the file's bytes"},
        "kind": {"type": "string", "enum": ["image", "data"], "default": "image",
                 "description": "'image' is decoded and checked; 'data' is stored as is"},
    },
}


class AssetInfo(StrictModel):
    asset_id: Sha256Hex = Field(description="sha256 of the bytes; use it in edit inputs")
    size: int = Field(description="size in bytes")
    content_type: str
    kind: AssetKind
    width: int | None = Field(default=None, description="image width in pixels (images only)")
    height: int | None = Field(default=None, description="image height in pixels (images only)")
    mode: str | None = Field(default=None, description="Pillow mode of the stored image, e.g. 'RGB' or 'L'")
    url: str | None = Field(default=None, description="presigned GET URL")
    url_expires_in_s: int | None = None
    created: bool | None = Field(default=None, description="false when the same bytes were stored already")


class UploadSlotRequest(StrictModel):
    """Body of ``POST /v1/assets/uploads``: ask for a presigned PUT slot."""

    content_type: str = Field(default="image/png", description="media type the PUT must send")
    kind: AssetKind = "image"
    size: int | None = Field(default=None, ge=1, description="expected size in bytes, checked on completion")


class UploadSlot(StrictModel):
    upload_id: str = Field(description="id of the slot; complete it with POST /v1/assets/uploads/{upload_id}/complete")
    url: str = Field(description="presigned PUT URL; send the bytes with the given Content-Type")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="headers the PUT must carry")
    expires_in_s: int
