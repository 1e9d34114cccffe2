"""Family deployments, one subpackage each. ``FAMILY_DEPLOYMENTS`` names the Serve class of each.

Imported lazily by the app builder so the ingress never pulls torch.
"""

FAMILY_DEPLOYMENTS: dict[str, str] = {
    "style": "deployments.style.deployment:StyleDeployment",
    "collage": "deployments.collage.deployment:CollageDeployment",
    "inpaint": "deployments.inpaint.deployment:InpaintDeployment",
    "warp": "deployments.warp.deployment:WarpDeployment",
}
