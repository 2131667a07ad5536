{{/*
Shared snippets. Object names are fixed (see values.yaml): the code and
`lbctl doctor` look for ironlb-controller, ironlb-speaker and ironlb-heartbeat.
*/}}

{{/* Labels on every object; "component" is controller, speaker or webhook. */}}
{{- define "ironlb.labels" -}}
app.kubernetes.io/name: ironlb
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ironlb
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* The labels a component's pods are selected by (immutable in a Deployment/DaemonSet). */}}
{{- define "ironlb.selectorLabels" -}}
app.kubernetes.io/name: ironlb
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ironlb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The webhook's Service and the DNS names its certificate must hold. */}}
{{- define "ironlb.webhookService" -}}ironlb-webhook{{- end -}}
{{- define "ironlb.webhookSecret" -}}ironlb-webhook-tls{{- end -}}

{{/* Flags both processes take. */}}
{{- define "ironlb.commonArgs" -}}
- --log-level={{ .Values.logLevel }}
- --log-format={{ .Values.logFormat }}
- --load-balancer-class={{ .Values.loadBalancerClass }}
{{- if .Values.ignoreUnsetClass }}
- --ignore-unset-class
{{- end }}
{{- end -}}
