{{/* Names and labels. */}}
{{- define "phantom-authz.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "phantom-authz.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "phantom-authz.labels" -}}
{{ include "phantom-authz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Where phantom-authz listens: loopback in a sidecar, a unix socket in an Envoy Gateway pod, all addresses when
central (reached through its Service; with Istio, behind the pod's own sidecar and mTLS). */}}
{{- define "phantom-authz.listen" -}}
{{- if eq .Values.mode "central" -}}
0.0.0.0:{{ .Values.authz.port }}
{{- else if eq .Values.proxy "envoy-gateway" -}}
unix:{{ .Values.authz.socketPath }}
{{- else -}}
127.0.0.1:{{ .Values.authz.port }}
{{- end -}}
{{- end -}}

{{/* The probe's target: the same socket, or loopback (a central pod listens on every address). */}}
{{- define "phantom-authz.probeTarget" -}}
{{- if and (eq .Values.mode "sidecar") (eq .Values.proxy "envoy-gateway") -}}
unix:{{ .Values.authz.socketPath }}
{{- else -}}
127.0.0.1:{{ .Values.authz.port }}
{{- end -}}
{{- end -}}

{{/* phantom-authz's config file: the values' config with server.listen set by the chart. */}}
{{- define "phantom-authz.config" -}}
{{- $config := deepCopy .Values.authz.config -}}
{{- $server := get $config "server" | default dict -}}
{{- $_ := set $server "listen" (include "phantom-authz.listen" .) -}}
{{- $_ := set $config "server" $server -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The phantom-authz container. In an Envoy Gateway pod it is a native sidecar (an init container that keeps
running), so it is listed under initContainers and carries restartPolicy: Always. */}}
{{- define "phantom-authz.container" -}}
- name: phantom-authz
  image: {{ printf "%s:%s" .Values.image.repository .Values.image.tag | quote }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  {{- if and (eq .Values.mode "sidecar") (eq .Values.proxy "envoy-gateway") }}
  restartPolicy: Always
  {{- end }}
  args: ["--config", "/etc/phantom-authz/authz.yaml"]
  {{- with .Values.authz.secretEnv }}
  env:
  {{- range . }}
  - name: {{ .name }}
    valueFrom: {secretKeyRef: {name: {{ .secretName }}, key: {{ .key }}}}
  {{- end }}
  {{- end }}
  ports:
  {{- if eq .Values.mode "central" }}
  - {containerPort: {{ .Values.authz.port }}, name: grpc-authz}
  {{- end }}
  - {containerPort: {{ .Values.authz.metricsPort }}, name: http-metrics}
  # `authz health` asks grpc.health.v1 from inside the container: a sidecar listens on loopback or a socket only
  readinessProbe:
    exec: {command: ["authz", "health", "--target", {{ include "phantom-authz.probeTarget" . | quote }}]}
    periodSeconds: 5
  livenessProbe:
    exec: {command: ["authz", "health", "--target", {{ include "phantom-authz.probeTarget" . | quote }}, "--service", ""]}
    periodSeconds: 10
  {{- with .Values.authz.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
  - {name: phantom-authz-config, mountPath: /etc/phantom-authz/authz.yaml, subPath: authz.yaml}
  {{- if .Values.authz.policies }}
  - {name: phantom-authz-policies, mountPath: {{ .Values.authz.policyDir }}}
  {{- end }}
  {{- if and (eq .Values.mode "sidecar") (eq .Values.proxy "envoy-gateway") }}
  - {name: phantom-authz-socket, mountPath: {{ dir .Values.authz.socketPath }}}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    readOnlyRootFilesystem: true
    allowPrivilegeEscalation: false
    capabilities: {drop: [ALL]}
    {{- if and (eq .Values.mode "sidecar") (eq .Values.proxy "envoy-gateway") }}
    # Envoy (uid 65532 in Envoy Gateway's image) must be able to connect to the socket phantom-authz creates
    runAsUser: 65532
    runAsGroup: 65532
    {{- end }}
{{- end -}}

{{/* The volumes the phantom-authz container mounts. */}}
{{- define "phantom-authz.volumes" -}}
- name: phantom-authz-config
  configMap: {name: {{ include "phantom-authz.fullname" . }}}
{{- if .Values.authz.policies }}
- name: phantom-authz-policies
  configMap: {name: {{ include "phantom-authz.fullname" . }}-policies}
{{- end }}
{{- if and (eq .Values.mode "sidecar") (eq .Values.proxy "envoy-gateway") }}
- name: phantom-authz-socket
  emptyDir: {}
{{- end }}
{{- end -}}

{{/* The Service host proxies call in central mode. */}}
{{- define "phantom-authz.serviceHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "phantom-authz.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* Istio: the workloads whose requests go to phantom-authz (a YAML list of {namespace, selector, notPaths}).
A sidecar protects its own workload; central mode lists them in istio.protect. */}}
{{- define "phantom-authz.istioTargets" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- list (dict "namespace" .Release.Namespace "selector" .Values.workload.labels) | toYaml -}}
{{- else -}}
{{- .Values.istio.protect | toYaml -}}
{{- end -}}
{{- end -}}

{{/* Istio: the extension provider's service: for a sidecar, the ServiceEntry's host, namespaced (each namespace
has its own ServiceEntry for that host, so the provider says whose it means); for central, the Service. */}}
{{- define "phantom-authz.istioServiceEntryHost" -}}
{{- printf "%s.local" (include "phantom-authz.fullname" .) -}}
{{- end -}}

{{- define "phantom-authz.istioService" -}}
{{- if eq .Values.mode "sidecar" -}}
{{- printf "%s/%s" .Release.Namespace (include "phantom-authz.istioServiceEntryHost" .) -}}
{{- else -}}
{{- include "phantom-authz.serviceHost" . -}}
{{- end -}}
{{- end -}}
