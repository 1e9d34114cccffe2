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

{{- define "collage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "collage.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The Serve config generated from service/tools/serve_config.py (chart_serve_config), as JSON text.
*/}}
{{- define "collage.generatedServeConfig" -}}
{{- $text := .Files.Get "files/serve-config.json" -}}
{{- if not $text -}}
{{- fail "files/serve-config.json is missing from the chart: run python -m service.tools.helm_values --write" -}}
{{- end -}}
{{- $text -}}
{{- end -}}

{{/*
The settings the pods get, as JSON: `config`, the S3 endpoint of the bundled SeaweedFS when it is on,
and the HTTP address the Serve proxy must use under KubeRay (its probes and Service expect 0.0.0.0:8000;
the generated Serve config names it).
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
{{- $http := (include "collage.generatedServeConfig" . | fromJson).http_options -}}
{{- $_ := set $config "http_host" $http.host -}}
{{- $_ := set $config "http_port" $http.port -}}
{{- $overrides := dict -}}
{{- range $family, $options := .Values.families -}}
{{- $set := dict -}}
{{- range $key, $value := omit $options "enabled" -}}
{{- if not (kindIs "invalid" $value) -}}
{{- $_ := set $set $key $value -}}
{{- end -}}
{{- end -}}
{{- $min := hasKey $set "min_replicas" | ternary $set.min_replicas $config.autoscaling_min_replicas -}}
{{- $max := hasKey $set "max_replicas" | ternary $set.max_replicas $config.autoscaling_max_replicas -}}
{{- if and (not (kindIs "invalid" $min)) (not (kindIs "invalid" $max)) (gt (float64 $min) (float64 $max)) -}}
{{- fail (printf "families.%s: min_replicas %v is above max_replicas %v" $family $min $max) -}}
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
The Serve config of the application (serveConfigV2): the generated file (the one source, in Python)
with the enabled families. It sets no deployment options: Serve keeps those build_app binds in the
pods from the settings above (service/app.py), so no template computes them a second time.
*/}}
{{- define "collage.serveConfig" -}}
{{- $config := include "collage.generatedServeConfig" . | fromJson -}}
{{- $generated := splitList "," (first $config.applications).args.families -}}
{{- $enabled := splitList "," (include "collage.enabledFamilies" .) -}}
{{- range $enabled -}}
{{- if not (has . $generated) -}}
{{- fail (printf "family %q is not in the chart's files/serve-config.json: run python -m service.tools.helm_values --write" .) -}}
{{- end -}}
{{- end -}}
{{- $_ := set (first $config.applications).args "families" (join "," $enabled) -}}
{{- toYaml $config -}}
{{- end -}}

{{/* A pod's security context, or the container's: the group's own when it sets one, else common's. */}}
{{- define "collage.securityContext" -}}
{{- $own := hasKey .group .key | ternary (get .group .key) nil -}}
{{- toYaml (kindIs "map" $own | ternary $own (get .common .key)) -}}
{{- end -}}

{{/*
The pod template of a Ray group (the head, or a worker group). Its Ray container comes first, as
KubeRay expects. KubeRay injects its own liveness and readiness probes (raylet and GCS health; on
workers also the local Serve proxy's /-/healthz) and manages which pods the HTTP Service selects, so
none are set here: see docs/operations.md, "Running on Kubernetes", for /healthz and /readyz. The
log volume is named ray-logs, KubeRay's own name for it: the autoscaler sidecar KubeRay adds to the
head mounts the same volume instead of a second one.
*/}}
{{- define "collage.rayPodTemplate" -}}
{{- $ := .root -}}
{{- $group := .group -}}
{{- $common := $.Values.common -}}
{{- $selector := merge (include "collage.selectorLabels" $ | fromYaml) (dict "app.kubernetes.io/component" .component) -}}
{{- $labels := merge (deepCopy $selector) (deepCopy ($group.labels | default dict)) (deepCopy ($common.labels | default dict)) -}}
{{- $annotations := merge (deepCopy .annotations) (deepCopy ($group.annotations | default dict)) (deepCopy ($common.annotations | default dict)) -}}
{{- $env := concat ($common.containerEnv | default list) ($group.containerEnv | default list) -}}
{{- $volumes := prepend ($group.volumes | default list) (merge (dict "name" "ray-logs") (deepCopy $common.logVolume)) -}}
{{- $mounts := prepend ($group.volumeMounts | default list) (dict "name" "ray-logs" "mountPath" "/tmp/ray") -}}
{{- $podSecurity := include "collage.securityContext" (dict "group" $group "common" $common "key" "podSecurityContext") | fromYaml -}}
{{- $security := include "collage.securityContext" (dict "group" $group "common" $common "key" "securityContext") | fromYaml -}}
{{- $account := $group.serviceAccountName | default (include "collage.serviceAccountName" $) -}}
{{- /* KubeRay labels each pod with its group (ray.io/group; the head's is headgroup): a spread
       entry without a selector counts the group's own pods. */ -}}
{{- $ownPods := dict "matchLabels" (merge (dict "ray.io/group" .groupName) $selector) -}}
{{- $spread := list -}}
{{- range $group.topologySpreadConstraints -}}
{{- $spread = append $spread (hasKey . "labelSelector" | ternary . (merge (dict "labelSelector" $ownPods) .)) -}}
{{- end -}}
metadata:
  labels:
    {{- toYaml $labels | nindent 4 }}
  annotations:
    {{- toYaml $annotations | nindent 4 }}
spec:
  {{- with $account }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $podSecurity }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ .name }}
      image: {{ include "collage.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      envFrom:
        - configMapRef:
            name: {{ include "collage.fullname" $ }}-settings
        - secretRef:
            name: {{ include "collage.secretName" $ }}
      {{- with $env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      ports:
        {{- toYaml .ports | nindent 8 }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      {{- with $security }}
      securityContext:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      volumeMounts:
        {{- toYaml $mounts | nindent 8 }}
  volumes:
    {{- toYaml $volumes | nindent 4 }}
  {{- with $spread }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
