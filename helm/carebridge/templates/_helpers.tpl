{{/* Chart name, truncated to the 63 characters Kubernetes allows in a label. */}}
{{- define "carebridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart, unless the release already names the chart. */}}
{{- define "carebridge.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "carebridge.redisName" -}}
{{- printf "%s-redis" (include "carebridge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "carebridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "carebridge.labels" -}}
helm.sh/chart: {{ include "carebridge.chart" . }}
app.kubernetes.io/name: {{ include "carebridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selects the server pods only (the Redis pods carry component=redis). */}}
{{- define "carebridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "carebridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end }}

{{- define "carebridge.redisSelectorLabels" -}}
app.kubernetes.io/name: {{ include "carebridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: redis
{{- end }}

{{- define "carebridge.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The ConfigMap holding the policy set, or "" when the image's own set is used. */}}
{{- define "carebridge.policiesConfigMap" -}}
{{- if .Values.policies.existingConfigMap }}
{{- .Values.policies.existingConfigMap }}
{{- else if .Values.policies.files }}
{{- printf "%s-policies" (include "carebridge.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The policy directory the server reads. */}}
{{- define "carebridge.policiesDir" -}}
{{- if .Values.policies.existingClaim }}
{{- printf "%s/%s" .Values.policies.mountPath .Values.policies.claimDirectory }}
{{- else if include "carebridge.policiesConfigMap" . }}
{{- .Values.policies.mountPath }}
{{- else }}
{{- "/app/policies" }}
{{- end }}
{{- end }}

{{/* The shutdown budget: refuse a grace period the server's own shutdown cannot fit in. */}}
{{- define "carebridge.checkTermination" -}}
{{- $graceSeconds := div (add (int64 .Values.server.shutdownGraceMs) 999) 1000 }}
{{- $needed := add (int64 .Values.lifecycle.preStopSleepSeconds) $graceSeconds 3 }}
{{- if le (int64 .Values.terminationGracePeriodSeconds) $needed }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed lifecycle.preStopSleepSeconds + server.shutdownGraceMs/1000 + 3 (%d)" (int64 .Values.terminationGracePeriodSeconds) $needed) }}
{{- end }}
{{- end }}

{{/* CAREBRIDGE_STORE__REDIS_URL, as an env entry. */}}
{{- define "carebridge.redisUrlEnv" -}}
- name: CAREBRIDGE_STORE__REDIS_URL
{{- if .Values.redis.enabled }}
  value: {{ printf "redis://%s:%d" (include "carebridge.redisName" .) (int64 .Values.redis.port) | quote }}
{{- else if .Values.redis.externalUrlSecret.name }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.externalUrlSecret.name }}
      key: {{ .Values.redis.externalUrlSecret.key }}
{{- else }}
  value: {{ required "redis.externalUrl (or redis.externalUrlSecret.name) is required when redis.enabled is false" .Values.redis.externalUrl | quote }}
{{- end }}
{{- end }}
