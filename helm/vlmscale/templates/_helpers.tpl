{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "vlmscale.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name when it already contains the chart name. */}}
{{- define "vlmscale.fullname" -}}
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

{{- define "vlmscale.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vlmscale.labels" -}}
helm.sh/chart: {{ include "vlmscale.chart" . }}
{{ include "vlmscale.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "vlmscale.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vlmscale.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "vlmscale.mlflow.fullname" -}}
{{- printf "%s-mlflow" (include "vlmscale.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "vlmscale.mlflow.selectorLabels" -}}
{{ include "vlmscale.selectorLabels" . }}
app.kubernetes.io/component: mlflow
{{- end }}

{{- /*
The ConfigMap every experiment's Ray pods read (envFrom, optional). Fixed, one platform per
namespace, because `vlmscale submit` renders its name: PLATFORM_CONFIG in
orchestrator/spec/platform.py, which a test compares with this.
*/ -}}
{{- define "vlmscale.platformConfig" -}}
vlmscale-platform
{{- end }}
