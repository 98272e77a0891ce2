{{/*
A Taskforge service: Deployment, Service and PodDisruptionBudget.
Call with (dict "root" $ "name" "api" "c" $.Values.api "portName" "http"
"args" (list "serve") "replicas" 2 "results" true).
*/}}
{{- define "taskforge.component" -}}
{{- $root := .root -}}
{{- $c := .c -}}
{{- $sel := dict "root" $root "component" .name -}}
{{- $fullname := printf "%s-%s" (include "taskforge.fullname" $root) .name -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "taskforge.componentLabels" $sel | nindent 4 }}
spec:
  {{- if hasKey . "replicas" }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "taskforge.selectorLabels" $sel | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "taskforge.componentLabels" $sel | nindent 8 }}
      annotations:
        {{- include "taskforge.podAnnotations" (dict "root" $root "c" $c) | nindent 8 }}
    spec:
      {{- include "taskforge.podCommon" (dict "root" $root "c" $c) | nindent 6 }}
      terminationGracePeriodSeconds: {{ $c.terminationGracePeriodSeconds }}
      {{- include "taskforge.topologySpread" $sel | nindent 6 }}
      containers:
        - name: {{ .name }}
          image: {{ include "taskforge.image" (dict "root" $root "service" .name) }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          {{- with .args }}
          args:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ $c.port }}
              protocol: TCP
          {{- include "taskforge.envFrom" $root | nindent 10 }}
          {{- with $c.extraEnv }}
          env:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- include "taskforge.probes" .portName | nindent 10 }}
          resources:
            {{- toYaml $c.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          {{- if .results }}
          {{- include "taskforge.volumeMounts" $root | nindent 10 }}
          {{- else }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
          {{- end }}
      {{- if .results }}
      {{- include "taskforge.volumes" $root | nindent 6 }}
      {{- else }}
      volumes:
        - name: tmp
          emptyDir: {}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "taskforge.componentLabels" $sel | nindent 4 }}
spec:
  type: {{ dig "service" "type" "ClusterIP" $c }}
  selector:
    {{- include "taskforge.selectorLabels" $sel | nindent 4 }}
  ports:
    - name: {{ .portName }}
      port: {{ $c.port }}
      targetPort: {{ .portName }}
      protocol: TCP
{{- if $c.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $fullname }}
  labels:
    {{- include "taskforge.componentLabels" $sel | nindent 4 }}
spec:
  {{- if hasKey $c.pdb "minAvailable" }}
  minAvailable: {{ $c.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $c.pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "taskforge.selectorLabels" $sel | nindent 6 }}
{{- end }}
{{- end -}}
