{{- define "bote.name" -}}{{ .Release.Name }}{{- end -}}
{{- define "bote.mesh" -}}{{ .Release.Name }}-mesh{{- end -}}
{{- define "bote.labels" -}}
app.kubernetes.io/name: bote
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}
{{- define "bote.selector" -}}
app.kubernetes.io/name: bote
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
