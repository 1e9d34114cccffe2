"""Family deployments, one subpackage each. ``FAMILY_DEPLOYMENTS`` names the Serve class of each.

Imported lazily by the app builder so the ingress never pulls torch.
"""

FAMILY_DEPLOYMENTS: dict[str, str] = {
    "style": "deployments.style.deployment:StyleDeployment",
    "collage": "deployments.collage.deployment:CollageDeployment",
    "inpaint": "deployments.inpaint.deployment:InpaintDeployment",
    "warp": "deployments.warp.deployment:WarpDeployment",
    "ingan": "deployments.ingan.deployment:InganDeployment",
    "person": "deployments.person.deployment:PersonDeployment",
}

# Job kinds that train a model: family -> ``module:function`` run by the job runner as a Ray task.
FIT_TASKS: dict[str, str] = {
    "ingan": "deployments.ingan.fit_job:run_fit",
}
