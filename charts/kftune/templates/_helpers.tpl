{{/* Names */}}
{{- define "kftune.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kftune.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kftune.mlflow.name" -}}{{ include "kftune.fullname" . | trunc 56 | trimSuffix "-" }}-mlflow{{- end -}}
{{- define "kftune.postgresql.name" -}}{{ include "kftune.fullname" . | trunc 52 | trimSuffix "-" }}-postgresql{{- end -}}
{{- define "kftune.minio.name" -}}{{ include "kftune.fullname" . | trunc 57 | trimSuffix "-" }}-minio{{- end -}}
{{- define "kftune.suggestion.name" -}}{{ include "kftune.fullname" . | trunc 52 | trimSuffix "-" }}-suggestion{{- end -}}
{{- define "kftune.katibRegister.name" -}}{{ include "kftune.fullname" . | trunc 48 | trimSuffix "-" }}-katib-register{{- end -}}

{{/* Labels */}}
{{- define "kftune.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "kftune.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kftune
{{- end -}}

{{/* selectorLabels: pass (dict "ctx" $ "component" "mlflow") */}}
{{- define "kftune.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kftune.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images */}}
{{- define "kftune.tag" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString -}}
{{- if eq $tag "latest" -}}
{{- fail "image.tag must not be `latest`: set a version or a git SHA (images are tagged by `make images` with `git rev-parse --short HEAD`)" -}}
{{- end -}}
{{- $tag -}}
{{- end -}}

{{/* kftune.image: pass (dict "ctx" $ "name" "trainer") */}}
{{- define "kftune.image" -}}
{{- printf "%s:%s" (index .ctx.Values.image .name) (include "kftune.tag" .ctx) -}}
{{- end -}}

{{/* kftune.thirdPartyImage: pass an {repository, tag, digest} map */}}
{{- define "kftune.thirdPartyImage" -}}
{{- if eq (toString .tag) "latest" -}}
{{- fail (printf "%s: tag must not be `latest`: pin a version" .repository) -}}
{{- end -}}
{{- if .digest -}}
{{- printf "%s:%s@%s" .repository (toString .tag) .digest -}}
{{- else -}}
{{- printf "%s:%s" .repository (toString .tag) -}}
{{- end -}}
{{- end -}}

{{/* Service DNS names and URLs */}}
{{- define "kftune.mlflow.host" -}}
{{- printf "%s.%s.svc.%s" (include "kftune.mlflow.name" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "kftune.trackingUri" -}}
{{- printf "http://%s:%d" (include "kftune.mlflow.host" .) (int .Values.mlflow.port) -}}
{{- end -}}

{{- define "kftune.s3.endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s:9000" (include "kftune.minio.name" .) -}}
{{- else -}}
{{- .Values.artifacts.externalEndpoint -}}
{{- end -}}
{{- end -}}

{{/* MLflow --allowed-hosts: every name a client inside the cluster can use, plus localhost for port-forward. */}}
{{- define "kftune.mlflow.allowedHosts" -}}
{{- $name := include "kftune.mlflow.name" . -}}
{{- $port := int .Values.mlflow.port -}}
{{- $hosts := list -}}
{{- range $h := list $name (printf "%s.%s" $name .Release.Namespace) (printf "%s.%s.svc" $name .Release.Namespace) (include "kftune.mlflow.host" .) -}}
{{- $hosts = append $hosts $h -}}
{{- $hosts = append $hosts (printf "%s:%d" $h $port) -}}
{{- end -}}
{{- $hosts = concat $hosts (list "localhost" "localhost:*" "127.0.0.1" "127.0.0.1:*") .Values.mlflow.extraAllowedHosts -}}
{{- join "," $hosts -}}
{{- end -}}

{{/* Pod-level securityContext; pass (dict "ctx" $ "runAsUser" 999) to override the user. */}}
{{- define "kftune.podSecurityContext" -}}
{{- $sc := deepCopy .ctx.Values.podSecurityContext -}}
{{- if .runAsUser -}}
{{- $_ := set $sc "runAsUser" .runAsUser -}}
{{- $_ := set $sc "runAsGroup" .runAsUser -}}
{{- $_ := set $sc "fsGroup" .runAsUser -}}
{{- end -}}
{{- toYaml $sc -}}
{{- end -}}

{{- define "kftune.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* Secret references the chart needs, checked in one place so that a missing one fails the render. */}}
{{- define "kftune.validate" -}}
{{- if .Values.postgresql.enabled -}}
{{- $_ := required "postgresql.existingSecret is required with the bundled PostgreSQL: the name of a Secret holding its password (kubectl create secret generic kftune-postgres --from-literal=password=...)" .Values.postgresql.existingSecret -}}
{{- else -}}
{{- $_ := required "externalDatabase.existingSecret is required when postgresql.enabled=false: the name of a Secret whose key `uri` (externalDatabase.uriKey) holds postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB" .Values.externalDatabase.existingSecret -}}
{{- end -}}
{{- if .Values.minio.enabled -}}
{{- $_ := required "artifacts.existingSecret is required with the bundled MinIO: the name of a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (used as MinIO's root user and password)" .Values.artifacts.existingSecret -}}
{{- end -}}
{{- if and .Values.suggestion.enabled (eq (len .Values.suggestion.algorithms) 0) -}}
{{- fail "suggestion.algorithms is empty while suggestion.enabled=true: list asha and/or bohb, or set suggestion.enabled=false" -}}
{{- end -}}
{{- end -}}

{{/* The katib-config runtime.suggestions[] entries this release registers. */}}
{{- define "kftune.suggestion.entries" -}}
{{- range $algo := .Values.suggestion.algorithms }}
- algorithmName: {{ $algo }}
  image: {{ include "kftune.image" (dict "ctx" $ "name" "suggestion") }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  args: ["katib", "serve", "--port", "6789"]
  resources:
    {{- toYaml $.Values.suggestion.resources | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.containerSecurityContext | nindent 4 }}
    runAsUser: {{ $.Values.podSecurityContext.runAsUser }}
    runAsGroup: {{ $.Values.podSecurityContext.runAsGroup }}
{{- end }}
{{- end -}}

{{/* S3 environment of the MLflow server and its bucket init container. */}}
{{- define "kftune.mlflow.s3Env" -}}
{{- $endpoint := include "kftune.s3.endpoint" . -}}
{{- if .Values.artifacts.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .Values.artifacts.existingSecret }}
      key: {{ .Values.artifacts.accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.artifacts.existingSecret }}
      key: {{ .Values.artifacts.secretAccessKeyKey }}
{{- end }}
{{- if $endpoint }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ $endpoint | quote }}
{{- end }}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.artifacts.region | quote }}
{{- end -}}

{{/* GPU sharing (docs/gpu.md) */}}
{{- define "kftune.gpu.resource" -}}
{{- if and .Values.gpuSharing.enabled .Values.gpuSharing.renameByDefault -}}
nvidia.com/gpu.shared
{{- else -}}
nvidia.com/gpu
{{- end -}}
{{- end -}}

{{/* The per-trial allocator cap: "auto" = 0.9 / replicas (4 decimals, rounded down), a number, or "" */}}
{{- define "kftune.gpu.memoryFraction" -}}
{{- $f := .Values.gpuSharing.memoryFraction -}}
{{- if eq (toString $f) "auto" -}}
{{- divf (floor (divf 9000 (float64 .Values.gpuSharing.replicas))) 10000 | printf "%.4f" -}}
{{- else if ne (toString $f) "" -}}
{{- $f | float64 | printf "%.4f" -}}
{{- end -}}
{{- end -}}

{{/* The NVIDIA device plugin's config file (k8s-device-plugin config v1) */}}
{{- define "kftune.gpu.devicePluginConfig" -}}
version: v1
flags:
  migStrategy: none
sharing:
  {{- if eq .Values.gpuSharing.mode "mps" }}
  mps:
    renameByDefault: {{ .Values.gpuSharing.renameByDefault }}
  {{- else }}
  timeSlicing:
    renameByDefault: {{ .Values.gpuSharing.renameByDefault }}
    failRequestsGreaterThanOne: true
  {{- end }}
    resources:
      - name: nvidia.com/gpu
        replicas: {{ int .Values.gpuSharing.replicas }}
{{- end -}}
