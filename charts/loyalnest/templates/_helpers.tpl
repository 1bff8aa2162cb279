{{/*
Shared helpers. Names are the component names themselves (`points`, `gateway`), not prefixed
with the release: the platform's discovery convention is
dns:///<component>.<namespace>.svc.<clusterDomain>:50051, so one release per namespace.
*/}}

{{/* Fixed ports: the headless Services hand out pod IPs, so clients and the gateway connect
to the container port directly, and the gateway's generated bootstrap names 50051. */}}
{{- define "loyalnest.grpcPort" -}}50051{{- end }}
{{- define "loyalnest.metricsPort" -}}9464{{- end }}
{{- define "loyalnest.gatewayPort" -}}8080{{- end }}
{{- define "loyalnest.gatewayOpsPort" -}}9902{{- end }}
{{/* Envoy's admin interface, on the pod's 127.0.0.1 only (files/gateway/envoy.json). */}}
{{- define "loyalnest.gatewayAdminPort" -}}9901{{- end }}
{{- define "loyalnest.reflectionPort" -}}50060{{- end }}

{{- define "loyalnest.chart" -}}
{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "loyalnest.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- end }}

{{/* Every object's labels. Call with (dict "ctx" $ "name" "points" "component" "service"). */}}
{{- define "loyalnest.labels" -}}
{{ include "loyalnest.selectorLabels" . }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: loyalnest
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ include "loyalnest.chart" .ctx }}
{{- end }}

{{/* repository:tag[@digest]; the tag defaults to the chart's appVersion. */}}
{{- define "loyalnest.image" -}}
{{- $tag := .image.tag | default .ctx.Chart.AppVersion -}}
{{- if .image.digest -}}
{{ .image.repository }}:{{ $tag }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ $tag }}
{{- end }}
{{- end }}

{{/* A component's settings: componentDefaults overridden by its own entry. */}}
{{- define "loyalnest.componentSettings" -}}
{{- $defaults := deepCopy .ctx.Values.componentDefaults -}}
{{- toYaml (mergeOverwrite $defaults (deepCopy .component)) -}}
{{- end }}

{{/* "true" when the component's outbox is relayed by pods of its own (and events are on),
else empty. Call with (dict "ctx" $ "component" $component). */}}
{{- define "loyalnest.separateRelay" -}}
{{- $s := include "loyalnest.componentSettings" . | fromYaml -}}
{{- if and .ctx.Values.events.enabled .component.enabled $s.relay.separate }}true{{ end -}}
{{- end }}

{{/* startupProbe and readinessProbe of a platform process (grpc.health.v1 on its gRPC port),
timings from the component's settings. Call with (dict "ctx" $ "settings" $s). */}}
{{- define "loyalnest.healthProbes" -}}
{{- $probes := .settings.probes -}}
startupProbe:
  grpc:
    port: {{ include "loyalnest.grpcPort" .ctx }}
  periodSeconds: {{ $probes.startup.periodSeconds }}
  failureThreshold: {{ $probes.startup.failureThreshold }}
  timeoutSeconds: {{ $probes.startup.timeoutSeconds }}
readinessProbe:
  grpc:
    port: {{ include "loyalnest.grpcPort" .ctx }}
  periodSeconds: {{ $probes.readiness.periodSeconds }}
  failureThreshold: {{ $probes.readiness.failureThreshold }}
  timeoutSeconds: {{ $probes.readiness.timeoutSeconds }}
{{- end }}

{{/* The registry name `loyalnest serve` takes. */}}
{{- define "loyalnest.serviceName" -}}
{{- .component.service | default (.name | replace "-" "_") -}}
{{- end }}

{{/* Names of the enabled components, as a JSON list (fromJsonArray). */}}
{{- define "loyalnest.enabledComponents" -}}
{{- $names := list -}}
{{- range $name, $c := .Values.components -}}
{{- if $c.enabled -}}{{- $names = append $names $name -}}{{- end -}}
{{- end -}}
{{- toJson $names -}}
{{- end }}

{{/* The collector traces go to: otel.collector.host, or the in-chart collector when it is
enabled and no host is set; empty: no export. */}}
{{- define "loyalnest.otelHost" -}}
{{- if .Values.otel.collector.host -}}
{{ .Values.otel.collector.host }}
{{- else if .Values.otelCollector.enabled -}}
otel-collector.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}
{{- end -}}
{{- end }}

{{- define "loyalnest.otelEndpoint" -}}
{{- with include "loyalnest.otelHost" . -}}http://{{ . }}:{{ $.Values.otel.collector.port }}{{- end -}}
{{- end }}

{{- define "loyalnest.kafkaBootstrapServers" -}}
{{- if .Values.backends.kafka.inCluster.enabled -}}
kafka.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:9092
{{- else -}}
{{ .Values.backends.kafka.bootstrapServers }}
{{- end }}
{{- end }}

{{/* Hooks run before the release's own objects exist, so with the in-chart PostgreSQL the
migration Job waits for post-install (services migrate on start meanwhile). */}}
{{- define "loyalnest.migrationHook" -}}
{{- if .Values.backends.postgres.inCluster.enabled -}}post-install,pre-upgrade{{- else -}}pre-install,pre-upgrade{{- end -}}
{{- end }}

{{- define "loyalnest.migrateOnStart" -}}
{{- if or (not .Values.migrations.job.enabled) .Values.backends.postgres.inCluster.enabled -}}true{{- else -}}false{{- end -}}
{{- end }}

{{- define "loyalnest.inClusterRedisUrl" -}}
redis://redis.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:6379/0
{{- end }}

{{/* Access tokens. The public JWKS (a ConfigMap the operator publishes) is mounted as a
directory, not a subPath, so a published key rotation reaches running services, which re-read
the file when it changes. Only the Auth service gets the private keyset (a Secret). */}}
{{- define "loyalnest.jwksDir" -}}/etc/loyalnest/jwks{{- end }}
{{- define "loyalnest.jwksFile" -}}jwks.json{{- end }}
{{- define "loyalnest.signingKeysDir" -}}/etc/loyalnest/signing-keys{{- end }}
{{- define "loyalnest.signingKeysFile" -}}signing-keys.json{{- end }}

{{- define "loyalnest.jwksConfigMap" -}}
{{- $name := dig "jwks" "existingConfigMap" "" (.Values.auth | default dict) -}}
{{- if not $name -}}
{{- fail "auth.jwks.existingConfigMap must name the ConfigMap with the public JWKS (key jwks.json): every service refuses to start without it. See NOTES.txt or the README (Operate on Kubernetes) for how to publish it." -}}
{{- end -}}
{{- $name -}}
{{- end }}

{{/* Whether this component is the Auth service (the only one that signs tokens). Call with
(dict "name" $name "component" $component). */}}
{{- define "loyalnest.isAuth" -}}
{{- if eq (include "loyalnest.serviceName" .) "auth" -}}true{{- end -}}
{{- end }}

{{/* The JWKS volume, for every pod that verifies tokens. */}}
{{- define "loyalnest.jwksVolume" -}}
- name: jwks
  configMap:
    name: {{ include "loyalnest.jwksConfigMap" . }}
    # Without this key the pod does not start (an event names it), rather than crash-loop.
    items:
      - key: {{ include "loyalnest.jwksFile" . }}
        path: {{ include "loyalnest.jwksFile" . }}
{{- end }}

{{- define "loyalnest.jwksVolumeMount" -}}
- name: jwks
  mountPath: {{ include "loyalnest.jwksDir" . }}
  readOnly: true
{{- end }}

{{/* Token settings of a service container. Call with (dict "ctx" $ "name" $name "component" $c). */}}
{{- define "loyalnest.authEnv" -}}
{{- $ctx := .ctx }}
- name: LOYALNEST_JWT_JWKS_PATH
  value: {{ printf "%s/%s" (include "loyalnest.jwksDir" $ctx) (include "loyalnest.jwksFile" $ctx) | quote }}
- name: LOYALNEST_JWT_ISSUER
  value: {{ $ctx.Values.auth.issuer | quote }}
- name: LOYALNEST_JWT_AUDIENCE
  value: {{ $ctx.Values.auth.audience | quote }}
{{- if include "loyalnest.isAuth" . }}
- name: LOYALNEST_AUTH_SIGNING_KEYS_PATH
  value: {{ printf "%s/%s" (include "loyalnest.signingKeysDir" $ctx) (include "loyalnest.signingKeysFile" $ctx) | quote }}
{{- with $ctx.Values.auth.shopifyRedirectUrl }}
- name: LOYALNEST_SHOPIFY_REDIRECT_URL
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- include "loyalnest.callTargetsEnv" . }}
{{- end }}

{{/* The components a component calls, as a JSON list (fromJsonArray). For a service the image
has, what its code declares (files/calls.json, generated by `make chart`); for a component
only the seed designs so far, its hand-written components.<name>.calls. Call with
(dict "ctx" $ "name" $name "component" $component). */}}
{{- define "loyalnest.callees" -}}
{{- $file := .ctx.Files.Get "files/calls.json" -}}
{{- if not $file -}}{{- fail "files/calls.json is missing: run `make chart`" -}}{{- end -}}
{{- $generated := $file | fromJson -}}
{{- $service := include "loyalnest.serviceName" . -}}
{{- $all := list -}}
{{- if hasKey $generated $service -}}
{{- if .component.calls -}}
{{- fail (printf "components.%s.calls: the calls of %s come from its code (files/calls.json); remove them from the values" .name $service) -}}
{{- end -}}
{{- $all = index $generated $service -}}
{{- else -}}
{{- $all = .component.calls | default list -}}
{{- end -}}
{{- /* "without": callees a process of the component does not call (a job runs no event
loops, so not the edge's pseudonyms). */ -}}
{{- $without := .without | default list -}}
{{- $kept := list -}}
{{- range $callee := $all -}}
{{- if not (has $callee $without) -}}{{- $kept = append $kept $callee -}}{{- end -}}
{{- end -}}
{{- toJson $kept -}}
{{- end }}

{{/* The components the component's relay process calls (files/relay-calls.json, from the
code: the owner of customer pseudonyms and Auth, for the services whose events name
customers), as a JSON list. Call like loyalnest.callees. */}}
{{- define "loyalnest.relayCallees" -}}
{{- $file := .ctx.Files.Get "files/relay-calls.json" -}}
{{- if not $file -}}{{- fail "files/relay-calls.json is missing: run `make chart`" -}}{{- end -}}
{{- $service := include "loyalnest.serviceName" . -}}
{{- toJson (get ($file | fromJson) $service | default list) -}}
{{- end }}

{{/* Where the component's callees answer (loyalnest.platform.calls): each one's headless
Service, dns:///<callee>.<namespace>.svc.<clusterDomain>:50051, keyed by the name the code
declares it with. Service tokens come from `auth` when it is among them (with
LOYALNEST_SERVICE_CREDENTIAL from secretEnv). Call like loyalnest.callees. */}}
{{- define "loyalnest.callTargetsEnv" -}}
{{- $ctx := .ctx -}}
{{- $targets := dict -}}
{{- range $callee := include "loyalnest.callees" . | fromJsonArray -}}
{{- $_ := set $targets ($callee | replace "-" "_") (printf "dns:///%s.%s.svc.%s:%s" $callee $ctx.Release.Namespace $ctx.Values.clusterDomain (include "loyalnest.grpcPort" $ctx)) -}}
{{- end -}}
{{- if $targets }}
- name: LOYALNEST_CALL_TARGETS
  value: {{ toJson $targets | quote }}
{{- end }}
{{- end }}

{{/* Sensitive settings of a service container, from Secrets only: the component's secretEnv
(env var name -> {secret, key}); without `secret`, secrets.existingSecret. Call with
(dict "ctx" $ "settings" $s). */}}
{{- define "loyalnest.secretEnv" -}}
{{- $ctx := .ctx -}}
{{- $plain := .settings.env | default dict -}}
{{- range $name, $ref := .settings.secretEnv }}
{{- if hasKey $plain $name }}
{{- fail (printf "%s is set in both env and secretEnv: secrets go in secretEnv only" $name) }}
{{- end }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secret | default $ctx.Values.secrets.existingSecret }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}

{{/* Environment every service process reads (pkg/loyalnest/platform/config.py). Call with
(dict "ctx" $ "settings" $s), plus "tokens" true "name" $name "component" $component for a
service Deployment (token settings: pods that mount the JWKS; the migration Job does not). */}}
{{- define "loyalnest.serviceEnv" -}}
{{- $ctx := .ctx -}}
{{- $secret := $ctx.Values.secrets -}}
- name: LOYALNEST_HOST
  value: "0.0.0.0"
- name: LOYALNEST_GRPC_PORT
  value: {{ include "loyalnest.grpcPort" $ctx | quote }}
- name: LOYALNEST_METRICS_PORT
  value: {{ include "loyalnest.metricsPort" $ctx | quote }}
- name: LOYALNEST_LOG_FORMAT
  value: json
- name: LOYALNEST_LOG_LEVEL
  value: {{ $ctx.Values.logLevel | quote }}
- name: LOYALNEST_SHUTDOWN_GRACE_SECONDS
  value: {{ .settings.shutdownGraceSeconds | quote }}
- name: LOYALNEST_RUN_MIGRATIONS_ON_START
  value: {{ include "loyalnest.migrateOnStart" $ctx | quote }}
- name: LOYALNEST_EVENTS_ENABLED
  value: {{ $ctx.Values.events.enabled | quote }}
{{- /* Customer pseudonyms on Kafka (platform/events/pseudonyms.py): always on in the mesh,
not a value (a release cannot publish Shopify customer ids by mistake); a service missing the
edge's target or its credential then fails at start-up. tests/deploy asserts it. */}}
- name: LOYALNEST_CUSTOMER_PSEUDONYMS
  value: "true"
- name: LOYALNEST_KAFKA_PRODUCER
  value: {{ $ctx.Values.events.kafkaClient | default "kafka-python" | quote }}
- name: LOYALNEST_KAFKA_CONSUMER
  value: {{ $ctx.Values.events.kafkaClient | default "kafka-python" | quote }}
{{- with include "loyalnest.kafkaBootstrapServers" $ctx }}
- name: LOYALNEST_KAFKA_BOOTSTRAP_SERVERS
  value: {{ . | quote }}
{{- else }}
{{- /* The brokers from the backends Secret: no placeholder host in the manifests. */}}
- name: LOYALNEST_KAFKA_BOOTSTRAP_SERVERS
  valueFrom:
    secretKeyRef:
      name: {{ $secret.existingSecret }}
      key: {{ $secret.keys.kafkaBootstrapServers }}
      {{- if or (not $ctx.Values.events.enabled) (not .tokens) }}
      optional: true
      {{- end }}
{{- end }}
{{- $otel := include "loyalnest.otelEndpoint" $ctx }}
- name: LOYALNEST_TRACING_ENABLED
  value: "true"
{{- if $otel }}
- name: LOYALNEST_OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $otel | quote }}
{{- end }}
- name: LOYALNEST_OTEL_SAMPLE_RATIO
  value: {{ $ctx.Values.otel.sampleRatio | quote }}
- name: LOYALNEST_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret.existingSecret }}
      key: {{ $secret.keys.databaseUrl }}
{{- /* A backend a service cannot run without makes its key required: the pod then waits in
CreateContainerConfigError naming the key, instead of starting without it (edge refuses to
start without Redis; Points on the Mongo ledger would try mongodb://127.0.0.1 and be restarted
after its 5-minute startup window). The migration Job (no "tokens") reads only the database;
a component's CronJob passes "requiredBackends" true (Points' jobs need the Mongo ledger). */}}
{{- $needs := list }}
{{- if or .tokens .requiredBackends }}
{{- $needs = .settings.requiredBackends | default list }}
{{- if eq (toString (dig "LOYALNEST_POINTS_LEDGER_STORE" "" (.settings.env | default dict))) "mongo" }}
{{- $needs = append $needs "mongo" }}
{{- end }}
{{- end }}
- name: LOYALNEST_MONGO_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret.existingSecret }}
      key: {{ $secret.keys.mongoUrl }}
      {{- if not (has "mongo" $needs) }}
      optional: true
      {{- end }}
{{- /* Redis: revoked token ids (revoked_jti:{jti}) and caches. Unset: no revocation checks. */}}
- name: LOYALNEST_REDIS_URL
{{- if $ctx.Values.backends.redis.inCluster.enabled }}
  value: {{ include "loyalnest.inClusterRedisUrl" $ctx | quote }}
{{- else }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret.existingSecret }}
      key: {{ $secret.keys.redisUrl }}
      {{- if not (has "redis" $needs) }}
      optional: true
      {{- end }}
{{- end }}
{{- if .tokens }}
{{- include "loyalnest.authEnv" . }}
{{- include "loyalnest.secretEnv" . }}
{{- end }}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
# Read by the OpenTelemetry SDK: spans carry the pod they came from.
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
{{- range $key, $value := .settings.env }}
- name: {{ $key }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/* The gateway's Envoy bootstrap (files/gateway/, generated by `make chart-gateway-config`)
with the release's values put in for the tokens the generator left. */}}
{{- define "loyalnest.gatewayConfig" -}}
{{- $v := .Values -}}
{{- $otelHost := include "loyalnest.otelHost" . -}}
{{- $tracing := ne $otelHost "" -}}
{{- $config := .Files.Get (ternary "files/gateway/envoy-otel.json" "files/gateway/envoy.json" $tracing) -}}
{{- if not $config -}}{{- fail "files/gateway/envoy.json is missing: run `make chart-gateway-config`" -}}{{- end -}}
{{- $origins := list -}}
{{- range $v.gateway.corsAllowedOrigins -}}{{- $origins = append $origins (dict "exact" .) -}}{{- end -}}
{{- $config = $config | replace "${NAMESPACE}" .Release.Namespace | replace "${CLUSTER_DOMAIN}" $v.clusterDomain -}}
{{- $config = $config | replace "\"${CORS_ORIGINS}\"" (toJson $origins) -}}
{{- $config = $config | replace "\"${JWT_ISSUER}\"" (toJson $v.auth.issuer) -}}
{{- $admins := list -}}
{{- range $v.gateway.adminAllowedCidrs -}}
{{- $parts := split "/" . -}}
{{- $admins = append $admins (dict "direct_remote_ip" (dict "address_prefix" $parts._0 "prefix_len" (int $parts._1))) -}}
{{- end -}}
{{- if not $admins -}}
{{- /* No peer may call admin RPCs: a principal that matches nobody, so its negation denies all. */ -}}
{{- $admins = list (dict "not_id" (dict "any" true)) -}}
{{- end -}}
{{- $config = $config | replace "\"${ADMIN_CIDRS}\"" (toJson $admins) -}}
{{- $config = $config | replace "\"${READ_RATE_LIMIT_BURST}\"" (toString (int $v.gateway.readRateLimit.burst)) | replace "\"${READ_RATE_LIMIT_PER_SECOND}\"" (toString (int $v.gateway.readRateLimit.requestsPerSecond)) -}}
{{- if $tracing -}}
{{- $config = $config | replace "\"${OTEL_HOST}\"" (toJson $otelHost) | replace "\"${OTEL_PORT}\"" (toString $v.otel.collector.port) -}}
{{- /* New traces (requests without a sampled traceparent) sampled as in the services. */ -}}
{{- $config = $config | replace "\"${TRACE_SAMPLING_PERCENT}\"" (toString (mulf $v.otel.sampleRatio 100)) -}}
{{- end -}}
{{- $config -}}
{{- end }}

{{- define "loyalnest.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext }}
{{- end }}

{{- define "loyalnest.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext }}
{{- end }}

{{/* The consul-sync sidecar container. Call with (dict "ctx" $ "name" $name). */}}
{{- define "loyalnest.consulSidecar" -}}
{{- $ctx := .ctx -}}
{{- $c := $ctx.Values.consul -}}
{{- $catalog := eq $c.mode "catalog" -}}
{{- if and $catalog (not $c.servers.host) -}}
{{- fail "consul.mode=catalog needs consul.servers.host (the Consul servers' HTTP API, e.g. consul-server.consul.svc)" -}}
{{- end -}}
- name: consul-sync
  image: {{ include "loyalnest.image" (dict "ctx" $ctx "image" $ctx.Values.image) }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  command: ["loyalnest", "consul-sync"]
  args:
    - --service-name={{ .name }}
    - --service-id={{ .name }}-$(POD_NAME)
    - --address=$(POD_IP)
    - --port={{ include "loyalnest.grpcPort" $ctx }}
    {{- if $catalog }}
    - --mode=catalog
    - --consul-addr={{ $c.servers.scheme }}://{{ $c.servers.host }}:{{ $c.servers.port }}
    - --node={{ $c.servers.node }}
    {{- with $c.tokenSecret }}
    - --token-file={{ include "loyalnest.consulTokenDir" $ctx }}/token
    {{- end }}
    {{- if $c.servers.caSecret.name }}
    - --ca-file={{ include "loyalnest.consulCaDir" $ctx }}/{{ $c.servers.caSecret.key }}
    {{- end }}
    {{- else }}
    - --consul-addr={{ $c.agent.scheme }}://{{ $c.agent.host | default "$(HOST_IP)" }}:{{ $c.agent.port }}
    - --check-interval={{ $c.checkInterval }}
    - --deregister-critical-after={{ $c.deregisterCriticalServiceAfter }}
    {{- end }}
    - --meta=k8s-namespace=$(POD_NAMESPACE)
    - --meta=k8s-pod=$(POD_NAME)
    {{- range $c.tags }}
    - --tag={{ . }}
    {{- end }}
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_NAMESPACE
      valueFrom:
        fieldRef:
          fieldPath: metadata.namespace
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    {{- if not $catalog }}
    - name: HOST_IP
      valueFrom:
        fieldRef:
          fieldPath: status.hostIP
    {{- with $c.tokenSecret }}
    - name: CONSUL_HTTP_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ . }}
          key: token
    {{- end }}
    {{- end }}
  {{- if and $catalog (or $c.tokenSecret $c.servers.caSecret.name) }}
  volumeMounts:
    {{- if $c.tokenSecret }}
    - name: consul-token
      mountPath: {{ include "loyalnest.consulTokenDir" $ctx }}
      readOnly: true
    {{- end }}
    {{- if $c.servers.caSecret.name }}
    - name: consul-ca
      mountPath: {{ include "loyalnest.consulCaDir" $ctx }}
      readOnly: true
    {{- end }}
  {{- end }}
  resources:
    {{- toYaml $c.resources | nindent 4 }}
  securityContext:
    {{- include "loyalnest.containerSecurityContext" $ctx | nindent 4 }}
{{- end }}

{{- define "loyalnest.consulTokenDir" -}}/etc/consul/token{{- end }}
{{- define "loyalnest.consulCaDir" -}}/etc/consul/ca{{- end }}

{{/* The consul-sync sidecar's volumes (catalog mode: the ACL token as a file, re-read on
rotation, and the servers' CA). */}}
{{- define "loyalnest.consulVolumes" -}}
{{- $c := .Values.consul -}}
{{- if and $c.enabled (eq $c.mode "catalog") }}
{{- with $c.tokenSecret }}
- name: consul-token
  secret:
    secretName: {{ . }}
    items:
      - {key: token, path: token}
    defaultMode: 288  # 0440: root and the pod's group (fsGroup)
{{- end }}
{{- with $c.servers.caSecret.name }}
- name: consul-ca
  secret:
    secretName: {{ . }}
    items:
      - {key: {{ $c.servers.caSecret.key }}, path: {{ $c.servers.caSecret.key }}}
{{- end }}
{{- end }}
{{- end }}

{{/* Scheduling of a pod: nodeSelector, tolerations, priority, and soft defaults for spreading
when the settings leave affinity / topologySpreadConstraints empty: prefer another node than
the component's other pods, and spread them over zones and nodes (ScheduleAnyway: a small or
single-zone cluster still schedules every pod). Call with (dict "ctx" $ "name" $name
"settings" $s). */}}
{{- define "loyalnest.scheduling" -}}
{{- $s := .settings -}}
{{- $selector := include "loyalnest.selectorLabels" (dict "ctx" .ctx "name" .name) | fromYaml -}}
{{- with $s.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $s.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $s.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $s.affinity }}
affinity:
  {{- toYaml $s.affinity | nindent 2 }}
{{- else if eq ($s.podAntiAffinity | default "soft") "soft" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- toYaml $selector | nindent 14 }}
{{- end }}
topologySpreadConstraints:
{{- if $s.topologySpreadConstraints }}
  {{- toYaml $s.topologySpreadConstraints | nindent 2 }}
{{- else }}
{{- range $key := list "topology.kubernetes.io/zone" "kubernetes.io/hostname" }}
  - maxSkew: 1
    topologyKey: {{ $key }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- toYaml $selector | nindent 8 }}
    # Count only the pods of the current ReplicaSet: a rollout's old pods do not skew it.
    matchLabelKeys: [pod-template-hash]
{{- end }}
{{- end }}
{{- end }}

{{/* The in-chart OpenTelemetry Collector's configuration (otelCollector): OTLP/gRPC in,
memory limit and batches, OTLP out to otelCollector.exporter.endpoint, or the debug exporter
(a log line per batch) without one. */}}
{{- define "loyalnest.otelCollectorConfig" -}}
{{- $c := .Values.otelCollector -}}
{{- $exporter := ternary "otlp" "debug" (ne $c.exporter.endpoint "") -}}
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 0.0.0.0:4317
processors:
  memory_limiter:
    check_interval: 1s
    limit_percentage: 80
    spike_limit_percentage: 20
  batch: {}
exporters:
{{- if $c.exporter.endpoint }}
  otlp:
    endpoint: {{ $c.exporter.endpoint | quote }}
    tls:
      insecure: {{ $c.exporter.insecure }}
{{- else }}
  debug:
    verbosity: basic
{{- end }}
service:
  pipelines:
    traces:
      receivers: [otlp]
      processors: [memory_limiter, batch]
      exporters: [{{ $exporter }}]
{{- end }}
