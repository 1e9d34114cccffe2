"""Asset upload and download contract."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field

from schemas.common import Sha256Hex, StrictModel

AssetKind = Literal["image", "data"]

# A media type as it may travel in an S3 Content-Type header: type/subtype (RFC 6838 name
# characters) with optional `; name=value` parameters, printable ASCII only, at most 255 characters.
# Anything else (CR/LF, NUL, non-ASCII, 100 KB) is the client's error, never a storage failure.
MEDIA_TYPE_PATTERN = (
    r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
    r'(\s*;\s*[A-Za-z0-9!#$&^_.+-]+=("[\x20-\x21\x23-\x7e]*"|[A-Za-z0-9!#$&^_.+-]+))*$'
)
MEDIA_TYPE_MAX_LENGTH = 255
MediaType = Annotated[str, Field(pattern=MEDIA_TYPE_PATTERN, max_length=MEDIA_TYPE_MAX_LENGTH)]


def is_media_type(value: str) -> bool:
    """Whether ``value`` is a media type the API accepts (the same rule as :data:`MediaType`)."""
    return len(value) <= MEDIA_TYPE_MAX_LENGTH and re.fullmatch(MEDIA_TYPE_PATTERN, value) is not None


class AssetUploadJSON(StrictModel):
    """Body of ``POST /v1/assets`` when sent as JSON instead of multipart."""

    data_base64: str = Field(description="the file's bytes, base64-encoded")
    content_type: MediaType = Field(default="image/png", description="media type of the bytes")
    kind: AssetKind = Field(default="image", description="'image' is decoded and checked; 'data' is stored as is")


# The multipart form of ``POST /v1/assets`` (parsed by the handler itself, so described by hand).
ASSET_UPLOAD_FORM_SCHEMA = {
    "title": "AssetUploadForm",
    "description": "Body of ``POST /v1/assets`` as multipart/form-data: the file, and what kind of asset it is.",
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {"type": "string", "format": "binary", "description": "the file's bytes"},
        "kind": {
            "type": "string",
            "enum": ["image", "data"],
            "default": "image",
            "description": "'image' is decoded and checked; 'data' is stored as is",
        },
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

    content_type: MediaType = Field(default="image/png", description="media type the PUT must send")
    kind: AssetKind = "image"
    size: int | None = Field(default=None, ge=1, description="expected size in bytes, checked on completion")


class UploadSlot(StrictModel):
    upload_id: str = Field(description="id of the slot; complete it with POST /v1/assets/uploads/{upload_id}/complete")
    url: str = Field(description="presigned PUT URL; send the bytes with the given Content-Type")
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(description="headers the PUT must carry")
    expires_in_s: int
