{{/*
Name of the release's objects. The RayService carries it too, and KubeRay refuses RayService names
longer than 47 characters or not DNS-1035 labels (it appends a 6-character suffix for its clusters).
*/}}
{{- define "collage.fullname" -}}
{{- $name := .Release.Name -}}
{{- if not (contains "collage" $name) -}}
{{- $name = printf "%s-collage" $name -}}
{{- end -}}
{{- if gt (len $name) 47 -}}
{{- fail (printf "the object name %q is longer than the 47 characters KubeRay allows a RayService: choose a shorter release name" $name) -}}
{{- end -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $name) -}}
{{- fail (printf "the object name %q is not a DNS-1035 label (lowercase letters, digits, '-', starting with a letter), which KubeRay requires of a RayService" $name) -}}
{{- end -}}
{{- $name -}}
{{- end -}}

{{- define "collage.selectorLabels" -}}
app.kubernetes.io/name: collage
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "collage.labels" -}}
{{ include "collage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "collage.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "collage.secretName" -}}
{{- .Values.secrets.existingSecret | default (include "collage.fullname" .) -}}
{{- end -}}

{{- define "collage.seaweedfsEndpoint" -}}
http://{{ include "collage.fullname" . }}-seaweedfs.{{ .Release.Namespace }}.svc:8333
{{- end -}}

{{/*
The settings the pods get, as JSON: `config`, the S3 endpoint of the bundled SeaweedFS when it is on,
and the HTTP address the Serve proxy must use under KubeRay (its probes and Service expect 0.0.0.0:8000).
*/}}
{{- define "collage.settings" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.seaweedfs.enabled -}}
{{- if $config.s3_endpoint_url -}}
{{- fail "config.s3_endpoint_url and seaweedfs.enabled are both set: use the bundled SeaweedFS or an external S3 endpoint, not both" -}}
{{- end -}}
{{- $_ := set $config "s3_endpoint_url" (include "collage.seaweedfsEndpoint" .) -}}
{{- else if not $config.s3_endpoint_url -}}
{{- fail "set config.s3_endpoint_url (for AWS: https://s3.<region>.amazonaws.com) or seaweedfs.enabled=true; without an endpoint the service would look for an embedded S3 server" -}}
{{- end -}}
{{- $_ := set $config "http_host" "0.0.0.0" -}}
{{- $_ := set $config "http_port" 8000 -}}
{{- $overrides := dict -}}
{{- range $family, $options := .Values.families -}}
{{- $set := dict -}}
{{- range $key, $value := omit $options "enabled" -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $set $key $value -}}
{{- end -}}
{{- end -}}
{{- if $set -}}
{{- $_ := set $overrides $family $set -}}
{{- end -}}
{{- end -}}
{{- if $overrides -}}
{{- $_ := set $config "family_overrides" $overrides -}}
{{- end -}}
{{- toJson $config -}}
{{- end -}}

{{/* A setting as an environment variable's text: strings as they are, everything else as JSON (8, 0.02, true, {...}). */}}
{{- define "collage.envValue" -}}
{{- if kindIs "string" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "collage.enabledFamilies" -}}
{{- $names := list -}}
{{- range $family, $options := .Values.families -}}
{{- if $options.enabled -}}
{{- $names = append $names $family -}}
{{- end -}}
{{- end -}}
{{- if not $names -}}
{{- fail "families: enable at least one family" -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/*
The Serve config of the application (serveConfigV2), in the format of `serve build`. It mirrors
service/tools/serve_config.py: family_options, job_runner_options and ingress_options of service/app.py,
applied to the settings above. tests/test_helm.py renders it for several value sets and compares it
with serve_config() of the settings in the rendered ConfigMap, so the two cannot drift apart.
*/}}
{{- define "collage.serveConfig" -}}
{{- $c := .Values.config -}}
{{- $deploymentNames := dict "style" "StyleDeployment" "collage" "CollageDeployment" "inpaint" "InpaintDeployment" "warp" "WarpDeployment" "ingan" "InganDeployment" "person" "PersonDeployment" -}}
{{- $families := splitList "," (include "collage.enabledFamilies" .) -}}
{{- $deployments := list -}}
{{- range $name, $options := .Values.families -}}
{{- $d := dict "num_cpus" $c.family_num_cpus "num_gpus" $c.family_num_gpus "replicas" $c.family_replicas "min_replicas" $c.autoscaling_min_replicas "max_replicas" $c.autoscaling_max_replicas -}}
{{- range $key, $value := omit $options "enabled" -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $d $key $value -}}
{{- end -}}
{{- end -}}
{{- if gt (float64 $d.min_replicas) (float64 $d.max_replicas) -}}
{{- fail (printf "families.%s: min_replicas %v is above max_replicas %v" $name $d.min_replicas $d.max_replicas) -}}
{{- end -}}
{{- if $options.enabled -}}
{{- if not (hasKey $deploymentNames $name) -}}
{{- fail (printf "family %q has no deployment name in the chart's collage.serveConfig helper" $name) -}}
{{- end -}}
{{- $actor := dict "num_cpus" $d.num_cpus -}}
{{- if gt (float64 $d.num_gpus) 0.0 -}}
{{- $_ := set $actor "num_gpus" $d.num_gpus -}}
{{- end -}}
{{- if $c.family_resources -}}
{{- $_ := set $actor "resources" $c.family_resources -}}
{{- end -}}
{{- $deployment := dict
  "name" (get $deploymentNames $name)
  "user_config" (dict "max_batch_size" $c.batch_max_size "batch_wait_timeout_s" $c.batch_wait_timeout_s)
  "max_ongoing_requests" (max (int64 $c.family_max_ongoing_requests) (mul 2 (int64 $c.batch_max_size)))
  "max_queued_requests" $c.max_queued_requests
  "ray_actor_options" $actor
  "logging_config" (dict "enable_access_log" $c.serve_access_log) -}}
{{- if $c.autoscaling_enabled -}}
{{- $target := $c.autoscaling_target_ongoing_requests | default (mul 2 (int64 $c.batch_max_size)) -}}
{{- $_ := set $deployment "autoscaling_config" (dict
  "min_replicas" $d.min_replicas
  "max_replicas" $d.max_replicas
  "target_ongoing_requests" $target
  "upscale_delay_s" $c.autoscaling_upscale_delay_s
  "downscale_delay_s" $c.autoscaling_downscale_delay_s
  "policy" (dict "policy_function" "service.autoscaling:edits_autoscaling_policy")) -}}
{{- else -}}
{{- $_ := set $deployment "num_replicas" $d.replicas -}}
{{- end -}}
{{- $deployments = append $deployments $deployment -}}
{{- end -}}
{{- end -}}
{{- $logging := dict "enable_access_log" $c.serve_access_log -}}
{{- $runnerActor := dict "num_cpus" $c.jobs_num_cpus -}}
{{- if $c.jobs_resources -}}
{{- $_ := set $runnerActor "resources" $c.jobs_resources -}}
{{- end -}}
{{- $deployments = append $deployments (dict "name" "JobRunner" "num_replicas" $c.jobs_runner_replicas "ray_actor_options" $runnerActor "logging_config" $logging) -}}
{{- $ingress := dict "name" "Ingress" "num_replicas" $c.ingress_replicas "max_ongoing_requests" (add 64 (mul 2 (int64 $c.ingress_max_ongoing_requests))) "logging_config" $logging -}}
{{- if $c.ingress_resources -}}
{{- $_ := set $ingress "ray_actor_options" (dict "resources" $c.ingress_resources) -}}
{{- end -}}
{{- $deployments = append $deployments $ingress -}}
{{- $application := dict
  "name" "collage"
  "route_prefix" "/"
  "import_path" "service.app:build_app"
  "args" (dict "families" (join "," $families))
  "deployments" $deployments -}}
{{- toYaml (dict "proxy_location" "EveryNode" "http_options" (dict "host" "0.0.0.0" "port" 8000) "applications" (list $application)) -}}
{{- end -}}

{{/*
The Ray container of a pod template. KubeRay injects its own liveness and readiness probes (raylet
and GCS health; on workers also the local Serve proxy's /-/healthz) and manages which pods the
HTTP Service selects, so none are set here: see docs/operations.md, "Running on Kubernetes", for /healthz
and /readyz.
*/}}
{{- define "collage.rayContainer" -}}
{{- $ := .root -}}
name: {{ .name }}
image: {{ include "collage.image" $ }}
imagePullPolicy: {{ $.Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "collage.fullname" $ }}-settings
  - secretRef:
      name: {{ include "collage.secretName" $ }}
ports:
  {{- toYaml .ports | nindent 2 }}
resources:
  {{- toYaml .resources | nindent 2 }}
{{- end -}}

{{- define "collage.podSpecExtras" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
