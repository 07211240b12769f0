{{/* Names and labels shared by every template. */}}

{{- define "chaosaa.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "chaosaa.fullname" -}}
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

{{- define "chaosaa.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "chaosaa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chaosaa
{{- end -}}

{{- define "chaosaa.operatorSelector" -}}
app.kubernetes.io/name: {{ include "chaosaa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "chaosaa.agentSelector" -}}
app.kubernetes.io/name: {{ include "chaosaa.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: agent
{{- end -}}

{{- define "chaosaa.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-operator" (include "chaosaa.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chaosaa.agentServiceAccountName" -}}
{{- if .Values.agent.serviceAccount.create -}}
{{- default (printf "%s-agent" (include "chaosaa.fullname" .)) .Values.agent.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.agent.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "chaosaa.image" -}}
{{- $image := mergeOverwrite (deepCopy .root.Values.image) (.override | default dict) -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* The namespaces the operator watches: the list given, or the release namespace. */}}
{{- define "chaosaa.watchNamespaces" -}}
{{- if .Values.operator.watchNamespaces -}}
{{- join "," .Values.operator.watchNamespaces -}}
{{- else -}}
{{- .Release.Namespace -}}
{{- end -}}
{{- end -}}

{{/* The rules the operator needs wherever it runs GameDays (a Role or a ClusterRole). */}}
{{- define "chaosaa.operatorRules" -}}
- apiGroups: [chaosaa.io]
  resources: [gamedays]
  verbs: [get, list, watch]
- apiGroups: [chaosaa.io]
  resources: [gamedays/status]
  verbs: [patch]
- apiGroups: [chaosaa.io]
  resources: [gamedayruns]
  # create: scheduled runs; patch: kopf's finalizer and bookkeeping; delete: history limits
  verbs: [get, list, watch, create, patch, delete]
- apiGroups: [chaosaa.io]
  resources: [gamedayruns/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [""]
  resources: [secrets]
  # by name only (no list/watch): the kubeconfigs of remote regions
  verbs: [get]
  {{- with .Values.operator.kubeconfigSecrets }}
  resourceNames: {{ toJson . }}
  {{- end }}
{{- end -}}
